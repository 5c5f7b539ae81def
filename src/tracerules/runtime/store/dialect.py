"""What differs between the store's two databases, and nothing else.

The store's SQL is written once, in the subset SQLite and PostgreSQL share: `?` placeholders,
`INSERT ... ON CONFLICT (...) DO UPDATE/NOTHING`, a new row's id through `Dialect.new_id`,
`"offset"` quoted. SQLite runs it as it is, on the `sqlite3` connection itself (nothing in
between on the embedded default's hot path). PostgreSQL runs it through
`runtime.store.postgres`, which rewrites placeholders once per statement text. What cannot be
written once (how to begin a write transaction, whether a table exists, the schema's column
types) is a `Dialect`.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Final, Protocol, TypeAlias

URL_SCHEMES = ("postgresql://", "postgres://")
# `--store`: a SQLite file, or a PostgreSQL URL (kept a string: a Path would fold its `//`).
StoreLocation: TypeAlias = str | Path


def is_database_url(location: str | PathLike[str]) -> bool:
    """Whether `--store` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(location, str) and location.startswith(URL_SCHEMES)


def store_file(location: StoreLocation) -> Path | None:
    """The SQLite file a location names; None for a PostgreSQL URL."""
    return None if is_database_url(str(location)) else Path(location)


def store_exists(location: StoreLocation) -> bool:
    """Whether there is a store there: a file, or a database (whose server answers later)."""
    path = store_file(location)
    return path is None or path.is_file()


def display_location(location: str | PathLike[str]) -> str:
    """A store's location fit for logs and errors: a URL without its password."""
    text = str(location)
    if not is_database_url(text) or "@" not in text.split("/", 3)[2]:
        return text
    scheme, rest = text.split("://", 1)
    credentials, host = rest.split("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}@{host}" if user else f"{scheme}://{host}"


class Cursor(Protocol):
    """What the store uses of a cursor (`sqlite3.Cursor`, psycopg's cursor)."""

    @property
    def rowcount(self) -> int: ...
    @property
    def description(self) -> Any: ...  # a sequence of columns, each's name first
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What the store uses of a connection: rows answer to both `row[0]` and `row["name"]`."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...
    def executemany(self, sql: str, parameters: Any, /) -> Cursor: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Dialect:
    name: str
    begin: str  # a write transaction that takes the write lock at once
    has_table: str  # one parameter, the table's name; a row if it exists
    claim: str  # after a SELECT of rows to update: lock them, and skip those locked
    # after an INSERT whose new id is wanted: SQLite's lastrowid costs nothing, where its
    # RETURNING costs a few microseconds a row (a tenth of the engine benchmark)
    returning_id: str
    # A decision's factors column read from the factors table of schema 7 and before (a
    # store an older service owns, read as it is): the JSON that schema 8 stores.
    factors_before_8: str

    def new_id(self, cursor: Any) -> int | None:
        """The id the INSERT (with `returning_id`) gave; None if it inserted nothing (an
        `ON CONFLICT DO NOTHING` that found the row)."""
        if self.returning_id:
            row = cursor.fetchone()
            return None if row is None else int(row[0])
        return int(cursor.lastrowid) if cursor.rowcount == 1 else None


SQLITE = Dialect(
    "sqlite",
    # IMMEDIATE: take the write lock at BEGIN, so two writers never deadlock on an upgrade.
    "BEGIN IMMEDIATE",
    "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
    "",
    "",
    # an aggregate over an ordered subquery takes its rows in that order (SQLite 3.44 has
    # ORDER BY inside the aggregate; Python's may be older)
    "(SELECT json_group_array(json_array(name, vote, inherited, reason, detail)) FROM "
    "(SELECT * FROM factors f WHERE f.decision = decisions.id ORDER BY position))",
)
POSTGRESQL = Dialect(
    "postgresql",
    "BEGIN",
    "SELECT 1 FROM information_schema.tables WHERE table_schema=current_schema() AND table_name=?",
    " FOR UPDATE SKIP LOCKED",
    " RETURNING id",
    "(SELECT json_agg(json_build_array(name, vote, inherited, reason, detail) "
    "ORDER BY position)::text FROM factors f WHERE f.decision = decisions.id)",
)


def store_errors() -> tuple[type[Exception], ...]:
    """The exceptions a store raises when its database fails (full disk, lost server).

    psycopg is only imported by a PostgreSQL store; until then none of its errors can occur.
    """
    psycopg = sys.modules.get("psycopg")
    if psycopg is None:
        return (sqlite3.Error,)
    return (sqlite3.Error, psycopg.Error)


_PG_DISK_FULL: Final = "53100"  # SQLSTATE disk_full


def store_disk_full(err: BaseException) -> bool:
    """A store error that is a full disk, by its code (SQLite's SQLITE_FULL, PostgreSQL's
    disk_full), not by the words of its message."""
    if isinstance(err, sqlite3.Error):
        return getattr(err, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return getattr(err, "sqlstate", None) == _PG_DISK_FULL and isinstance(err, store_errors())
