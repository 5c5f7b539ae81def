"""The PostgreSQL store's connection: psycopg 3, from a pool, speaking the store's one SQL.

`PgConnection` answers like the `sqlite3` connection the rest of the store package uses:
`execute(sql, params)` with `?` placeholders, rows readable as `row[0]` and `row["name"]`.
Each statement text is rewritten once (then cached): `?` becomes `%s`, a literal `%` is
doubled, SQLite's `INDEXED BY` hint is dropped. The store writes conflicts the portable way
(`ON CONFLICT ... DO NOTHING / DO UPDATE`, which both databases run); SQLite's own
`INSERT OR IGNORE/REPLACE/...` is refused with a pointer to it, never rewritten.

Connections come from a `psycopg_pool.ConnectionPool` per URL and access mode, so the web
dashboard's per-request stores and the action workers' stores reuse them instead of paying
a new server backend each time. They run in autocommit mode; `Store.transaction()` issues
BEGIN and COMMIT itself, exactly as it does on SQLite.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar

import psycopg
import psycopg_pool
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg_pool import ConnectionPool

from tracerules.runtime.store.dialect import Cursor, display_location
from tracerules.runtime.store.reach import (
    CONNECT_TIMEOUT_S,
    StoreUnreachable,
    connection_settings,
    open_connection,
    server_address,
)

if TYPE_CHECKING:
    from psycopg.rows import RowMaker

# The service's threads (engine, workers, heartbeat) and the dashboard's request threads
# (anyio's default limit is 40, each keeping its own read-only store); pools grow on demand.
POOL_MAX = 40
POOL_WAIT_S = 30.0


class Row(tuple[Any, ...]):
    """A row as `sqlite3.Row` gives it: by position and by column name, and `dict(row)`."""

    _index: ClassVar[dict[str, int]] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


@lru_cache(maxsize=512)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"_index": {n: i for i, n in enumerate(names)}})


def _rows(cursor: psycopg.Cursor[Any]) -> RowMaker[Row]:
    names = tuple(c.name for c in cursor.description or ())
    return _row_class(names)


class _BoolAsInteger(Dumper):
    """SQLite stores True as 1; the schema's flag columns (`test`, `inherited`) are integers,
    and PostgreSQL would refuse a boolean in them."""

    format = Format.TEXT
    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


_SQLITE_CONFLICT = re.compile(r"\bINSERT\s+OR\s+(ABORT|FAIL|IGNORE|REPLACE|ROLLBACK)\b", re.I)
_INDEXED_BY = re.compile(r"\s+INDEXED\s+BY\s+\w+", re.IGNORECASE)


@lru_cache(maxsize=2048)
def translate(sql: str) -> str:
    """The store's SQL (SQLite's `?` placeholders) as psycopg takes it."""
    refused = _SQLITE_CONFLICT.search(sql)
    if refused is not None:
        raise ValueError(
            f"INSERT OR {refused[1].upper()} is SQLite's: write INSERT ... ON CONFLICT DO "
            f"NOTHING or ON CONFLICT (key) DO UPDATE SET ..., which both databases run: {sql[:80]}"
        )
    text = sql.replace("%", "%%").replace("?", "%s")
    return _INDEXED_BY.sub("", text)


class PgConnection:
    """A pooled psycopg connection that runs the store's SQL (see the module's docstring).

    A store outlives its server's restarts: once the connection is found broken, the next
    statement outside a transaction takes a fresh one from the pool (`StoreUnreachable`
    while the server is still away, which the service's retries wait out). Inside a
    transaction it never switches, since the statements before would be lost unseen: the
    error goes up, and the ROLLBACK that follows is the one statement a broken transaction
    still accepts (the server dropped the transaction with the connection).
    """

    def __init__(self, pool: ConnectionPool, conn: psycopg.Connection[Any], url: str) -> None:
        self._pool = pool
        self._conn = conn
        self._url = url
        self._closed = False
        self._in_transaction = False

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        if self._conn.broken and self._replaced(sql):
            return _NO_ROWS
        word = sql.lstrip()[:8].upper()
        if word.startswith(("COMMIT", "ROLLBACK")):  # over, even if the statement fails
            self._in_transaction = False
        # Always pass parameters, even none: psycopg then undoes the doubled `%`.
        cursor: Cursor = self._conn.execute(translate(sql), tuple(parameters))
        if word.startswith("BEGIN"):
            self._in_transaction = True
        return cursor

    def executemany(self, sql: str, parameters: Any, /) -> Cursor:
        if self._conn.broken:
            self._replaced(sql)
        cursor = self._conn.cursor()
        cursor.executemany(translate(sql), list(parameters))
        return cursor

    def _replaced(self, sql: str) -> bool:
        """Swap the broken connection for a new one; True if `sql` (a ROLLBACK of the
        transaction the break ended) is then done already."""
        rollback = sql.lstrip().upper().startswith("ROLLBACK")
        if self._in_transaction and not rollback:
            raise StoreUnreachable(
                f"PostgreSQL at {server_address(self._url)}: the connection was lost "
                "during a transaction"
            )
        self._in_transaction = False
        try:
            fresh = self._pool.getconn(timeout=CONNECT_TIMEOUT_S)
        except psycopg_pool.PoolTimeout as err:
            raise StoreUnreachable(
                f"PostgreSQL at {server_address(self._url)}: no connection ({err})"
            ) from err
        self._pool.putconn(self._conn)  # the pool discards a broken connection
        self._conn = fresh
        return rollback

    def close(self) -> None:
        """Back to the pool (rolled back if mid-transaction); closing twice is harmless, as
        with `sqlite3`."""
        if self._closed:
            return
        self._closed = True
        idle = self._conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        if not idle and not self._conn.broken:
            self._conn.rollback()
        self._pool.putconn(self._conn)


class _NoRows:
    """The cursor of a statement that had nothing to do (a ROLLBACK after a lost connection)."""

    rowcount = -1
    description = None

    def fetchone(self) -> Any:
        return None

    def fetchall(self) -> list[Any]:
        return []

    def __iter__(self) -> Iterator[Any]:
        return iter(())


_NO_ROWS = _NoRows()


# The pool says every failed connection attempt and every dropped connection on stderr, in
# its own words; the store says it once, in the service's JSON log, with host and port.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

_POOLS: dict[tuple[str, bool], ConnectionPool] = {}
_POOLS_LOCK = threading.Lock()


def _configure(read_only: bool) -> Callable[[psycopg.Connection[Any]], None]:
    def configure(conn: psycopg.Connection[Any]) -> None:
        conn.row_factory = _rows
        conn.adapters.register_dumper(bool, _BoolAsInteger)
        if read_only:
            # PostgreSQL itself then refuses writes, as SQLite's mode=ro does.
            conn.execute("SET default_transaction_read_only = on")

    return configure


def _pool(url: str, read_only: bool) -> ConnectionPool:
    with _POOLS_LOCK:
        pool = _POOLS.get((url, read_only))
        if pool is None:
            # One direct connection first: the pool would retry a server that refuses us
            # for POOL_WAIT_S and then report only its own timeout.
            open_connection(url).close()
            pool = ConnectionPool(
                url,
                min_size=1,
                max_size=POOL_MAX,
                kwargs={"autocommit": True, **connection_settings(url)},
                configure=_configure(read_only),
                timeout=POOL_WAIT_S,
                name=f"tracerules {display_location(url)}{' ro' if read_only else ''}",
                open=False,
            )
            pool.open(wait=True, timeout=POOL_WAIT_S)
            _POOLS[(url, read_only)] = pool
        return pool


def connect(url: str, *, read_only: bool) -> PgConnection:
    """A connection to the store at `url`; `StoreUnreachable` saying why if there is none."""
    pool = _pool(url, read_only)
    try:
        return PgConnection(pool, pool.getconn(), url)
    except psycopg_pool.PoolTimeout as err:  # the server went away since the pool opened
        raise StoreUnreachable(f"PostgreSQL at {server_address(url)}: {err}") from err


def close_pool(url: str) -> None:
    """Close the pools of one store (a test about to drop its database)."""
    with _POOLS_LOCK:
        for read_only in (False, True):
            pool = _POOLS.pop((url, read_only), None)
            if pool is not None:
                pool.close()


# -- schema ----------------------------------------------------------------------------------

_DDL_TYPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # Ids are given by the database, but can be set (an import keeps them; see `resume_ids`).
    (
        re.compile(r"\bid(\s+)INTEGER PRIMARY KEY\b"),
        r"id\1BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    ),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),  # SQLite's integers are 64-bit (Kafka offsets)
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
)


def ddl(statement: str) -> str:
    """A migration statement, written for SQLite, with PostgreSQL's column types."""
    for pattern, replacement in _DDL_TYPES:
        statement = pattern.sub(replacement, statement)
    return statement
