"""`tracerules events list|show`: events per trigger, and one event in full.

`show` puts the *current conditions* (the event's notices replayed under the rules as they
are now, without acting) beside the historic decisions, so a rule change can be judged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from tracerules.cli.glyphs import factor_light
from tracerules.cli.operator import (
    EXIT_FAIL,
    EXIT_OK,
    UsageError,
    console,
    factor_json,
    fail,
    iso,
    load_rules,
    open_store,
    print_json,
    rule_folders,
)
from tracerules.cli.trigger_names import unknown_trigger
from tracerules.report import browse
from tracerules.rules.compile import RuleSet
from tracerules.runtime.engine.decisions import Factor, Source, conclude, tally
from tracerules.runtime.store import history
from tracerules.runtime.store.history import EventView
from tracerules.runtime.store.store import Store

CONCLUSION_STYLE = {"PASS": "green", "FAIL": "red", "ERROR": "magenta"}


def run_list(
    store_option: Path | None, trigger: str | None, limit: int, offset: int, output: str
) -> int:
    try:
        store = open_store(store_option, read_only=True)
    except UsageError as err:
        return fail(str(err))
    if trigger is not None:
        stored = store.event_triggers()
        wrong = unknown_trigger(trigger, stored, "the store")
        if wrong is not None:
            store.close()
            return fail(wrong)
    rows, total = browse.event_summaries(store, trigger, limit, offset)
    store.close()
    if output == "json":
        print_json({"total": total, "offset": offset, "events": rows})
        return EXIT_OK
    table = Table(title=f"events {offset + 1}-{offset + len(rows)} of {total:,} (newest first)")
    for column in ("trigger", "event id", "event time (UTC)", "notices", "decisions", "passed"):
        table.add_column(column)
    table.add_column("latest")
    table.add_column("actions", justify="right")
    for r in rows:
        latest = r["latest"] or "-"
        table.add_row(
            r["trigger"],
            r["event_id"],
            iso(r["event_time"]),
            str(r["notices"]),
            str(r["decisions"]),
            Text("yes", style="green") if r["passes"] else Text("no", style="grey50"),
            Text(latest, style=CONCLUSION_STYLE.get(latest, "")),
            str(r["actions"]),
        )
    console().print(table)
    return EXIT_OK


def current(
    rules: RuleSet | None, store: Store, trigger: str, event_id: str
) -> dict[str, Any] | None:
    """The event replayed under the rules as they are now: factors, votes, and the verdict."""
    if rules is None or rules.trigger(trigger) is None:
        return None
    from tracerules.runtime.engine.engine import Engine

    replayed = Engine(rules, store, dry_run=True).current_conditions(trigger, event_id)
    if replayed is None:
        return None
    factors = replayed[0]
    votes = tally(factors)
    return {
        "factors": factors,
        "votes": votes.value,
        "automatic": conclude(votes, Source.NOTICE).value,
        "retrigger": conclude(votes, Source.MANUAL).value,
    }


def run_show(
    store_option: Path | None,
    rule_paths: Sequence[Path] | None,
    trigger: str,
    event_id: str,
    output: str,
) -> int:
    try:
        store = open_store(store_option, read_only=True)
        folders = rule_folders(rule_paths, store)
        rules = load_rules(folders) if folders else None
    except UsageError as err:
        return fail(str(err))
    views = history.events(store, trigger=trigger, event_id=event_id)
    if not views:
        store.close()
        return fail(f"trigger '{trigger}' has no event '{event_id}' in the store", EXIT_FAIL)
    now = current(rules, store, trigger, event_id)
    store.close()
    if output == "json":
        print_json(_as_json(views[0], now))
    else:
        _print(views[0], now)
    return EXIT_OK


def _as_json(view: EventView, now: dict[str, Any] | None) -> dict[str, Any]:
    data = asdict(view)
    for decision, out in zip(view.decisions, data["decisions"], strict=True):
        out["factors"] = [factor_json(f) for f in decision.factors]
        out["source"] = decision.source.value
        out["votes"] = decision.votes.value
        out["conclusion"] = decision.conclusion.value
    if now is not None:
        now = {**now, "factors": [factor_json(f) for f in now["factors"]]}
    data["current"] = now
    return data


def _cell(factor: Factor | None) -> Text:
    if factor is None:
        return Text("\u00b7", style="grey50")
    shape = factor_light(factor)
    return Text.assemble(shape, (f" {factor.vote.value}", shape.style))


def _print(view: EventView, now: dict[str, Any] | None) -> None:
    out = console()
    verdict = Text("passed", style="green") if view.passed else Text("never passed", style="red")
    out.print(
        Text.assemble(
            (f"{view.trigger} / {view.event_id}", "bold"),
            f"  event time {iso(view.event_time)}  {len(view.notices)} notice(s)  ",
            verdict,
        )
    )
    notices = Table(title="notices", title_justify="left")
    for column in ("#", "id", "topic", "received (UTC)", "name"):
        notices.add_column(column)
    for seq, n in enumerate(view.notices, 1):
        notices.add_row(str(seq), str(n.id), n.topic, iso(n.received), n.name or "")
    out.print(notices)
    names = list(dict.fromkeys(f.name for d in view.decisions for f in d.factors))
    table = Table(title="decisions (* inherited)", title_justify="left")
    for column in ("#", "source", "at (UTC)", *names, "conclusion", "actions"):
        table.add_column(column)
    for d in view.decisions:
        source = d.source.value + (f" by {d.actor}" if d.actor else "")
        actions = ", ".join(f"{a.label}: {a.status}" for a in d.actions) or "-"
        cells = [_cell(d.factor(n)) for n in names]
        colour = "green" if d.passed else "red"
        table.add_row(
            str(d.seq), source, iso(d.at), *cells, Text(d.conclusion.value, colour), actions
        )
    if now is not None:
        by_name = {f.name: f for f in now["factors"]}
        verdict_now = f"{now['votes']} (retrigger: {now['retrigger']})"
        cells = [_cell(by_name.get(n)) for n in names]
        table.add_row("now", "current rules", "-", *cells, verdict_now, "-", style="bold")
    out.print(table)
    if now is None:
        out.print("[grey50]current conditions: the trigger is not in the current rules[/]")
    for d in view.decisions:
        for a in d.actions:
            out.print(
                f"[bold]action {a.id}[/] {a.type} {a.label}: {a.status} ({a.idempotency_key})"
            )
            if a.log.strip():
                out.print(Text(a.log.rstrip(), style="grey62"))
