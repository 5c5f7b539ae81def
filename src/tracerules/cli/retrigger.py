"""`tracerules retrigger TRIGGER EVENT_ID`: a person's decision on an event.

The event's notices are replayed under the current rules; MAYBE is promoted to PASS; the
decision is recorded with source `manual` and who ran it, and acts through the normal action
path (planning, arbitration, idempotency keys). Manual actions are keyed by the event's
state, so running the same retrigger twice starts them once. `--dry-run` shows what would
happen and records nothing.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Sequence
from pathlib import Path

from rich.table import Table
from rich.text import Text

from tracerules.cli.operator import (
    EXIT_FAIL,
    EXIT_OK,
    UsageError,
    console,
    factor_json,
    fail,
    iso,
    light,
    load_rules,
    open_store,
    print_json,
    rule_folders,
)
from tracerules.runtime.engine.decisions import Decision
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.store.store import Store


class _RehearsalError(Exception):
    """Raised inside the transaction of a dry run, so that everything is rolled back."""


def default_actor() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def rehearse(engine: Engine, trigger: str, event_id: str, actor: str) -> Decision:
    """The decision a retrigger would make, with nothing left in the store."""
    decision: Decision | None = None
    try:
        with engine.store.transaction():
            decision = engine.retrigger(trigger, event_id, actor)
            raise _RehearsalError
    except _RehearsalError:
        engine.events.forget()  # its cache may hold the rolled-back state
    assert decision is not None
    return decision


def already_started(store: Store, decision: Decision) -> list[str]:
    """Keys of manual actions an earlier retrigger of the same event state already planned."""
    prefix = f"{decision.trigger}/{decision.event_id}/manual-{decision.seq}/"
    return [f"{key} ({status})" for key, status in store.actions_keyed(prefix, decision.id or -1)]


def run_retrigger(
    store_option: Path | None,
    rule_paths: Sequence[Path] | None,
    trigger: str,
    event_id: str,
    *,
    actor: str | None,
    dry_run: bool,
    out_dir: Path,
    output: str,
) -> int:
    try:
        store = open_store(store_option)
        folders = rule_folders(rule_paths, store)
        rules = load_rules(folders or [Path("rules")])
    except UsageError as err:
        return fail(str(err))
    engine = Engine(rules, store, out_dir=out_dir, dry_run=dry_run)
    who = actor or default_actor()
    try:
        decision = (
            rehearse(engine, trigger, event_id, who)
            if dry_run
            else engine.retrigger(trigger, event_id, who)
        )
    except KeyError as err:
        store.close()
        return fail(str(err.args[0]), EXIT_FAIL)
    earlier = already_started(store, decision)
    store.close()
    if output == "json":
        print_json(_as_json(decision, dry_run, earlier))
    else:
        _print(decision, dry_run, earlier)
    return EXIT_OK


def _as_json(decision: Decision, dry_run: bool, earlier: list[str]) -> dict[str, object]:
    return {
        "dry_run": dry_run,
        "trigger": decision.trigger,
        "event_id": decision.event_id,
        "decision": None if dry_run else decision.id,
        "actor": decision.actor,
        "at": decision.at,
        "votes": decision.votes.value,
        "conclusion": decision.conclusion.value,
        "factors": [factor_json(f) for f in decision.factors],
        "actions": [
            {"type": a.type, "label": a.label, "status": a.status, "key": a.idempotency_key}
            | ({"log": a.log} if a.log else {})
            for a in decision.actions
        ],
        "already_started": earlier,
    }


def _print(decision: Decision, dry_run: bool, earlier: list[str]) -> None:
    out = console()
    what = "would decide" if dry_run else f"decision {decision.id}"
    colour = "green" if decision.passed else "red"
    out.print(
        Text.assemble(
            f"{decision.trigger} / {decision.event_id}: {what} ",
            (decision.conclusion.value, f"bold {colour}"),
            f" (votes {decision.votes.value}; manual, by {decision.actor}, {iso(decision.at)})",
        )
    )
    table = Table("", "factor", "vote", "values / reason")
    for f in decision.factors:
        vote = f.vote.value + (" (inherited)" if f.inherited else "")
        table.add_row(light(f), f.name, vote, f.detail or f.reason or "")
    out.print(table)
    for a in decision.actions:
        verb = "would start" if dry_run else "started"
        out.print(f"{verb}: {a.type} {a.label}: {a.status}  [grey50]{a.idempotency_key}[/]")
        if a.log.strip():
            out.print(Text(a.log.rstrip(), style="grey62"))
    if decision.passed and not decision.actions:
        if earlier:
            out.print("no action: an earlier retrigger of this event state already started:")
            for key in earlier:
                out.print(f"  {key}")
        else:
            out.print("no action: the trigger has none")
