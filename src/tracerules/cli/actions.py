"""`tracerules actions list|retry`: failed actions, and sending them again.

A failed action is retried by the service on its own while its event has not expired; once
it has failed for good (an expired event, a refusal, a mistake since fixed), `retry` puts it
back to pending and the running service picks it up within a second. Its idempotency key is
unchanged, so the receiving end can tell a retry from a new request.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:  # the operator helpers import the rule compiler: not on `--help`'s path
    from tracerules.runtime.store import Store

actions_app = typer.Typer(help="Actions: list them, retry failed ones.", no_args_is_help=True)
StoreOption = Annotated[
    Path | None,
    typer.Option("--store", "-s", help="the store [env TRACERULES_STORE; ./tracerules.sqlite]"),
]


def _where(
    ids: list[int], trigger: str | None, event_id: str | None, status: str | None
) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    if ids:
        clauses.append(f"id IN ({','.join('?' * len(ids))})")
        params += ids
    if trigger:
        clauses.append("trigger=?")
        params.append(trigger)
    if event_id:
        clauses.append("event_id=?")
        params.append(event_id)
    if status:
        clauses.append("status=?")
        params.append(status)
    return " AND ".join(clauses) or "1", tuple(params)


def requeue(
    store: Store, ids: list[int], trigger: str | None, event_id: str | None, now: float
) -> list[int]:
    """Failed actions (these ids, or all of a trigger/event) back to pending; their ids."""
    from tracerules.cli.operator import iso

    where, params = _where(ids, trigger, event_id, "failed")
    note = f"retried by the operator at {iso(now)}\n"
    with store.transaction() as db:
        found = [int(r[0]) for r in db.execute(f"SELECT id FROM actions WHERE {where}", params)]
        for action_id in found:
            db.execute(
                "UPDATE actions SET status='pending', retry_at=NULL, log=log || ?, updated_at=? "
                "WHERE id=? AND status='failed'",
                (note, now, action_id),
            )
    return found


@actions_app.command("list")
def actions_list(
    store: StoreOption = None,
    status: Annotated[str | None, typer.Option(help="only this status, e.g. failed")] = None,
    trigger: Annotated[str | None, typer.Option(help="only this trigger")] = None,
    output: Annotated[str, typer.Option("--format", "-f", help="text or json")] = "text",
) -> None:
    """Actions newest first: id, status, attempts, next try, trigger, event, destination."""
    from tracerules.cli.operator import UsageError, fail, iso, open_store, print_json

    try:
        db = open_store(store)
    except UsageError as err:
        raise typer.Exit(fail(str(err))) from None
    where, params = _where([], trigger, None, status)
    rows = [
        dict(r)
        for r in db.query(
            "SELECT id, status, attempts, retry_at, trigger, event_id, type, label, updated_at "
            f"FROM actions WHERE {where} ORDER BY id DESC LIMIT 200",
            params,
        )
    ]
    db.close()
    if output == "json":
        print_json(rows)
        return
    for r in rows:
        later = f" next try {iso(r['retry_at'])}" if r["retry_at"] else ""
        print(
            f"#{r['id']} {r['status']:<8} x{r['attempts']} {r['trigger']} {r['event_id']} "
            f"{r['type']}:{r['label']}{later}"
        )


@actions_app.command("retry")
def actions_retry(
    ids: Annotated[list[int] | None, typer.Argument(help="action ids (see `actions list`)")] = None,
    store: StoreOption = None,
    trigger: Annotated[str | None, typer.Option(help="every failed action of this trigger")] = None,
    event_id: Annotated[str | None, typer.Option("--event", help="... of this event")] = None,
) -> None:
    """Put failed actions back to pending; the running service runs them again."""
    from tracerules.cli.operator import EXIT_FAIL, EXIT_OK, UsageError, fail, open_store

    if not ids and not trigger and not event_id:
        raise typer.Exit(fail("name the actions: ids, --trigger or --event"))
    try:
        db = open_store(store)
    except UsageError as err:
        raise typer.Exit(fail(str(err))) from None
    try:
        done = requeue(db, list(ids or []), trigger, event_id, time.time())
    finally:
        db.close()
    if not done:
        print("no failed action matches")
        raise typer.Exit(EXIT_FAIL)
    print(f"{len(done)} action(s) queued again: {', '.join(f'#{i}' for i in done)}")
    raise typer.Exit(EXIT_OK)
