"""Raw SQL for tests, and for the benches that borrow the tests' harness: the one module
outside `tracerules.runtime.store` that runs SQL statements.

tracerules itself reads through its read model (the `Store` methods). A test sometimes needs
what no command shows: a column's exact value, a row damaged or aged on purpose, a store as
an older tracerules left it, the SQL a team would type into its own client. Those statements
are run here, so that `grep -rn "execute(" src tests bench` finds SQL only in the store
package and in this file.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from tracerules.runtime.store.postgres import ddl, translate
from tracerules.runtime.store.schema import MIGRATIONS
from tracerules.runtime.store.store import Store

Params = tuple[Any, ...]


# -- on a store's own connection ----------------------------------------------------------


@contextlib.contextmanager
def vm_steps(store: Store) -> Iterator[list[int]]:
    """Counts the work SQLite's virtual machine does for the store's statements meanwhile,
    in hundreds of its instructions (`[count]`, read after the block): the same on a busy
    machine as on a quiet one, and it grows with every row a statement reads."""
    count = [0]

    def step() -> int:
        count[0] += 1
        return 0  # go on

    store.db.set_progress_handler(step, 100)  # type: ignore[attr-defined]
    try:
        yield count
    finally:
        store.db.set_progress_handler(None, 0)  # type: ignore[attr-defined]


def query_plan(store: Store, sql: str, params: Params = ()) -> str:
    """SQLite's plan for a statement, its steps joined by newlines."""
    return "\n".join(str(r[3]) for r in store.db.execute(f"EXPLAIN QUERY PLAN {sql}", params))


def sql_rows(store: Store, sql: str, params: Params = ()) -> list[Any]:
    """Every row of a statement (rows read by index and by column name)."""
    return list(store.db.execute(sql, params))


def sql_value(store: Store, sql: str, params: Params = ()) -> Any:
    """The first column of the first row, or None."""
    row = store.db.execute(sql, params).fetchone()
    return row[0] if row else None


# A decision's factors as SQL reads them out of its JSON column (schema 8): name, vote and
# whether it was inherited, in order. What a team's own query would say, on each database.
_FACTORS_SQLITE = (
    "SELECT f.value ->> 0, f.value ->> 1, f.value ->> 2 FROM decisions d, "
    "json_each(d.factors) f WHERE d.id = ? ORDER BY f.key"
)
_FACTORS_POSTGRESQL = (
    "SELECT f.value ->> 0, f.value ->> 1, (f.value ->> 2)::boolean FROM decisions d, "
    "json_array_elements(d.factors::json) WITH ORDINALITY f(value, i) WHERE d.id = ? "
    "ORDER BY f.i"
)


def stored_factors(store: Store, decision: int) -> list[tuple[str, str, bool]]:
    """A decision's factors read by SQL alone: (name, vote, inherited), in order."""
    sql = _FACTORS_POSTGRESQL if store.is_postgresql else _FACTORS_SQLITE
    return [(str(n), str(v), bool(i)) for n, v, i in store.db.execute(sql, (decision,))]


def sql_run(store: Store, sql: str, params: Params = ()) -> None:
    """A write the store has no method for: damage, ageing, a state set by hand."""
    store.db.execute(sql, params)


# -- with a connection of its own, as another process or a team's SQL client -------------


def _postgresql(location: str | Path) -> bool:
    return isinstance(location, str) and "://" in location


def rows_at(location: str | Path, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
    """Rows read by plain sqlite3 (a path) or psycopg (a URL), no tracerules connection:
    what a team member's client sees. `?` placeholders on both."""
    if _postgresql(location):
        import psycopg

        with psycopg.connect(str(location)) as pg:
            return [tuple(r) for r in pg.execute(translate(sql), params)]
    with contextlib.closing(sqlite3.connect(location, timeout=30)) as db:
        return list(db.execute(sql, params))


def old_store(location: str | Path, version: int, *, with_notice: bool = True) -> None:
    """A store as an older tracerules left it: the first `version` migrations, and one
    notice unless told otherwise."""
    sqlite = not _postgresql(location)
    if sqlite:
        db: Any = sqlite3.connect(location)
    else:
        import psycopg

        db = psycopg.connect(str(location), autocommit=True)
    mark = "?" if sqlite else "%s"
    for script in MIGRATIONS[:version]:
        assert isinstance(script, str), "old stores are of schema 7 and before: SQL alone"
        for statement in script.split(";\n"):
            if statement.strip():
                db.execute(statement if sqlite else ddl(statement))
    db.execute(f"INSERT INTO meta VALUES ('schema_version', {mark})", (str(version),))
    if with_notice:
        db.execute(
            'INSERT INTO notices (topic, partition, "offset", received, source, size, sha256, '
            f"payload, status) VALUES ('t', 0, 7, 1.0, 'kafka', 2, 'h', {mark}, 'new')",
            (b"{}",),
        )
    if sqlite:
        db.commit()
    db.close()


# -- PostgreSQL server administration -------------------------------------------------------


def create_database(server_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def end_sessions(url: str, application_name: str) -> None:
    """Terminate the server sessions of one application on this database (a network cut)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()",
            (application_name,),
        )


# -- the benches' floor ------------------------------------------------------------------------


def plain_table_writer(path: Path) -> Callable[[Iterable[Params]], None]:
    """A bare SQLite table of (topic, offset, received, payload) and a writer that inserts
    rows in one transaction: the least a durable store costs (bench/engine.py's floor)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("CREATE TABLE n (topic TEXT, ofs INTEGER, received REAL, payload BLOB)")

    def write(rows: Iterable[Params]) -> None:
        db.execute("BEGIN")
        db.executemany("INSERT INTO n VALUES (?, ?, ?, ?)", rows)
        db.execute("COMMIT")
        db.close()

    return write


def backend_pid(store: Store) -> int:
    """The PostgreSQL server process that runs a store's statements (its CPU time is the
    store's too: bench/engine.py)."""
    return int(sql_value(store, "SELECT pg_backend_pid()"))


def postgres_table_writer(url: str) -> tuple[int, Callable[[Iterable[Params]], None]]:
    """A bare PostgreSQL table of (topic, offset, received, payload) on a connection of the
    store's own pool (autocommit; BEGIN and COMMIT sent as `Store.transaction` sends them),
    its backend's pid, and a writer that inserts the rows in one transaction, one statement
    each and not one batch, since the engine must store each notice (and learn its id)
    before it evaluates it: bench/engine.py's PostgreSQL floor."""
    from tracerules.runtime.store import postgres

    db = postgres.connect(url, read_only=False)
    db.execute("CREATE TABLE n (topic TEXT, ofs BIGINT, received DOUBLE PRECISION, payload BYTEA)")
    pid = int(db.execute("SELECT pg_backend_pid()").fetchone()[0])

    def write(rows: Iterable[Params]) -> None:
        db.execute("BEGIN")
        for row in rows:
            db.execute("INSERT INTO n VALUES (?, ?, ?, ?)", row)
        db.execute("COMMIT")
        db.execute("DROP TABLE n")
        db.close()

    return pid, write


def create_role(server_url: str, name: str, password: str) -> None:
    """A login role with a password, owning a database of its name: a team's store."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")
        admin.execute(f'CREATE DATABASE "{name}" OWNER "{name}"')


def end_backend(store: Store, server_url: str) -> None:
    """Terminate the server session a store's statements run in, as a server restart or a
    network cut would end it."""
    import psycopg

    pid = backend_pid(store)
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def full_and_not_full_errors(folder: Path) -> tuple[sqlite3.Error, sqlite3.Error]:
    """Two real SQLite errors: a database capped at a few pages refusing a row (SQLITE_FULL,
    "database or disk is full"), and a missing table named `full`, whose message says full."""
    db = sqlite3.connect(folder / "capped.sqlite")
    db.execute("CREATE TABLE t (x BLOB)")
    db.execute("PRAGMA max_page_count = 3")
    errors: list[sqlite3.Error] = []
    attempts: tuple[tuple[str, Params], ...] = (
        ("INSERT INTO t VALUES (?)", (b"x" * 100_000,)),
        ("SELECT * FROM full", ()),
    )
    for statement, params in attempts:
        try:
            db.execute(statement, params)
        except sqlite3.Error as err:
            errors.append(err)
    db.close()
    full, other = errors
    return full, other


def run_at(location: str | Path, statements: Iterable[tuple[str, Params]]) -> None:
    """Writes on a plain sqlite3 or psycopg connection (no tracerules: an older store is not
    upgraded on open), committed together. `?` placeholders on both."""
    if _postgresql(location):
        import psycopg

        with psycopg.connect(str(location)) as pg:
            for sql, params in statements:
                pg.execute(translate(sql), params)
        return
    with contextlib.closing(sqlite3.connect(location, timeout=30)) as db, db:
        for sql, params in statements:
            db.execute(sql, params)


class CommitFailsOnce:
    """A real SQLite connection whose next COMMIT fails as SQLite's does on an I/O error:
    the transaction is rolled back and the error raised."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db, self.armed = db, True

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT" and self.armed:
            self.armed = False
            self.db.execute("ROLLBACK")
            raise sqlite3.OperationalError("disk I/O error")
        return self.db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)
