"""The store's schema, versioned: `MIGRATIONS[i]` takes a store from version i to i+1.

Only `runtime.store` reads or writes these tables; everything else asks the store's methods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import groupby
from operator import itemgetter
from typing import Any, Final

from tracerules.runtime.store.actions import (
    SCHEMA_ACTIONS_FINISHED_RUNS,
    SCHEMA_ACTIONS_FROZEN,
    SCHEMA_ACTIONS_SENDING,
)
from tracerules.runtime.store.dialect import Connection
from tracerules.runtime.store.evaluation import factors_text

# A migration is SQL statements (separated by ";\n", written for SQLite: `postgres.ddl`
# gives PostgreSQL its column types), or a function of the connection for what SQL alone
# cannot say the same way in both databases.
Migration = str | Callable[[Connection], None]

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

# Version 7: indexes on the columns that point at a notice. Deleting a notice (`add_notices`
# undoing the rows of a run that met a stored notice) makes SQLite look up the rows that
# reference it; without these it read every notice's payload to find `duplicate_of` (a
# run of 1000 into a store of 20,000 notices took 39 s, now 0.06 s). The dashboard's notice
# pages look decisions and events up by notice too. Only duplicates enter the first index.
SCHEMA_NOTICE_REFERENCES: Final = """
CREATE INDEX notices_duplicates ON notices (duplicate_of) WHERE duplicate_of IS NOT NULL;
CREATE INDEX decisions_by_notice ON decisions (notice_id);
CREATE INDEX event_notices_by_notice ON event_notices (notice_id);
CREATE INDEX actions_by_notice ON actions (notice_id)
"""


def factors_into_decisions(db: Connection) -> None:
    """Version 8: a decision's factors become one JSON column of its row (evaluation.py),
    written as the engine writes them; the factors table, a row per factor, goes."""
    db.execute("ALTER TABLE decisions ADD COLUMN factors TEXT")
    rows = db.execute(
        "SELECT decision, name, vote, inherited, reason, detail FROM factors "
        "ORDER BY decision, position"
    )
    db.executemany(SET_FACTORS, factor_columns(rows))
    db.execute("DROP TABLE factors")


SET_FACTORS: Final = "UPDATE decisions SET factors=? WHERE id=?"


def factor_columns(rows: Iterable[Any]) -> Iterator[tuple[str | None, int]]:
    """(factors column, decision id) from factor rows of schema 7 and before, (decision,
    name, vote, inherited, reason, detail) ordered by decision and position. Values are
    moved as they are: a damaged one never stops the upgrade, it reads as damaged after."""
    for decision, factors in groupby(rows, key=itemgetter(0)):
        yield factors_text([(f[1], f[2], bool(f[3]), f[4], f[5]) for f in factors]), decision


# Each entry upgrades the schema by one version; the list only ever grows.
MIGRATIONS: Final[tuple[Migration, ...]] = (
    SCHEMA_V1,
    SCHEMA_V2,
    SCHEMA_V3,
    SCHEMA_ACTIONS_FROZEN,
    SCHEMA_ACTIONS_SENDING,
    SCHEMA_ACTIONS_FINISHED_RUNS,
    SCHEMA_NOTICE_REFERENCES,
    factors_into_decisions,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)
