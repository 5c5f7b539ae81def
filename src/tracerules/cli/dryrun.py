"""`tracerules dry-run`: replay archived notices through the rules, never acting.

Text output is a table per event with a light per factor, a shape coloured when colour is on
(inherited ones marked `*`);
`--format json|ndjson|html` for machines and browsers.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from tracerules.cli.glyphs import factor_light, legend
from tracerules.cli.operator import UsageError, parse_time
from tracerules.cli.operator import console as terminal
from tracerules.cli.trigger_names import unknown_trigger
from tracerules.errors import RuleError, render_human
from tracerules.rules.compile import RuleSet, load_ruleset
from tracerules.runtime.engine.decisions import ActionRecord
from tracerules.runtime.engine.replay import Replay, replay
from tracerules.runtime.sources.files import Skipped, SourceError, iter_notices
from tracerules.runtime.sources.notices import Notice
from tracerules.runtime.store.history import EventView, counts, iter_events
from tracerules.timetext import utc_text


def iso(t: float | None) -> str:
    return utc_text(t)


def load_rules(paths: list[Path], console: Console) -> RuleSet | None:
    try:
        return load_ruleset(paths)
    except RuleError as err:
        from tracerules.rules.loader import load_paths

        sources = load_paths(paths).sources
        for diag in err.diagnostics:
            console.print(render_human(diag, sources), markup=False, highlight=False)
        console.print(f"[red]{len(err.diagnostics)} error(s) in the rules: nothing replayed[/]")
        return None


def _counted(notices: Iterator[Notice], progress: Progress | None) -> Iterator[Notice]:
    task = progress.add_task("reading notices", total=None) if progress else None
    for notice in notices:
        if progress is not None and task is not None:
            progress.advance(task)
        yield notice


def run_dry_run(
    rules_dirs: list[Path],
    sources: list[Path],
    *,
    topic: str | None,
    output: str,
    out_file: Path | None,
    since: str | None,
    until: str | None,
    trigger: str | None,
    products: Path | None,
    store_path: Path | None,
    quiet: bool,
    show_all: bool = False,
    report: Path | None = None,
) -> int:
    err = Console(stderr=True)
    try:
        start, end = parse_time(since, "--since"), parse_time(until, "--until")
    except UsageError as error:
        err.print(f"[red]error:[/] {error}")
        return 2
    rules = load_rules(rules_dirs, err)
    if rules is None:
        return 1
    if trigger is not None:
        wrong = unknown_trigger(trigger, (t.id for t in rules.triggers), "the rules")
        if wrong is not None:
            err.print(f"[red]error:[/] {escape(wrong)}", soft_wrap=True)
            return 2
    show_progress = not quiet and err.is_terminal
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not show_progress,
    )
    skipped = Skipped()
    try:
        with progress:
            stream = _counted(iter_notices(sources, topic, skipped), progress)
            evaluating = progress.add_task("evaluating", total=None)
            result = replay(
                rules,
                stream,
                store_path=store_path,
                products_dir=products,
                since=start,
                until=end,
                on_notice=lambda n, p: progress.advance(evaluating),
            )
    except SourceError as error:
        err.print(f"[red]error:[/] {error}")
        return 2
    result.skipped = skipped
    views = functools.partial(iter_events, result.store, trigger=trigger)
    try:
        emit(result, rules, views, output, out_file, sources, show_all, trigger)
        if report is not None:
            emit(result, rules, views, "html", report, sources)
            if not quiet:
                err.print(f"wrote the HTML report to {report}")
        if not quiet and output != "text" and out_file is not None:
            err.print(f"wrote {out_file}")
    finally:
        result.close()
    return 0


def emit(
    result: Replay,
    rules: RuleSet,
    views: Callable[[], Iterable[EventView]],
    output: str,
    out_file: Path | None,
    sources: list[Path],
    show_all: bool = False,
    trigger: str | None = None,
) -> None:
    if output == "html":
        from tracerules.report.html import render_report

        text = render_report(
            result.store, rules, title="tracerules dry run", sources=[str(s) for s in sources]
        )
        _write(out_file, [text])
    elif output == "json":
        summary = {**counts(result.store), "skipped_files": dict(sorted(result.skipped.items()))}
        _write(out_file, _json_document(summary, views()))
    elif output == "ndjson":
        _write(out_file, (json.dumps(event_json(v)) + "\n" for v in views()))
    elif out_file is None:
        print_text(terminal(), result, views, show_all, trigger)
    else:
        with out_file.open("w", encoding="utf-8") as handle:
            console = Console(file=handle, width=140, color_system=None)
            print_text(console, result, views, show_all, trigger)


def _write(out_file: Path | None, chunks: Iterable[str]) -> None:
    """Stream the output: events are written as they are read, never all held at once."""
    if out_file is None:
        sys.stdout.writelines(chunks)
        return
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with out_file.open("w", encoding="utf-8") as handle:
        handle.writelines(chunks)


def _json_document(summary: dict[str, Any], views: Iterable[EventView]) -> Iterator[str]:
    """{"summary": ..., "events": [...]}, one event at a time."""
    yield '{\n  "summary": ' + json.dumps(summary) + ',\n  "events": ['
    for i, view in enumerate(views):
        yield ("," if i else "") + "\n    " + json.dumps(event_json(view))
    yield "\n  ]\n}\n"


def event_json(view: EventView) -> dict[str, Any]:
    return {
        "trigger": view.trigger,
        "event_id": view.event_id,
        "event_time": iso(view.event_time),
        "notices": [
            {"id": n.id, "topic": n.topic, "time": iso(n.received), "name": n.name}
            for n in view.notices
        ],
        "decisions": [
            {
                "seq": d.seq,
                "notice_id": d.notice_id,
                "at": iso(d.at),
                "votes": d.votes.value,
                "conclusion": d.conclusion.value,
                "error": d.error,
                "factors": [{**f._asdict(), "vote": f.vote.value} for f in d.factors],
                "actions": [
                    {"type": a.type, "label": a.label, "status": a.status, "files": a.files}
                    for a in d.actions
                ],
            }
            for d in view.decisions
        ],
    }


def short_topic(topic: str) -> str:
    for prefix in ("gcn.classic.voevent.", "gcn.notices."):
        if topic.startswith(prefix):
            return topic[len(prefix) :]
    return topic


def event_table(view: EventView) -> Table:
    """One row per notice; the factor lights in one column, in the order the caption lists."""
    names = [f.name for f in view.decisions[0].factors] if view.decisions else []
    outcome = ("PASS", "green") if view.passed else ("no PASS", "red")
    title = Text.assemble(
        (view.trigger, "bold"),
        f"  event {view.event_id}  ",
        outcome,
        f"  (event time {iso(view.event_time)})",
    )
    table = Table(
        title=title,
        title_justify="left",
        caption="factors: " + "  ".join(f"{i + 1}.{n}" for i, n in enumerate(names)),
        caption_justify="left",
        show_edge=False,
        pad_edge=False,
    )
    for column, justify in (
        ("#", "right"),
        ("notice time (UTC)", "left"),
        ("topic", "left"),
        ("factors", "left"),
        ("conclusion", "left"),
        ("actions", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    notices = {n.id: n for n in view.notices}
    for decision in view.decisions:
        notice = notices.get(decision.notice_id or -1)
        when = notice.received if notice else decision.at
        by_name = {f.name: f for f in decision.factors}
        lights = Text(" ").join(
            factor_light(by_name[n]) if n in by_name else Text("·") for n in names
        )
        table.add_row(
            str(decision.seq),
            iso(when)[5:-1].replace("T", " "),
            short_topic(notice.topic) if notice else "(manual)",
            lights,
            Text(decision.conclusion.value, style="green" if decision.passed else "red"),
            ", ".join(action_cell(a) for a in decision.actions) or "-",
        )
    return table


def action_cell(action: ActionRecord) -> str:
    """An action's label, with what happened to it unless it merely would have run."""
    return action.label if action.status == "dry-run" else f"{action.label} ({action.status})"


TEXT_LIMIT = 50  # beyond this many events, text output shows only those that passed


def _repeats(result: Replay) -> str:
    """Notices the store already held (a repeated --store run, or one sent twice)."""
    repeated = result.by_status.get("duplicate", 0)
    return f" ({repeated} more already in the store or repeated)" if repeated else ""


def print_text(
    console: Console,
    result: Replay,
    views: Callable[[], Iterable[EventView]],
    show_all: bool = False,
    trigger: str | None = None,
) -> None:
    summary = counts(result.store)
    every = show_all or result.store.count_events(trigger) <= TEXT_LIMIT
    hidden = 0
    for view in views():
        if every or view.passed:
            console.print(event_table(view))
            console.print()
        else:
            hidden += 1
    if hidden:
        console.print(f"[dim]{hidden} events without a PASS not shown (--all shows them)[/]")
    decided = summary["decisions"]
    console.print(
        f"[bold]{result.processed}[/] notices{_repeats(result)}, {summary['events']} events, "
        f"[green]{decided.get('PASS', 0)} PASS[/], [red]{decided.get('FAIL', 0)} FAIL[/]"
        + (f", [magenta]{decided.get('ERROR', 0)} ERROR[/]" if decided.get("ERROR") else "")
        + f"; {action_summary(summary['actions'], result.products)}; "
        f"{summary['dead_letters']} dead letters; "
        f"{summary['notices'].get('unsubscribed', 0)} notices on topics no trigger reads"
        + (f"; {escape(result.skipped.describe())}" if result.skipped else "")
    )
    console.print(legend())


# How each action status reads in the summary, in this order; a dry run acts on nothing else.
ACTION_WORDS: tuple[tuple[str, str], ...] = (
    ("dry-run", "[bold]{n}[/] would run"),
    ("done", "[green]{n} done[/]"),
    ("failed", "[red]{n} failed[/]"),
    ("clash", "[yellow]{n} clashed[/] (refused by arbitration)"),
    ("refused", "[red]{n} refused[/] (could not be planned)"),
    ("skipped", "{n} skipped (live actions: a dry run writes files only)"),
    ("pending", "{n} not run"),
)


def action_summary(by_status: dict[str, int], products: bool = False) -> str:
    """Actions counted by what happened to them: a failure or a clash is never 'would run'.
    With products, the file products ran, and the live actions left are skipped."""
    if not by_status:
        return "no actions"
    if products and "dry-run" in by_status:
        by_status = {**by_status, "skipped": by_status["dry-run"]}
        del by_status["dry-run"]
    known = {status for status, _ in ACTION_WORDS}
    parts = [word.format(n=by_status[s]) for s, word in ACTION_WORDS if by_status.get(s)]
    parts += [f"{n} {status}" for status, n in sorted(by_status.items()) if status not in known]
    return f"{sum(by_status.values())} actions: " + ", ".join(parts)
