"""`tracerules notices list|show`: the notices in the store, and one notice in full."""

from __future__ import annotations

from pathlib import Path

from rich.syntax import Syntax
from rich.table import Table

from tracerules.cli.operator import (
    EXIT_FAIL,
    EXIT_OK,
    UsageError,
    console,
    fail,
    iso,
    open_store,
    parse_time,
    print_json,
)
from tracerules.report import browse


def run_list(
    store_option: Path | None,
    *,
    topic: str | None,
    fmt: str | None,
    since: str | None,
    until: str | None,
    event_id: str | None,
    limit: int,
    offset: int,
    output: str,
) -> int:
    try:
        if fmt not in (None, "json", "xml"):
            raise UsageError("--payload-format is json or xml")
        f = browse.NoticeFilter(
            topic,
            fmt,
            parse_time(since, "--since"),
            parse_time(until, "--until"),
            event_id,
            limit,
            offset,
        )
        store = open_store(store_option, read_only=True)
    except UsageError as err:
        return fail(str(err))
    page = browse.notices(store, f)
    store.close()
    if output == "json":
        print_json({"total": page.total, "offset": offset, "notices": page.rows})
        return EXIT_OK
    table = Table(title=f"notices {offset + 1}-{offset + len(page.rows)} of {page.total:,}")
    for column in ("id", "received (UTC)", "topic", "fmt", "status", "events", "name"):
        table.add_column(column, justify="right" if column == "id" else "left")
    for r in page.rows:
        events = ", ".join(f"{e['trigger']}/{e['event_id']}" for e in r["events"])
        table.add_row(
            str(r["id"]),
            iso(r["received"]),
            r["topic"],
            r["format"],
            r["status"],
            events or "-",
            r["name"] or "",
        )
    console().print(table)
    return EXIT_OK


def run_show(store_option: Path | None, notice_id: int, output: str) -> int:
    try:
        store = open_store(store_option, read_only=True)
    except UsageError as err:
        return fail(str(err))
    shown = browse.notice(store, notice_id)
    store.close()
    if shown is None:
        return fail(f"no notice {notice_id} in the store", EXIT_FAIL)
    if output == "json":
        print_json(shown)
        return EXIT_OK
    out = console()
    envelope = Table(show_header=False, title=f"notice {notice_id}", title_justify="left")
    envelope.add_column(style="bold")
    envelope.add_column()
    for key in ("topic", "partition", "offset", "created", "received", "source", "name", "size"):
        value = shown["envelope"][key]
        envelope.add_row(key, iso(value) if key in ("created", "received") else str(value))
    envelope.add_row("status", shown["envelope"]["status"])
    if shown["dead_letter"]:
        envelope.add_row("dead letter", shown["dead_letter"])
    out.print(envelope)
    for d in shown["decisions"]:
        out.print(f"  {d['trigger']} / {d['event_id'] or '-'}: {d['conclusion']} ({d['source']})")
    lexer = "json" if shown["envelope"]["format"] == "json" else "xml"
    out.print(Syntax(shown["payload"], lexer, word_wrap=True, theme="ansi_dark"))
    return EXIT_OK
