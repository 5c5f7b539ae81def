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

import re
import threading
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg_pool import ConnectionPool

from tracerules.runtime.store.dialect import Cursor, display_location

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
    """A pooled psycopg connection that runs the store's SQL (see the module's docstring)."""

    def __init__(self, pool: ConnectionPool, conn: psycopg.Connection[Any]) -> None:
        self._pool = pool
        self._conn = conn
        self._closed = False

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        # Always pass parameters, even none: psycopg then undoes the doubled `%`.
        cursor: Cursor = self._conn.execute(translate(sql), tuple(parameters))
        return cursor

    def executemany(self, sql: str, parameters: Any, /) -> Cursor:
        cursor = self._conn.cursor()
        cursor.executemany(translate(sql), list(parameters))
        return cursor

    def close(self) -> None:
        """Back to the pool (rolled back if mid-transaction); closing twice is harmless, as
        with `sqlite3`."""
        if self._closed:
            return
        self._closed = True
        if self._conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self._conn.rollback()
        self._pool.putconn(self._conn)


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
            pool = ConnectionPool(
                url,
                min_size=1,
                max_size=POOL_MAX,
                kwargs={"autocommit": True},
                configure=_configure(read_only),
                timeout=POOL_WAIT_S,
                name=f"tracerules {display_location(url)}{' ro' if read_only else ''}",
                open=False,
            )
            pool.open(wait=True, timeout=POOL_WAIT_S)
            _POOLS[(url, read_only)] = pool
        return pool


def connect(url: str, *, read_only: bool) -> PgConnection:
    """A connection to the store at `url` (a clear error if the server cannot be reached)."""
    try:
        pool = _pool(url, read_only)
        return PgConnection(pool, pool.getconn())
    except Exception as err:  # the pool's timeout hides the server's own message
        raise psycopg.OperationalError(
            f"cannot reach the PostgreSQL store {display_location(url)}: {err}"
        ) from err


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
