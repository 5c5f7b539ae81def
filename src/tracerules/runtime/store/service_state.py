"""What `tracerules run` records for `tracerules status` and the dashboard (other processes):
service state as JSON objects by key, consumer offsets, topic errors, heartbeat counts.

`runtime.service.health` decides what the rows mean; this module only reads and writes them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from tracerules.runtime.store.read import ReadModel, marks


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


class ServiceRows(ReadModel):
    """Service state, read and written; mixed into `Store`."""

    db: sqlite3.Connection

    if TYPE_CHECKING:  # Store's

        def transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def _writable(self) -> None: ...

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

    def put_service_state(self, key: str, value: dict[str, Any], at: float) -> None:
        self._writable()
        self.db.execute(
            "INSERT OR REPLACE INTO service_state (key, value, at) VALUES (?, ?, ?)",
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
            "ON CONFLICT(topic) DO UPDATE SET count=count+1, bytes=bytes+excluded.bytes, "
            "last_seen=max(coalesce(last_seen, 0), excluded.last_seen)",
            (topic, size, received),
        )

    def replace_offsets(self, group: str, rows: Sequence[Offsets], at: float) -> None:
        """The group's offsets and lag per partition, replacing those recorded before."""
        with self.transaction() as db:
            db.execute("DELETE FROM consumer_offsets WHERE group_id=?", (group,))
            db.executemany(
                "INSERT INTO consumer_offsets VALUES (?,?,?,?,?,?,?,?)",
                [
                    (group, r.topic, r.partition, r.position, r.committed, r.high, r.lag, at)
                    for r in rows
                ],
            )

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
