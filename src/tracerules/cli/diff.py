"""`tracerules diff`: what a rule change would alter, over archived notices.

The notices are replayed under the rules as they were at a git revision and under the working
tree, and the events whose outcome or actions change are reported with the factor that made
the difference: as text, as Markdown for a pull-request comment, or as JSON.
Exit status: 0 (or 1 with --fail-on-change when something changes), 1 rules that do not load,
2 usage (not a git repository, an unknown revision, a missing source).
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from tracerules.errors import RuleError, render_human
from tracerules.rules.compile import RuleSet, load_ruleset
from tracerules.rules.gitrev import GitError, rules_at
from tracerules.rules.loader import load_paths
from tracerules.runtime.engine.diff import DiffReport, EventChange, compare
from tracerules.runtime.engine.replay import replay
from tracerules.runtime.sources.files import SourceError, iter_notices

EXIT_OK, EXIT_CHANGED, EXIT_USAGE = 0, 1, 2
EXIT_RULES = 1


@dataclass(frozen=True)
class Labels:
    rules: str  # the rules folder
    base: str  # the revision as given, and its short commit id


def run_diff(
    base: str, rules: Path, sources: Sequence[Path], output: str, fail_on_change: bool
) -> int:
    """Replay `sources` under both rule sets, print the changes; returns the exit status."""
    console = Console(highlight=False, soft_wrap=True)
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    with tempfile.TemporaryDirectory(prefix="tracerules-diff-") as tmp:
        try:
            old_dir, commit = rules_at(rules, base, Path(tmp) / "base")
        except GitError as err:
            errors.print(f"[red]error:[/] {escape(str(err))}")
            return EXIT_USAGE
        labels = Labels(str(rules), f"{base} ({commit[:7]})")
        old = _load(old_dir, errors, f"the rules at {base}")
        new = _load(rules, errors, "the working-tree rules")
        if old is None or new is None:
            return EXIT_RULES
        try:
            report = diff_notices(old, new, sources, Path(tmp))
        except SourceError as err:
            errors.print(f"[red]error:[/] {escape(str(err))}")
            return EXIT_USAGE
    if output == "json":
        doc = {"rules": labels.rules, "base": base, "commit": commit, **report.to_json()}
        print(json.dumps(doc, indent=2))
    elif output == "markdown":
        print(markdown(report, labels))
    else:
        console.print(text(report, labels), markup=False)
    return EXIT_CHANGED if fail_on_change and report.changes else EXIT_OK


def diff_notices(old: RuleSet, new: RuleSet, sources: Sequence[Path], tmp: Path) -> DiffReport:
    """Replay under `old`, then replay the same stored notices under `new`, and compare."""
    first = replay(old, iter_notices(sources), store_path=tmp / "old.sqlite")
    second = None
    try:
        second = replay(new, iter_notices([tmp / "old.sqlite"]), store_path=tmp / "new.sqlite")
        report = compare(first.store, second.store, old, new)
        report.notices = first.processed
        return report
    finally:
        first.close()
        if second is not None:
            second.close()


def _load(folder: Path, errors: Console, what: str) -> RuleSet | None:
    try:
        return load_ruleset([folder])
    except RuleError as err:
        sources = load_paths([folder]).sources
        errors.print(f"[red]error:[/] {escape(what)} do not load:")
        for diag in err.diagnostics:
            errors.print(render_human(diag, sources), markup=False)
        return None


# -- rendering -------------------------------------------------------------------------------


def _short(expr: str | None) -> str:
    """A condition on one line (block scalars span several)."""
    return re.sub(r"\s+", " ", expr or "").strip()


def _arrow(before: str | None, after: str | None) -> str:
    return f"{before or 'none'} → {after or 'none'}"


def _headline(report: DiffReport, labels: Labels) -> list[str]:
    n = len(report.changes)
    return [
        f"{report.notices} notices replayed under {labels.rules} at {labels.base} "
        "and in the working tree.",
        f"Events: {report.events_before} → {report.events_after}; "
        f"firing: {report.firing_before} → {report.firing_after}.",
        f"{n} event{'' if n == 1 else 's'} change{'s' if n == 1 else ''}."
        if n
        else "No event changes.",
    ]


def text(report: DiffReport, labels: Labels) -> str:
    """Plain text: a headline, then each change with its decisive notice and factor."""
    lines = _headline(report, labels)
    for change in report.changes:
        lines += ["", *_text_change(change)]
    return "\n".join(lines)


def _text_change(change: EventChange) -> list[str]:
    head = (
        f"{change.trigger} {change.event_id} ({change.kind}): "
        f"{_arrow(change.before, change.after)}, "
        f"actions {change.actions_before} → {change.actions_after}"
    )
    lines = [head]
    if change.step is not None:
        lines.append(f"  first differs on notice {change.step} ({change.notice or '?'})")
    factor = change.factor
    if factor is not None:
        lines.append(f"  factor {factor.name}: {_arrow(factor.before, factor.after)}")
        if factor.after_detail or factor.before_detail:
            lines.append(f"    read: {factor.after_detail or factor.before_detail}")
        if factor.before_text != factor.after_text:
            lines.append(f"    was: {_short(factor.before_text) or '(no such condition)'}")
            lines.append(f"    now: {_short(factor.after_text) or '(no such condition)'}")
    return lines


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def markdown(report: DiffReport, labels: Labels) -> str:
    """GitHub-flavoured Markdown for a pull-request comment."""
    out = [
        f"### tracerules diff: `{labels.rules}` at `{labels.base}` → working tree",
        "",
        " ".join(_headline(report, labels)[:2]) + f" **{_headline(report, labels)[2]}**",
    ]
    if not report.changes:
        return "\n".join(out) + "\n"
    out += [
        "",
        "| trigger | event | outcome | actions | first differs on | deciding factor |",
        "|---|---|---|---|---|---|",
    ]
    for c in report.changes:
        notice = f"{c.step} · `{_cell(c.notice or '?')}`" if c.step else "-"
        factor = (
            f"`{c.factor.name}`: {_arrow(c.factor.before, c.factor.after)}" if c.factor else "-"
        )
        out.append(
            f"| `{c.trigger}` | `{_cell(c.event_id)}` | {_arrow(c.before, c.after)} "
            f"| {c.actions_before} → {c.actions_after} | {notice} | {factor} |"
        )
    edits = _condition_edits(report.changes)
    if edits:
        out += ["", "<details><summary>Changed conditions</summary>", ""]
        out += [
            f"- `{t}` / `{n}`: `{_cell(_short(a)) or 'none'}` → `{_cell(_short(b)) or 'none'}`"
            for (t, n), (a, b) in edits.items()
        ]
        out += ["", "</details>"]
    return "\n".join(out) + "\n"


def _condition_edits(
    changes: list[EventChange],
) -> dict[tuple[str, str], tuple[str | None, str | None]]:
    edits: dict[tuple[str, str], tuple[str | None, str | None]] = {}
    for c in changes:
        f = c.factor
        if f is not None and f.before_text != f.after_text:
            edits.setdefault((c.trigger, f.name), (f.before_text, f.after_text))
    return edits
