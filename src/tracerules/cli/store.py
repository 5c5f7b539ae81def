"""`tracerules store migrate|export`: upgrade a store in place, or move its history.

A team moving from its SQLite file to PostgreSQL stops the service, then runs
`tracerules store migrate --from tracerules.sqlite --store postgresql://...` (or exports to
NDJSON first, to keep or to carry elsewhere, and migrates from that file).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

store_app = typer.Typer(
    help="The store itself: upgrade it, export it, move it to PostgreSQL.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        "-s",
        help="a SQLite file or a postgresql:// URL [env TRACERULES_STORE; ./tracerules.sqlite]",
    ),
]


@store_app.command("export")
def export_command(
    store: StoreOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="the NDJSON file [default: stdout]")
    ] = None,
) -> None:
    """Every notice, event, decision and action of the store, as NDJSON (one row a line)."""
    from tracerules.cli.operator import UsageError, fail, open_store
    from tracerules.runtime.store.transfer import export

    try:
        db = open_store(store, read_only=True)  # beside a running service; never migrated
    except UsageError as err:
        raise typer.Exit(fail(str(err))) from err
    try:
        if out is None:
            counts = export(db, sys.stdout)
        else:
            with out.open("w", encoding="utf-8") as handle:
                counts = export(db, handle)
    finally:
        db.close()
    print(f"exported {counts.summary()} from {db.location}", file=sys.stderr)


@store_app.command("migrate")
def migrate_command(
    store: StoreOption = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="copy all history from this store (a SQLite file, a URL) or NDJSON export",
        ),
    ] = None,
) -> None:
    """Upgrade the store's schema in place; with --from, fill a new, empty store (PostgreSQL,
    say) with another store's whole history, ids included. Stop the services first."""
    from tracerules.cli.operator import (
        EXIT_USAGE,
        UsageError,
        connect_store,
        fail,
        open_store,
        store_path,
    )
    from tracerules.runtime.store.dialect import display_location, store_exists
    from tracerules.runtime.store.transfer import TransferError, import_rows

    if source is None:
        try:
            before = open_store(store, read_only=True)
        except UsageError as err:
            raise typer.Exit(fail(str(err))) from err
        old = before.version()
        before.close()
        try:
            after = connect_store(store_path(store))  # a writable open migrates
        except UsageError as err:
            raise typer.Exit(fail(str(err))) from err
        print(f"{after.location}: schema {old} -> {after.version()}")
        after.close()
        return
    if not store_exists(source):
        raise typer.Exit(fail(f"no store or export at {display_location(source)}"))
    try:
        target = connect_store(store_path(store))
    except UsageError as err:
        raise typer.Exit(fail(str(err))) from err
    try:
        counts = import_rows(target, _source_lines(source))
    except TransferError as err:
        raise typer.Exit(fail(str(err), EXIT_USAGE)) from err
    finally:
        target.close()
    print(f"copied {counts.summary()} from {display_location(source)} to {target.location}")


def _source_lines(source: str) -> Iterator[str]:
    """The lines of an NDJSON export, or of a store exported on the fly (read-only)."""
    from tracerules.runtime.store.dialect import store_file
    from tracerules.runtime.store.store import Store
    from tracerules.runtime.store.transfer import export_lines

    path = store_file(source)
    if path is not None and _is_export(path):
        with path.open(encoding="utf-8") as handle:
            yield from handle
        return
    db = Store(source, read_only=True)
    try:
        yield from (line for _, line in export_lines(db))
    finally:
        db.close()


def _is_export(path: Path) -> bool:
    """Any file but a SQLite database is read as an export, so that an empty or foreign file
    is refused as one, at its line, rather than opened as an empty database."""
    with path.open("rb") as handle:
        return handle.read(16) != b"SQLite format 3\x00"
