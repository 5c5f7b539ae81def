"""The durable store: one SQLite file in WAL mode, readable with the `sqlite3` tool, or a
PostgreSQL database (`--store postgresql://...`) that a team's services share.

It holds notices (deduplicated by topic+partition+offset and by payload hash), dead letters,
events, decisions with their factors, actions and the observations they started. The schema
is versioned (`schema.py`; `MIGRATIONS[i]` takes a store from version i to i+1).

This package owns all of tracerules' SQL: `Store` is the connection, its transactions and
the notice writes; its mixins add the read model (`read.py`, `browse.py`) and the service's
state (`service_state.py`). Nobody else executes SQL: they call the store's named methods.
The SQL is written once for both databases; `dialect.py` says how, `postgres.py` runs it on
PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

from tracerules.runtime.sources.notices import DEFAULT_MAX_BYTES, STORED_PREFIX, Notice
from tracerules.runtime.store.actions import ActionRows
from tracerules.runtime.store.browse import BrowseRows
from tracerules.runtime.store.checkpoint import BULK_INTERVAL_S, BackgroundCheckpoints
from tracerules.runtime.store.dialect import (
    POSTGRESQL,
    SQLITE,
    Connection,
    Dialect,
    display_location,
    is_database_url,
)
from tracerules.runtime.store.evaluation import EvaluationRows
from tracerules.runtime.store.read import action_filter
from tracerules.runtime.store.schema import MIGRATIONS, SCHEMA_VERSION
from tracerules.runtime.store.service_state import LATER_SEEN, ServiceRows

LOG = logging.getLogger("tracerules.store")
MIGRATION_LOCK = 0x7472_6163  # PostgreSQL advisory lock held while migrating ("trac")
# A replay writes a month of notices in a few seconds (bench/engine.py). A new bulk store has
# 16 kB pages: a typical 4-5 kB notice fits in one page instead of spilling onto overflow
# pages. Most payloads pass through SQLite's page cache (2 MB by default) on their way to
# disk and push out the pages of the unique index on payload hashes, which every insert
# probes at a random place: 32 MB keeps them. A checkpoint every 40 MB of WAL instead of
# 4 MB copies each index page to the database once for several batches, not once for each.
# Together a third of the bulk insert's CPU time; the page size of an existing file stays.
BULK_PAGE_SIZE = "PRAGMA page_size=16384"  # before WAL mode, which fixes it
BULK_PRAGMAS = ("PRAGMA cache_size=-32768", "PRAGMA wal_autocheckpoint=2500")


def stored_payload(payload: bytes) -> bytes:
    """What the store keeps of a payload: all of it, or the first STORED_PREFIX bytes of one
    over the parse limit (refused for evaluation anyway); its size and sha256 are kept whole."""
    return payload if len(payload) <= DEFAULT_MAX_BYTES else payload[:STORED_PREFIX]


def _row(notice: Notice, status: str, duplicate_of: int | None) -> tuple[object, ...]:
    """A notice's values for `Store._INSERT`, in its order."""
    return (
        notice.topic,
        notice.partition,
        notice.offset,
        notice.created,
        notice.received,
        notice.source,
        notice.name,
        len(notice.payload),  # the size and hash of the whole payload, always
        notice.digest,
        stored_payload(notice.payload),
        status,
        duplicate_of,
    )


def _without_offset(notice: Notice) -> Notice:
    where = f"{notice.topic}[{notice.partition}]@{notice.offset}"
    LOG.warning("offset reused", extra={"fields": {"at": where}})
    return dataclasses.replace(notice, offset=-1, name=f"{where} (offset reused)")


def _replayed(notice: Notice) -> bool:
    """A notice read from a file, an archive or a store, not from Kafka. Replaying the same
    bytes again is the same notice, so it is found rather than stored twice; a Kafka re-send
    under a new offset is kept as a duplicate row, because its arrival is news."""
    return notice.offset < 0 and notice.source != "kafka"


class StoredNotice(NamedTuple):
    """What became of a notice the store was given. A named tuple, not a frozen dataclass:
    one is made for every notice of a replay, and a tuple is made several times faster."""

    id: int
    new: bool  # False when it was already stored (same offset, or same payload)
    status: str
    duplicate_of: int | None = None


class ReadOnlyStoreError(sqlite3.OperationalError):
    """A write asked of a store opened with `read_only=True` (status, events, the dashboard)."""


def _read_only_uri(path: Path) -> str:
    """`mode=ro`: SQLite itself refuses writes. In a folder this process cannot write, a WAL
    store whose `-shm` is gone cannot be opened even read-only, unless SQLite is told nothing
    can change it (`immutable`): true there, since no writer could create its `-wal` either."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    shm = path.with_name(path.name + "-shm")
    if not os.access(path.parent, os.W_OK) and not shm.exists():
        uri += "&immutable=1"
    return uri


class Store(EvaluationRows, ActionRows, BrowseRows, ServiceRows):
    """A connection to the store. One per thread; the database serialises writers across them.

    `path` is a SQLite file, or a `postgresql://` URL for a team's shared store.
    `read_only=True` opens the file with `mode=ro` (PostgreSQL: a read-only session) and
    never migrates or writes: what `status`, `events`, reports and the dashboard use, so that
    they work beside a running service and on a file they may not write. A write then raises
    `ReadOnlyStoreError`.
    """

    db: Connection

    def __init__(self, path: str | Path, *, bulk: bool = False, read_only: bool = False) -> None:
        self.path = str(path)
        self.bulk = bulk
        self.read_only = read_only
        # Per topic: [count, bytes, last seen], added up in place (see `_count`).
        self._stats: dict[str, list[float]] = {}
        self._lock = threading.RLock()
        self._depth = 0
        self.dialect: Dialect = SQLITE
        self._set_dialect(SQLITE)
        if is_database_url(path):
            self._open_postgresql(str(path))
            return
        if read_only:
            self.db = self._open_read_only(Path(self.path))
            return
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        if bulk:
            db.execute(BULK_PAGE_SIZE)
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across process crashes in WAL mode (only an OS crash can lose the
        # last commits); bulk replays (dry runs, benchmarks) do not need even that.
        db.execute(f"PRAGMA synchronous={'OFF' if bulk else 'NORMAL'}")
        for pragma in BULK_PRAGMAS if bulk else ():
            db.execute(pragma)
        db.execute("PRAGMA foreign_keys=ON")
        self.db = db
        self.migrate()

    def _open_postgresql(self, url: str) -> None:
        try:  # psycopg only for a PostgreSQL store: an optional extra
            from tracerules.runtime.store import postgres
        except ImportError as err:
            raise RuntimeError(
                f"the store {display_location(url)} is PostgreSQL, which needs psycopg: "
                "pip install 'tracerules[postgresql]'"
            ) from err

        self._set_dialect(POSTGRESQL)
        self.db = postgres.connect(url, read_only=self.read_only)
        if self.read_only:
            return
        if self.bulk:  # a replay's commits need not wait for the disk, as on SQLite
            self.db.execute("SET synchronous_commit = off")
        self.migrate()

    def _set_dialect(self, dialect: Dialect) -> None:
        """The dialect, and what the notice INSERT (run for every notice) takes from it."""
        self.dialect = dialect
        self._insert_sql = self._INSERT + dialect.returning_id
        self._new_id = dialect.new_id

    @property
    def is_postgresql(self) -> bool:
        return self.dialect is POSTGRESQL

    @property
    def location(self) -> str:
        """Where the store is, fit for a log line or an error (no password)."""
        return display_location(self.path)

    @staticmethod
    def _open_read_only(path: Path) -> sqlite3.Connection:
        if not path.is_file():
            raise FileNotFoundError(f"no store at {path}")
        db = sqlite3.connect(
            _read_only_uri(path),
            uri=True,
            timeout=10.0,
            isolation_level=None,
            check_same_thread=False,
        )
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA query_only=ON")  # and refused here too, should mode=ro be lost
        try:  # SQLite reads the header lazily: a file that is no database fails here, at once
            db.execute("SELECT 1 FROM sqlite_master LIMIT 1")
        except sqlite3.Error:
            db.close()
            raise
        return db

    def _writable(self) -> None:
        if self.read_only:
            raise ReadOnlyStoreError(
                f"the store {self.path} is open read-only: this command only reads it"
            )

    # -- schema ------------------------------------------------------------------------------

    def version(self) -> int:
        exists = self.db.execute(self.dialect.has_table, ("meta",)).fetchone()
        if not exists:
            return 0
        row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0]) if row else 0

    def migrate(self) -> None:
        if self.version() == SCHEMA_VERSION:
            return  # nothing to write: a reader works even on a full disk
        self._writable()
        with self.transaction():
            if self.is_postgresql:  # two services starting at once: one migrates, one waits
                self.db.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            current = self.version()
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"the store {self.path} has schema {current}, newer than "
                    f"this tracerules ({SCHEMA_VERSION}): upgrade tracerules"
                )
            for migration in MIGRATIONS[current:]:
                if callable(migration):
                    migration(self.db)
                    continue
                for statement in migration.split(";\n"):
                    if statement.strip():
                        self.db.execute(self._ddl(statement))
            self.db.execute(
                "INSERT INTO meta VALUES ('schema_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                (str(SCHEMA_VERSION),),
            )

    def _ddl(self, statement: str) -> str:
        if not self.is_postgresql:
            return statement
        from tracerules.runtime.store.postgres import ddl

        return ddl(statement)

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """BEGIN IMMEDIATE ... COMMIT; nested calls join the outer transaction."""
        self._writable()
        with self._lock:
            if self._depth == 0:
                self.db.execute(self.dialect.begin)
            self._depth += 1
            try:
                yield self.db
            except BaseException:
                self._depth -= 1
                if self._depth == 0:
                    self.db.execute("ROLLBACK")
                raise
            self._depth -= 1
            if self._depth == 0:
                self.db.execute("COMMIT")

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group many notices into few transactions (replays); see `commit_batch`. A bulk
        store copies its log back on a side thread meanwhile (checkpoint.py)."""
        checkpoints = BackgroundCheckpoints(self, BULK_INTERVAL_S) if self.bulk else None
        if checkpoints is not None:
            checkpoints.start()
        try:
            with self.transaction():
                yield
                self.flush_stats()
        finally:
            if checkpoints is not None:
                checkpoints.stop()

    def commit_batch(self) -> None:
        """Inside `batch`, make the work so far durable and carry on in a new transaction."""
        with self._lock:
            if self._depth == 1:
                self.flush_stats()
                self.db.execute("COMMIT")
                self.db.execute(self.dialect.begin)

    def close(self) -> None:
        self.db.close()

    def resume_ids(self, table: str) -> None:
        """After rows were inserted with their ids (an import), new rows take the next ones.
        SQLite does so by itself; a PostgreSQL identity column must be told."""
        if self.is_postgresql:
            self.db.execute(
                f"SELECT setval(pg_get_serial_sequence(?, 'id'), (SELECT max(id) FROM {table}))",
                (table,),
            )

    # -- notices ----------------------------------------------------------------------------

    def add_notice(self, notice: Notice, status: str = "new") -> StoredNotice:
        """Store a notice durably, or find it: same topic+partition+offset, or same payload.

        The common case is one INSERT: the unique indexes detect a redelivery (same offset)
        or a re-send (same payload), and only then is anything looked up. Other bytes at a
        stored offset mean the offset was reused (a recreated topic, another cluster): the
        new notice is kept without an offset, so that it is not taken for the old one. A
        replayed notice (a file, never on Kafka) already stored is found, not stored again.
        """
        with self._lock:
            if self._depth:  # inside a batch or the caller's transaction: join it, cheaply
                return self._add_in(self.db, notice, status)
        with self.transaction() as db:
            return self._add_in(db, notice, status)

    def add_notices(self, notices: Sequence[tuple[Notice, str]]) -> list[StoredNotice]:
        """`add_notice` for each (notice, status) in turn, with the same ids and outcomes, in
        one statement when none of them is stored yet (a replay's run of notices on topics no
        trigger reads: most of a month).

        SQLite gives each new row the id after the largest, so the run's rows have the last
        len(notices) ids and are known without asking for each. Should a unique index hold
        any of them already, the rows it added (the largest ids) are deleted again and the
        notices are added one at a time. (A SAVEPOINT would undo it too, but makes SQLite
        copy every page the statement changes into a journal first.)"""
        if self.is_postgresql or len(notices) < 2:  # PostgreSQL: each id from RETURNING
            return [self.add_notice(notice, status) for notice, status in notices]
        with self.transaction() as db:
            rows = [_row(notice, status, None) for notice, status in notices]
            added = db.executemany(self._INSERT, rows).rowcount
            if added == len(notices):
                first = self._last_id(db) - added + 1
                for notice, _ in notices:
                    self._count(notice)
                return [
                    StoredNotice(first + i, True, status) for i, (_, status) in enumerate(notices)
                ]
            if added:
                db.execute(
                    "DELETE FROM notices WHERE id IN "
                    "(SELECT id FROM notices ORDER BY id DESC LIMIT ?)",
                    (added,),
                )
            return [self._add_in(db, notice, status) for notice, status in notices]

    @staticmethod
    def _last_id(db: Connection) -> int:
        return int(db.execute("SELECT last_insert_rowid()").fetchone()[0])

    def _add_in(
        self, db: Connection, notice: Notice, status: str, replayed: bool | None = None
    ) -> StoredNotice:
        """`add_notice` inside a transaction. Most notices of a month are on topics no trigger
        reads, so this is the engine's hottest path: one INSERT, its counts, nothing else."""
        notice_id = self._insert(db, notice, status, None)
        if notice_id is None:  # a unique index holds it already (no error: PostgreSQL
            # would abort the whole transaction)
            known = _replayed(notice) if replayed is None else replayed
            return self._add_known(db, notice, status, known)
        self._count(notice)
        return StoredNotice(notice_id, True, status)

    def _add_known(
        self, db: Connection, notice: Notice, status: str, replayed: bool
    ) -> StoredNotice:
        """A notice a unique index already holds: the same one again, a re-send under a new
        offset (kept as a duplicate row: its arrival is news), or a reused offset."""
        found = self._find(db, notice)
        if isinstance(found, StoredNotice):
            return found
        if isinstance(found, int) and replayed:
            return self._stored(db, found)
        if found is None:
            return self._add_in(db, _without_offset(notice), status, replayed=False)
        notice_id = self._insert(db, notice, "duplicate", found)
        assert notice_id is not None  # a duplicate is in neither unique index
        self._count(notice)
        return StoredNotice(notice_id, True, "duplicate", found)

    _INSERT = (
        'INSERT INTO notices (topic, partition, "offset", created, received, source, name, '
        "size, sha256, payload, status, duplicate_of) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
        "ON CONFLICT DO NOTHING"
    )

    def _insert(
        self, db: Connection, notice: Notice, status: str, duplicate_of: int | None
    ) -> int | None:
        """The new row's id; None if a unique index already holds this notice."""
        return self._new_id(db.execute(self._insert_sql, _row(notice, status, duplicate_of)))

    def _find(self, db: Connection, notice: Notice) -> StoredNotice | int | None:
        """The stored copy at the same offset; None if other bytes hold that offset; else the
        id of the same payload's original."""
        if notice.offset >= 0:
            row = db.execute(
                "SELECT id, status, duplicate_of, sha256 FROM notices WHERE topic=? AND "
                'partition=? AND "offset"=? AND "offset" >= 0',  # lets SQLite use the index
                (notice.topic, notice.partition, notice.offset),
            ).fetchone()
            if row is not None and row["sha256"] != notice.digest:
                return None
            if row is not None:
                return StoredNotice(row["id"], False, row["status"], row["duplicate_of"])
        return self._original(db, notice)

    @staticmethod
    def _stored(db: Connection, notice_id: int) -> StoredNotice:
        row = db.execute("SELECT status FROM notices WHERE id=?", (notice_id,)).fetchone()
        return StoredNotice(notice_id, False, row["status"])

    @staticmethod
    def _original(db: Connection, notice: Notice) -> int:
        row = db.execute(
            "SELECT id FROM notices WHERE topic=? AND sha256=? AND duplicate_of IS NULL",
            (notice.topic, notice.digest),
        ).fetchone()
        return int(row[0])

    def _count(self, notice: Notice) -> None:
        """Per-topic counts; bulk stores add them up in memory until the batch commits."""
        stats = self._stats.get(notice.topic)
        if stats is None:
            self._stats[notice.topic] = [1, len(notice.payload), notice.received]
        else:
            stats[0] += 1
            stats[1] += len(notice.payload)
            stats[2] = max(stats[2], notice.received)
        if not self.bulk:
            self.flush_stats()

    def flush_stats(self) -> None:
        for topic, (count, size, last) in self._stats.items():
            self.db.execute(
                "INSERT INTO topic_stats (topic, count, bytes, last_seen) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(topic) DO UPDATE SET count=topic_stats.count+excluded.count, "
                "bytes=topic_stats.bytes+excluded.bytes, "
                f"last_seen={LATER_SEEN}",
                (topic, count, size, last),
            )
        self._stats.clear()

    def set_notice_status(self, notice_id: int, status: str) -> None:
        self._writable()
        self.db.execute("UPDATE notices SET status=? WHERE id=?", (status, notice_id))

    def dead_letter(self, notice_id: int, topic: str, reason: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO dead_letters VALUES (?, ?, ?) ON CONFLICT (notice_id) DO UPDATE "
                "SET reason=excluded.reason, at=excluded.at",
                (notice_id, reason, time.time()),
            )
            db.execute("UPDATE notices SET status='dead' WHERE id=?", (notice_id,))
            # Dated by the notice's arrival, so that a good notice after it, in a replay too,
            # shows the topic has recovered.
            db.execute(
                "UPDATE topic_stats SET last_error=?, last_error_at=(SELECT received FROM "
                "notices WHERE id=?) WHERE topic=?",
                (reason, notice_id, topic),
            )

    def notice(self, notice_id: int) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(
            "SELECT * FROM notices WHERE id=?", (notice_id,)
        ).fetchone()
        return row

    def read_notice(self, notice_id: int, *, source: str | None = None) -> Notice | None:
        """A stored notice as it arrived (its envelope and payload); `source` replaces where
        it came from (`store`, for a replay of a store)."""
        row = self.notice(notice_id)
        if row is None:
            return None
        return Notice(
            row["topic"],
            bytes(row["payload"]),
            row["partition"],
            row["offset"],
            row["created"],
            row["received"],
            source or row["source"],
            row["name"],
        )

    def last_offset(self, topic: str, partition: int) -> tuple[int, str] | None:
        """The highest Kafka offset stored for a partition, and that record's sha256."""
        row = self.db.execute(
            'SELECT "offset", sha256 FROM notices WHERE topic=? AND partition=? AND "offset">=0 '
            'ORDER BY "offset" DESC LIMIT 1',
            (topic, partition),
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def retry_failed_actions(
        self, ids: list[int], trigger: str | None, event_id: str | None, note: str, now: float
    ) -> list[int]:
        """Failed actions (these ids, or all of a trigger/event) back to pending, `note` added
        to their log; their ids. The running service's workers pick them up."""
        where, params = action_filter(ids, trigger, event_id, "failed")
        with self.transaction() as db:
            found = [int(r[0]) for r in db.execute(f"SELECT id FROM actions WHERE {where}", params)]
            for action_id in found:
                db.execute(
                    "UPDATE actions SET status='pending', retry_at=NULL, log=log || ?, "
                    "updated_at=? WHERE id=? AND status='failed'",
                    (note, now, action_id),
                )
        return found
