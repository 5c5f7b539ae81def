"""The durable store: one SQLite file in WAL mode, readable with the `sqlite3` tool.

It holds notices (deduplicated by topic+partition+offset and by payload hash), dead letters,
events, decisions with their factors, actions and the observations they started. The schema
is versioned; `MIGRATIONS[i]` takes a store from version i to i+1.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tracerules.runtime.sources.notices import DEFAULT_MAX_BYTES, STORED_PREFIX, Notice
from tracerules.runtime.store.evaluation import EvaluationRows

LOG = logging.getLogger("tracerules.store")

SCHEMA_V1: Final = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE notices (
    id          INTEGER PRIMARY KEY,
    topic       TEXT NOT NULL,
    partition   INTEGER NOT NULL,
    "offset"    INTEGER NOT NULL,          -- -1 for notices not read from Kafka
    created     REAL,                      -- broker timestamp, POSIX seconds
    received    REAL NOT NULL,             -- local arrival time, POSIX seconds
    source      TEXT NOT NULL,             -- kafka, file, archive, test
    name        TEXT,                      -- file name, for notices read from disk
    size        INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    payload     BLOB NOT NULL,
    status      TEXT NOT NULL,             -- new, evaluated, unsubscribed, dead, duplicate
    duplicate_of INTEGER REFERENCES notices(id)
);
CREATE UNIQUE INDEX notices_by_offset ON notices (topic, partition, "offset") WHERE "offset" >= 0;
-- One original per payload and topic; re-sends under another offset point at it.
CREATE UNIQUE INDEX notices_by_hash ON notices (topic, sha256) WHERE duplicate_of IS NULL;
CREATE INDEX notices_by_time ON notices (received);
CREATE INDEX notices_by_status ON notices (status, received);
CREATE INDEX notices_by_topic ON notices (topic, received);
CREATE TABLE dead_letters (
    notice_id   INTEGER PRIMARY KEY REFERENCES notices(id),
    reason      TEXT NOT NULL,
    at          REAL NOT NULL
);
CREATE TABLE topic_stats (
    topic       TEXT PRIMARY KEY,
    count       INTEGER NOT NULL DEFAULT 0,
    bytes       INTEGER NOT NULL DEFAULT 0,
    last_seen   REAL,
    last_error  TEXT,
    last_error_at REAL
);
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    trigger     TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    event_time  REAL,                      -- earliest parseable event time of its notices
    first_seen  REAL NOT NULL,
    last_seen   REAL NOT NULL,
    notices     INTEGER NOT NULL DEFAULT 0,
    UNIQUE (trigger, event_id)
);
CREATE TABLE event_notices (
    event       INTEGER NOT NULL REFERENCES events(id),
    notice_id   INTEGER NOT NULL REFERENCES notices(id),
    seq         INTEGER NOT NULL,          -- 1 for the event's first notice, in arrival order
    PRIMARY KEY (event, notice_id)
);
CREATE TABLE decisions (
    id          INTEGER PRIMARY KEY,
    event       INTEGER REFERENCES events(id),   -- NULL when the notice had no event id
    trigger     TEXT NOT NULL,
    event_id    TEXT,
    notice_id   INTEGER REFERENCES notices(id),
    seq         INTEGER NOT NULL,          -- which notice of the event this decision is for
    source      TEXT NOT NULL,             -- notice, manual, dry-run
    actor       TEXT,                      -- who ran a manual retrigger
    at          REAL NOT NULL,             -- the evaluation clock
    mode        TEXT NOT NULL,             -- live, pretend
    votes       TEXT NOT NULL,             -- conclusion before MAYBE is demoted or promoted
    conclusion  TEXT NOT NULL,             -- PASS, FAIL, ERROR, NOT_APPLICABLE
    error       TEXT,
    rule_file   TEXT NOT NULL,
    rule_revision TEXT NOT NULL,           -- content hash of the trigger's rule file
    rule_commit TEXT                       -- git commit of the rules folder, if any
);
CREATE INDEX decisions_by_event ON decisions (event, id);
CREATE INDEX decisions_by_trigger ON decisions (trigger, id);
CREATE TABLE factors (
    decision    INTEGER NOT NULL REFERENCES decisions(id),
    position    INTEGER NOT NULL,          -- 0 is expiry, then the conditions in order
    name        TEXT NOT NULL,
    vote        TEXT NOT NULL,             -- PASS, MAYBE, FAIL, UNKNOWN
    inherited   INTEGER NOT NULL,          -- 1 when kept from an earlier notice
    reason      TEXT,                      -- why it is UNKNOWN, or what it was inherited over
    detail      TEXT,                      -- the values the condition read
    PRIMARY KEY (decision, position)
);
CREATE TABLE actions (
    id          INTEGER PRIMARY KEY,
    decision    INTEGER NOT NULL REFERENCES decisions(id),
    trigger     TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    position    INTEGER NOT NULL,          -- index in the trigger's actions list
    type        TEXT NOT NULL,
    label       TEXT NOT NULL,
    status      TEXT NOT NULL,  -- pending, running, done, failed, pretend, dry-run, clash
    attempts    INTEGER NOT NULL DEFAULT 0,
    log         TEXT NOT NULL DEFAULT '',  -- secrets redacted
    files       TEXT NOT NULL DEFAULT '[]',
    request     TEXT NOT NULL DEFAULT '{}', -- template values for the run; never secrets
    notice_id   INTEGER REFERENCES notices(id),
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE INDEX actions_by_status ON actions (status, id);
CREATE TABLE observations (
    observatory TEXT NOT NULL,
    test        INTEGER NOT NULL,          -- test and live observations never clash
    action      INTEGER NOT NULL REFERENCES actions(id),
    trigger     TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    priority    INTEGER NOT NULL,
    ra          REAL,
    dec         REAL,
    started     REAL NOT NULL,
    until       REAL NOT NULL,
    PRIMARY KEY (observatory, test)
);
"""

# Version 2: what `tracerules run` records for `tracerules status` (a separate process), and
# which process runs an action, so a crashed one's actions are taken up again at once.
SCHEMA_V2: Final = """
CREATE TABLE service_state (
    key         TEXT PRIMARY KEY,          -- service, kafka, heartbeat, rules
    value       TEXT NOT NULL,             -- a JSON object
    at          REAL NOT NULL
);
CREATE TABLE consumer_offsets (
    group_id    TEXT NOT NULL,
    topic       TEXT NOT NULL,
    partition   INTEGER NOT NULL,
    position    INTEGER,                   -- the next offset the service will read
    committed   INTEGER,                   -- the group's committed offset
    high        INTEGER,                   -- the broker's high watermark
    lag         INTEGER,                   -- high minus committed (or position), never negative
    at          REAL NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
);
-- host/pid/start-time of the process running an action (a comment here: SQLite keeps the
-- column text in the table's schema, so a trailing comment would swallow its closing bracket)
ALTER TABLE actions ADD COLUMN owner TEXT
"""

SCHEMA_V3 = """
-- when a failed action is tried again (NULL: as soon as a worker is free)
ALTER TABLE actions ADD COLUMN retry_at REAL;
-- host/pid/start-time of the process an action started (a command, a plugin script)
ALTER TABLE actions ADD COLUMN child TEXT
"""

# Each entry upgrades the schema by one version; the list only ever grows.
MIGRATIONS: Final[tuple[str, ...]] = (SCHEMA_V1, SCHEMA_V2, SCHEMA_V3)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def stored_payload(payload: bytes) -> bytes:
    """What the store keeps of a payload: all of it, or the first STORED_PREFIX bytes of one
    over the parse limit (refused for evaluation anyway); its size and sha256 are kept whole."""
    return payload if len(payload) <= DEFAULT_MAX_BYTES else payload[:STORED_PREFIX]


def _without_offset(notice: Notice) -> Notice:
    where = f"{notice.topic}[{notice.partition}]@{notice.offset}"
    LOG.warning("offset reused", extra={"fields": {"at": where}})
    return dataclasses.replace(notice, offset=-1, name=f"{where} (offset reused)")


def _replayed(notice: Notice) -> bool:
    """A notice read from a file, an archive or a store, not from Kafka. Replaying the same
    bytes again is the same notice, so it is found rather than stored twice; a Kafka re-send
    under a new offset is kept as a duplicate row, because its arrival is news."""
    return notice.offset < 0 and notice.source != "kafka"


@dataclass(frozen=True)
class StoredNotice:
    id: int
    new: bool  # False when it was already stored (same offset, or same payload)
    status: str
    duplicate_of: int | None = None


class Store(EvaluationRows):
    """A connection to the store. One per thread; SQLite serialises writers across them."""

    def __init__(self, path: str | Path, *, bulk: bool = False) -> None:
        self.path = str(path)
        self.bulk = bulk
        self._stats: dict[str, tuple[int, int, float]] = {}
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self.db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._depth = 0
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across process crashes in WAL mode (only an OS crash can lose the
        # last commits); bulk replays (dry runs, benchmarks) do not need even that.
        self.db.execute(f"PRAGMA synchronous={'OFF' if bulk else 'NORMAL'}")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.migrate()

    # -- schema ------------------------------------------------------------------------------

    def version(self) -> int:
        exists = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        if not exists:
            return 0
        row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0]) if row else 0

    def migrate(self) -> None:
        if self.version() == SCHEMA_VERSION:
            return  # nothing to write: a reader works even on a full disk
        with self.transaction():
            current = self.version()
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"the store {self.path} has schema {current}, newer than "
                    f"this tracerules ({SCHEMA_VERSION}): upgrade tracerules"
                )
            for script in MIGRATIONS[current:]:
                for statement in script.split(";\n"):
                    if statement.strip():
                        self.db.execute(statement)
            self.db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; nested calls join the outer transaction."""
        with self._lock:
            if self._depth == 0:
                self.db.execute("BEGIN IMMEDIATE")
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
        """Group many notices into few transactions (replays); see `commit_batch`."""
        with self.transaction():
            yield
            self.flush_stats()

    def commit_batch(self) -> None:
        """Inside `batch`, make the work so far durable and carry on in a new transaction."""
        with self._lock:
            if self._depth == 1:
                self.flush_stats()
                self.db.execute("COMMIT")
                self.db.execute("BEGIN IMMEDIATE")

    def close(self) -> None:
        self.db.close()

    # -- notices ----------------------------------------------------------------------------

    def add_notice(self, notice: Notice, status: str = "new") -> StoredNotice:
        """Store a notice durably, or find it: same topic+partition+offset, or same payload.

        The common case is one INSERT: the unique indexes detect a redelivery (same offset)
        or a re-send (same payload), and only then is anything looked up. Other bytes at a
        stored offset mean the offset was reused (a recreated topic, another cluster): the
        new notice is kept without an offset, so that it is not taken for the old one. A
        replayed notice (a file, never on Kafka) already stored is found, not stored again.
        """
        return self._add(notice, status, _replayed(notice))

    def _add(self, notice: Notice, status: str, replayed: bool) -> StoredNotice:
        with self.transaction() as db:
            try:
                notice_id = self._insert(db, notice, status, None)
            except sqlite3.IntegrityError:
                found = self._find(db, notice)
                if isinstance(found, StoredNotice):
                    return found
                if isinstance(found, int) and replayed:
                    return self._stored(db, found)
                if found is None:
                    return self._add(_without_offset(notice), status, False)
                notice_id = self._insert(db, notice, "duplicate", found)
                status = "duplicate"
            self._count(notice)
            return StoredNotice(
                notice_id,
                True,
                status,
                None if status != "duplicate" else self._original(db, notice),
            )

    _INSERT = (
        'INSERT INTO notices (topic, partition, "offset", created, received, source, name, '
        "size, sha256, payload, status, duplicate_of) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
    )

    def _insert(
        self, db: sqlite3.Connection, notice: Notice, status: str, duplicate_of: int | None
    ) -> int:
        cur = db.execute(
            self._INSERT,
            (
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
            ),
        )
        return int(cur.lastrowid or 0)

    def _find(self, db: sqlite3.Connection, notice: Notice) -> StoredNotice | int | None:
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
    def _stored(db: sqlite3.Connection, notice_id: int) -> StoredNotice:
        row = db.execute("SELECT status FROM notices WHERE id=?", (notice_id,)).fetchone()
        return StoredNotice(notice_id, False, row["status"])

    @staticmethod
    def _original(db: sqlite3.Connection, notice: Notice) -> int:
        row = db.execute(
            "SELECT id FROM notices WHERE topic=? AND sha256=? AND duplicate_of IS NULL",
            (notice.topic, notice.digest),
        ).fetchone()
        return int(row[0])

    def _count(self, notice: Notice) -> None:
        """Per-topic counts; bulk stores add them up in memory until the batch commits."""
        count, size, last = self._stats.get(notice.topic, (0, 0, 0.0))
        self._stats[notice.topic] = (
            count + 1,
            size + len(notice.payload),
            max(last, notice.received),
        )
        if not self.bulk:
            self.flush_stats()

    def flush_stats(self) -> None:
        for topic, (count, size, last) in self._stats.items():
            self.db.execute(
                "INSERT INTO topic_stats (topic, count, bytes, last_seen) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(topic) DO UPDATE SET count=count+excluded.count, "
                "bytes=bytes+excluded.bytes, "
                "last_seen=max(coalesce(last_seen, 0), excluded.last_seen)",
                (topic, count, size, last),
            )
        self._stats.clear()

    def set_notice_status(self, notice_id: int, status: str) -> None:
        self.db.execute("UPDATE notices SET status=? WHERE id=?", (status, notice_id))

    def dead_letter(self, notice_id: int, topic: str, reason: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO dead_letters VALUES (?, ?, ?)",
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

    def last_offset(self, topic: str, partition: int) -> tuple[int, str] | None:
        """The highest Kafka offset stored for a partition, and that record's sha256."""
        row = self.db.execute(
            'SELECT "offset", sha256 FROM notices WHERE topic=? AND partition=? AND "offset">=0 '
            'ORDER BY "offset" DESC LIMIT 1',
            (topic, partition),
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def list_actions(
        self, *, status: str | None = None, trigger: str | None = None, limit: int = 200
    ) -> list[sqlite3.Row]:
        """Actions newest first, for the operator: where each stands and when it runs next."""
        where, params = _action_filter([], trigger, None, status)
        return self.query(
            "SELECT id, status, attempts, retry_at, trigger, event_id, type, label, updated_at "
            f"FROM actions WHERE {where} ORDER BY id DESC LIMIT ?",
            (*params, limit),
        )

    def retry_failed_actions(
        self, ids: list[int], trigger: str | None, event_id: str | None, note: str, now: float
    ) -> list[int]:
        """Failed actions (these ids, or all of a trigger/event) back to pending, `note` added
        to their log; their ids. The running service's workers pick them up."""
        where, params = _action_filter(ids, trigger, event_id, "failed")
        with self.transaction() as db:
            found = [int(r[0]) for r in db.execute(f"SELECT id FROM actions WHERE {where}", params)]
            for action_id in found:
                db.execute(
                    "UPDATE actions SET status='pending', retry_at=NULL, log=log || ?, "
                    "updated_at=? WHERE id=? AND status='failed'",
                    (note, now, action_id),
                )
        return found

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return list(self.db.execute(sql, params))

    def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        row = self.db.execute(sql, params).fetchone()
        return row[0] if row else None


def _action_filter(
    ids: list[int], trigger: str | None, event_id: str | None, status: str | None
) -> tuple[str, tuple[Any, ...]]:
    """A WHERE clause over actions (placeholders only) and its parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    if ids:
        clauses.append(f"id IN ({','.join('?' * len(ids))})")
        params += ids
    for column, value in (("trigger", trigger), ("event_id", event_id), ("status", status)):
        if value:
            clauses.append(f"{column}=?")
            params.append(value)
    return " AND ".join(clauses) or "1", tuple(params)
