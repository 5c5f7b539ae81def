"""The read model's pages: notices, topics, the action log, per-trigger totals, problems.

What the operator commands, the report and the dashboard list, as typed rows; `report.browse`
and `report.model` only lay them out.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from tracerules.runtime.store.read import ReadModel, marks


@dataclass(frozen=True)
class NoticeQuery:
    """Which notices: `topics` None for all; the rest as in `report.browse.NoticeFilter`."""

    topics: tuple[str, ...] | None = None
    since: float | None = None  # received, POSIX seconds
    until: float | None = None
    status: str | None = None
    event_id: str | None = None
    limit: int = 50
    offset: int = 0

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = ["1=1"]
        params: list[Any] = []
        if self.topics is not None:
            clauses.append(f"n.topic IN ({marks(self.topics)})")
            params += self.topics
        for clause, value in (
            ("n.received>=?", self.since),
            ("n.received<=?", self.until),
            ("n.status=?", self.status),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if self.event_id:
            clauses.append(
                "n.id IN (SELECT en.notice_id FROM event_notices en JOIN events e "
                "ON e.id = en.event WHERE e.event_id=?)"
            )
            params.append(self.event_id)
        return " AND ".join(clauses), params


class NoticeRow(NamedTuple):
    id: int
    topic: str
    partition: int
    offset: int
    created: float | None
    received: float
    source: str
    name: str | None
    size: int
    dead_reason: str | None


class NoticeDecisionRow(NamedTuple):
    id: int
    trigger: str
    event_id: str | None
    seq: int
    source: str
    conclusion: str
    votes: str
    error: str | None
    at: float


@dataclass(frozen=True)
class TopicStatsRow:  # not a NamedTuple: `count` would hide tuple.count
    topic: str
    count: int
    bytes: int
    last_seen: float | None
    last_error: str | None
    last_error_at: float | None


class ActionLogRow(NamedTuple):
    id: int
    trigger: str
    event_id: str
    type: str
    label: str
    status: str
    attempts: int
    log: str
    files: str  # a JSON list
    idempotency_key: str
    created_at: float
    updated_at: float
    source: str  # of the decision: notice, manual
    actor: str | None
    conclusion: str


class ObservationRow(NamedTuple):
    observatory: str
    test: int
    action: int
    trigger: str
    event_id: str
    priority: int
    ra: float | None
    dec: float | None
    started: float
    until: float
    status: str | None


class RevisionRow(NamedTuple):
    rule_revision: str
    rule_commit: str | None
    decisions: int
    first: float
    last: float


class ErrorDecisionRow(NamedTuple):
    trigger: str
    notice_id: int | None
    error: str | None
    topic: str | None
    name: str | None


class DeadLetterRow(NamedTuple):
    notice_id: int
    reason: str
    topic: str
    name: str | None


class TriggerTotals(NamedTuple):
    events: dict[str, int]
    events_passed: dict[str, int]
    decisions: dict[tuple[str, str], int]  # (trigger, conclusion)
    actions: dict[str, int]


class BrowseRows(ReadModel):
    """Lists for people; mixed into `Store` with the rest of the read model."""

    db: sqlite3.Connection

    def topic_names(self) -> list[str]:
        return [str(r[0]) for r in self.db.execute("SELECT topic FROM topic_stats ORDER BY topic")]

    def count_notices(self, q: NoticeQuery) -> int:
        where, params = q.where()
        return int(self._value(f"SELECT count(*) FROM notices n WHERE {where}", params) or 0)

    def notice_rows(self, q: NoticeQuery) -> list[NoticeRow]:
        """Notices matching the query, newest first, with their dead letter's reason."""
        where, params = q.where()
        return self._rows(
            NoticeRow,
            'SELECT n.id, n.topic, n.partition, n."offset", n.created, n.received, n.source, '
            "n.name, n.size, d.reason FROM notices n "
            "LEFT JOIN dead_letters d ON d.notice_id = n.id "
            f"WHERE {where} ORDER BY n.received DESC, n.id DESC LIMIT ? OFFSET ?",
            (*params, int(q.limit), int(q.offset)),
        )

    def notice_events(self, notices: Sequence[int]) -> list[tuple[int, str, str]]:
        """(notice id, trigger, event id) of the events these notices belong to."""
        rows = self.db.execute(
            "SELECT en.notice_id, e.trigger, e.event_id FROM event_notices en JOIN events e "
            f"ON e.id = en.event WHERE en.notice_id IN ({marks(notices)}) ORDER BY e.trigger",
            tuple(notices),
        )
        return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    def dead_letter_reason(self, notice_id: int) -> str | None:
        value = self._value("SELECT reason FROM dead_letters WHERE notice_id=?", (notice_id,))
        return None if value is None else str(value)

    def notice_decisions(self, notice_id: int) -> list[NoticeDecisionRow]:
        return self._rows(
            NoticeDecisionRow,
            f"SELECT {', '.join(NoticeDecisionRow._fields)} FROM decisions WHERE notice_id=? "
            "ORDER BY id",
            (notice_id,),
        )

    def topic_stats(self) -> list[TopicStatsRow]:
        return self._rows(
            TopicStatsRow,
            "SELECT topic, count, bytes, last_seen, last_error, last_error_at FROM topic_stats "
            "ORDER BY topic",
        )

    def dead_letters_by_topic(self) -> dict[str, int]:
        return self._grouped(
            "SELECT n.topic, count(*) FROM dead_letters d JOIN notices n ON n.id = d.notice_id "
            "GROUP BY n.topic"
        )

    def count_actions(self) -> int:
        return int(self._value("SELECT count(*) FROM actions") or 0)

    def action_log(self, limit: int = 50, offset: int = 0) -> list[ActionLogRow]:
        """Actions newest first, with the decision that started them (logs already redacted)."""
        return self._rows(
            ActionLogRow,
            "SELECT a.id, a.trigger, a.event_id, a.type, a.label, a.status, a.attempts, a.log, "
            "a.files, a.idempotency_key, a.created_at, a.updated_at, d.source, d.actor, "
            "d.conclusion FROM actions a JOIN decisions d ON d.id = a.decision "
            "ORDER BY a.id DESC LIMIT ? OFFSET ?",
            (int(limit), int(offset)),
        )

    def observations(self) -> list[ObservationRow]:
        """Observations in progress (or last started) per observatory, live and test."""
        return self._rows(
            ObservationRow,
            "SELECT o.observatory, o.test, o.action, o.trigger, o.event_id, o.priority, o.ra, "
            "o.dec, o.started, o.until, a.status FROM observations o "
            "LEFT JOIN actions a ON a.id = o.action ORDER BY o.observatory, o.test",
        )

    def trigger_totals(self) -> TriggerTotals:
        """Per trigger: events, events that passed, decisions by conclusion, actions."""
        decisions = {
            (str(r[0]), str(r[1])): int(r[2])
            for r in self.db.execute(
                "SELECT trigger, conclusion, count(*) FROM decisions GROUP BY trigger, conclusion"
            )
        }
        return TriggerTotals(
            self._grouped("SELECT trigger, count(*) FROM events GROUP BY trigger"),
            self._grouped(
                "SELECT trigger, count(DISTINCT event) FROM decisions "
                "WHERE conclusion='PASS' AND event IS NOT NULL GROUP BY trigger"
            ),
            decisions,
            self._grouped("SELECT trigger, count(*) FROM actions GROUP BY trigger"),
        )

    def last_revision(self, trigger: str) -> tuple[str, str] | None:
        """The rule file and revision of a trigger's latest decision."""
        row = self.db.execute(
            "SELECT rule_file, rule_revision FROM decisions WHERE trigger=? "
            "ORDER BY id DESC LIMIT 1",
            (trigger,),
        ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def rule_revisions(self, trigger: str) -> list[RevisionRow]:
        """The revisions of a trigger's rules that made decisions, newest first."""
        return self._rows(
            RevisionRow,
            "SELECT rule_revision, rule_commit, count(*), min(at), max(at) FROM decisions "
            "WHERE trigger=? GROUP BY rule_revision, rule_commit ORDER BY max(id) DESC",
            (trigger,),
        )

    def notice_span(self) -> tuple[float | None, float | None]:
        """When the first and the last stored notice arrived."""
        row = self.db.execute("SELECT min(received), max(received) FROM notices").fetchone()
        return (row[0], row[1])

    def error_decisions(self, limit: int) -> list[ErrorDecisionRow]:
        return self._rows(
            ErrorDecisionRow,
            "SELECT d.trigger, d.notice_id, d.error, n.topic, n.name FROM decisions d "
            "LEFT JOIN notices n ON n.id = d.notice_id WHERE d.conclusion='ERROR' "
            "ORDER BY d.id LIMIT ?",
            (int(limit),),
        )

    def dead_letter_rows(self, limit: int) -> list[DeadLetterRow]:
        return self._rows(
            DeadLetterRow,
            "SELECT dl.notice_id, dl.reason, n.topic, n.name FROM dead_letters dl "
            "JOIN notices n ON n.id = dl.notice_id ORDER BY dl.notice_id LIMIT ?",
            (int(limit),),
        )
