"""`tracerules actions list|retry`: failed actions, and sending them again.

A failed action is retried by the service on its own while its event has not expired; once
it has failed for good (an expired event, a refusal, a mistake since fixed), `retry` puts it
back to pending and the running service picks it up within a second. Its idempotency key is
unchanged, so the receiving end can tell a retry from a new request.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

# The operator helpers (and the rule compiler behind them) are imported inside the commands:
# `tracerules --help` must not pay for them.
actions_app = typer.Typer(help="Actions: list them, retry failed ones.", no_args_is_help=True)
StoreOption = Annotated[
    Path | None,
    typer.Option("--store", "-s", help="the store [env TRACERULES_STORE; ./tracerules.sqlite]"),
]


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
        db = open_store(store, read_only=True)
    except UsageError as err:
        raise typer.Exit(fail(str(err))) from None
    rows = [r._asdict() for r in db.list_actions(status=status, trigger=trigger)]
    # Why an action was superseded (not run: it could not be rebuilt as planned).
    reasons = db.superseded_reasons([r["id"] for r in rows if r["status"] == "superseded"])
    db.close()
    for r in rows:
        if r["id"] in reasons:
            r["reason"] = reasons[r["id"]]
    if output == "json":
        print_json(rows)
        return
    for r in rows:
        later = f" next try {iso(r['retry_at'])}" if r["retry_at"] else ""
        why = f"\n    {r['reason']}" if "reason" in r else ""
        print(
            f"#{r['id']} {r['status']:<8} x{r['attempts']} {r['trigger']} {r['event_id']} "
            f"{r['type']}:{r['label']}{later}{why}"
        )


@actions_app.command("retry")
def actions_retry(
    ids: Annotated[list[int] | None, typer.Argument(help="action ids (see `actions list`)")] = None,
    store: StoreOption = None,
    trigger: Annotated[str | None, typer.Option(help="every failed action of this trigger")] = None,
    event_id: Annotated[str | None, typer.Option("--event", help="... of this event")] = None,
) -> None:
    """Put failed actions back to pending; the running service runs them again."""
    from tracerules.cli.operator import EXIT_FAIL, EXIT_OK, UsageError, fail, iso, open_store

    if not ids and not trigger and not event_id:
        raise typer.Exit(fail("name the actions: ids, --trigger or --event"))
    try:
        db = open_store(store)
    except UsageError as err:
        raise typer.Exit(fail(str(err))) from None
    try:
        now = time.time()
        note = f"retried by the operator at {iso(now)}\n"
        done = db.retry_failed_actions(list(ids or []), trigger, event_id, note, now)
    finally:
        db.close()
    if not done:
        print("no failed action matches")
        raise typer.Exit(EXIT_FAIL)
    print(f"{len(done)} action(s) queued again: {', '.join(f'#{i}' for i in done)}")
    raise typer.Exit(EXIT_OK)
