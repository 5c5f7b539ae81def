"""`tracerules topics`: per topic, the notices stored, bytes, last seen time and status."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.table import Table
from rich.text import Text

from tracerules.cli.operator import (
    EXIT_OK,
    UsageError,
    console,
    fail,
    iso,
    load_rules,
    open_store,
    print_json,
    rule_folders,
)
from tracerules.report import browse

STATUS_STYLE = {"subscribed": "green", "error": "red", "never seen": "dark_orange"}


def run_topics(
    store_option: Path | None, rule_paths: Sequence[Path] | None, show_all: bool, output: str
) -> int:
    try:
        store = open_store(store_option, read_only=True)
        folders = rule_folders(rule_paths, store)
        rules = load_rules(folders) if folders else None
    except UsageError as err:
        return fail(str(err))
    rows = browse.topics(store, rules)
    store.close()
    if not show_all:
        rows = [r for r in rows if r["count"] or r["triggers"]]
    if output == "json":
        print_json(rows)
        return EXIT_OK
    table = Table(title="topics")
    for column in ("topic", "format", "notices", "bytes", "last seen (UTC)", "dead", "status"):
        table.add_column(
            column, justify="right" if column in ("notices", "bytes", "dead") else "left"
        )
    table.add_column("triggers / last error")
    for r in rows:
        note = (r.get("error_current") and r.get("last_error")) or ", ".join(r["triggers"])
        table.add_row(
            r["topic"],
            r["format"],
            f"{r['count']:,}",
            f"{r['bytes']:,}",
            iso(r["last_seen"]),
            str(r["dead_letters"]),
            Text(r["status"], style=STATUS_STYLE.get(r["status"], "grey50")),
            note,
        )
    console().print(table)
    return EXIT_OK
