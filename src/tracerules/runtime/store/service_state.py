"""What `tracerules run` records for `tracerules status` and the dashboard (other processes):
service state as JSON objects by key, consumer offsets, topic errors, heartbeat counts.

`runtime.service.health` decides what the rows mean; this module only reads and writes them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from tracerules.runtime.store.dialect import Connection
from tracerules.runtime.store.read import ReadModel, marks

# The later of the stored and the new last_seen of an upsert into topic_stats (SQLite's
# two-argument max() is spelled greatest() in PostgreSQL, so neither is used).
LATER_SEEN = (
    "CASE WHEN topic_stats.last_seen >= excluded.last_seen THEN topic_stats.last_seen "
    "ELSE excluded.last_seen END"
)


class OffsetRow(NamedTuple):
    topic: str
    partition: int
    position: int | None
    committed: int | None
    high: int | None
    lag: int | None
    at: float


class Offsets(Protocol):
    """A partition's offsets as the Kafka consumer reports them."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def position(self) -> int | None: ...
    @property
    def committed(self) -> int | None: ...
    @property
    def high(self) -> int | None: ...
    @property
    def lag(self) -> int | None: ...


class LatestDecision(NamedTuple):
    id: int
    at: float
    trigger: str
    event_id: str | None
    mode: str
    conclusion: str
    error: str | None
    notice_id: int | None
    topic: str | None


class DecisionAction(NamedTuple):
    type: str
    label: str
    status: str
    idempotency_key: str


class ServiceSession(NamedTuple):
    """A `tracerules run` connected to a PostgreSQL store."""

    host: str
    pid: int
    joined: bool  # holds the service lock (shared by the team's services; a relisten's alone)
    since: float  # when it connected, POSIX seconds


class ServiceRows(ReadModel):
    """Service state, read and written; mixed into `Store`."""

    db: Connection

    if TYPE_CHECKING:  # Store's

        def transaction(self) -> AbstractContextManager[Connection]: ...

        def _writable(self) -> None: ...

        @property
        def is_postgresql(self) -> bool: ...

    def service_state(self, key: str) -> dict[str, Any]:
        """The JSON object recorded under `key`; empty when none (or a store too old to have
        the table, opened read-only and so never migrated)."""
        if not self.has_table("service_state"):
            return {}
        raw = self._value("SELECT value FROM service_state WHERE key=?", (key,))
        try:
            value = json.loads(raw) if raw else {}
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def service_states(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Every JSON object recorded under a key starting with `prefix`."""
        if not self.has_table("service_state"):
            return {}
        rows = self.db.execute(
            "SELECT key, value FROM service_state WHERE key LIKE ?", (prefix + "%",)
        ).fetchall()
        found = {}
        for key, raw in rows:
            try:
                value = json.loads(raw)
            except ValueError:
                continue
            if isinstance(value, dict):
                found[str(key)] = value
        return found

    def put_service_state(self, key: str, value: dict[str, Any], at: float) -> None:
        self._writable()
        self.db.execute(
            "INSERT INTO service_state (key, value, at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value=excluded.value, at=excluded.at",
            (key, json.dumps(value, default=str), at),
        )

    def topic_error(self, topic: str, message: str, at: float) -> None:
        self._writable()
        self.db.execute(
            "INSERT INTO topic_stats (topic, last_error, last_error_at) VALUES (?, ?, ?) "
            "ON CONFLICT(topic) DO UPDATE SET last_error=excluded.last_error, "
            "last_error_at=excluded.last_error_at",
            (topic, message, at),
        )

    def count_heartbeat(self, topic: str, size: int, received: float) -> None:
        """Count a heartbeat in its topic's stats (heartbeats are not stored as notices)."""
        self._writable()
        self.db.execute(
            "INSERT INTO topic_stats (topic, count, bytes, last_seen) VALUES (?, 1, ?, ?) "
            "ON CONFLICT(topic) DO UPDATE SET count=topic_stats.count+1, "
            f"bytes=topic_stats.bytes+excluded.bytes, last_seen={LATER_SEEN}",
            (topic, size, received),
        )

    def replace_offsets(self, group: str, rows: Sequence[Offsets], at: float) -> None:
        """The group's offsets and lag per partition, replacing those recorded before (on
        PostgreSQL, those of the same partitions: the other services record theirs)."""
        with self.transaction() as db:
            if self.is_postgresql:  # each service of the team replaces its own partitions'
                db.executemany(
                    "DELETE FROM consumer_offsets WHERE group_id=? AND topic=? AND partition=?",
                    [(group, r.topic, r.partition) for r in rows],
                )
            else:
                db.execute("DELETE FROM consumer_offsets WHERE group_id=?", (group,))
            db.executemany(
                "INSERT INTO consumer_offsets VALUES (?,?,?,?,?,?,?,?)",
                [
                    (group, r.topic, r.partition, r.position, r.committed, r.high, r.lag, at)
                    for r in rows
                ],
            )

    def service_sessions(self, lock: int, name: str) -> list[ServiceSession]:
        """Every service connected to a PostgreSQL store, by its session's name (`name HOST
        PID`), those holding the advisory lock `lock` first. None on SQLite: one service per
        file, which `service_state` describes."""
        if self.dialect.name != "postgresql":
            return []
        rows = self.db.execute(
            "SELECT a.application_name, extract(epoch FROM a.backend_start), EXISTS (SELECT 1 "
            "FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.objid = ? "
            "AND l.granted AND l.database = (SELECT oid FROM pg_database "
            "WHERE datname = current_database())) AS active FROM pg_stat_activity a "
            "WHERE a.datname = current_database() AND a.application_name LIKE ? "
            "ORDER BY active DESC, a.backend_start",
            (lock, name + " %"),
        ).fetchall()
        found = []
        for app, since, active in rows:
            host, _, pid = str(app)[len(name) + 1 :].rpartition(" ")
            found.append(
                ServiceSession(host, int(pid) if pid.isdigit() else 0, active, float(since))
            )
        return found

    def consumer_offsets(self, group: str | None) -> list[OffsetRow]:
        if not self.has_table("consumer_offsets"):
            return []
        return self._rows(
            OffsetRow,
            f"SELECT {', '.join(OffsetRow._fields)} FROM consumer_offsets WHERE group_id=? "
            "ORDER BY topic, partition",
            (group,),
        )

    def latest_decisions(self, limit: int) -> list[LatestDecision]:
        """The newest decisions first, with the topic of their notice."""
        return self._rows(
            LatestDecision,
            "SELECT d.id, d.at, d.trigger, d.event_id, d.mode, d.conclusion, d.error, "
            "d.notice_id, n.topic FROM decisions d LEFT JOIN notices n ON n.id = d.notice_id "
            "ORDER BY d.id DESC LIMIT ?",
            (limit,),
        )

    def decision_actions(self, decision: int) -> list[DecisionAction]:
        return self._rows(
            DecisionAction,
            "SELECT type, label, status, idempotency_key FROM actions WHERE decision=? "
            "ORDER BY position",
            (decision,),
        )

    def last_notice_with_status(
        self, topic: str, after: float, statuses: Sequence[str]
    ) -> float | None:
        """When the topic's latest notice in one of `statuses` after `after` arrived."""
        value = self._value(
            "SELECT max(received) FROM notices WHERE topic=? AND received>=? "
            f"AND status IN ({marks(statuses)})",
            (topic, after, *statuses),
        )
        return None if value is None else float(value)
