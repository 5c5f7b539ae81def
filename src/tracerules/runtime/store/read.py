"""The read model: every view of the store that people read, as typed rows.

`tracerules events`, `notices`, `topics`, `actions list`, `status`, the HTML report and the
dashboard all read here (through `history` for whole events, `report.browse` and
`report.model` for layout). Nothing outside `runtime.store` writes SQL; these methods are
the only way in, and they only read, so they work on a store opened with `read_only=True`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, TypeVar

from tracerules.runtime.store.dialect import Connection, Dialect

T = TypeVar("T")

NOTICE_STATUSES: Final = ("new", "evaluated", "unsubscribed", "dead", "duplicate")


def marks(values: Sequence[Any]) -> str:
    """`?,?,?` for an IN list (NULL for an empty one: it then matches nothing)."""
    return ",".join("?" * len(values)) or "NULL"


class EventRow(NamedTuple):
    id: int
    trigger: str
    event_id: str
    event_time: float | None
    first_seen: float
    last_seen: float
    notices: int


class EventNoticeRow(NamedTuple):
    event: int
    id: int
    topic: str
    received: float
    created: float | None
    name: str | None
    partition: int
    offset: int


class DecisionRow(NamedTuple):
    id: int
    event: int | None
    trigger: str
    event_id: str | None
    notice_id: int | None
    seq: int
    source: str
    actor: str | None
    at: float
    mode: str
    votes: str
    conclusion: str
    error: str | None
    rule_file: str
    rule_revision: str
    rule_commit: str | None
    factors: str | None  # JSON: evaluation.factors_of reads it


DECISION_COLUMNS: Final = ", ".join(DecisionRow._fields)


class ActionRow(NamedTuple):
    id: int
    decision: int
    position: int
    type: str
    label: str
    status: str
    idempotency_key: str
    log: str
    files: str  # a JSON list


class EventSummary(NamedTuple):
    id: int
    trigger: str
    event_id: str
    event_time: float | None
    first_seen: float
    last_seen: float
    notices: int
    decisions: int
    passes: int
    latest: str | None
    actions: int


class ActionListRow(NamedTuple):
    id: int
    status: str
    attempts: int
    retry_at: float | None
    trigger: str
    event_id: str
    type: str
    label: str
    updated_at: float


class Totals(NamedTuple):
    notices: dict[str, int]
    decisions: dict[str, int]
    actions: dict[str, int]
    events: int
    dead_letters: int


class TieRow(NamedTuple):
    id: int
    received: float
    sha256: str
    payload: bytes


@dataclass(frozen=True)
class EventQuery:
    trigger: str | None = None
    event_id: str | None = None
    since: float | None = None  # event time (or first seen), POSIX seconds
    until: float | None = None
    limit: int | None = None
    offset: int = 0


class ReadModel:
    """Reads for people and reports; mixed into `Store`, which owns the connection."""

    db: Connection
    dialect: Dialect

    def _rows(self, make: Callable[..., T], sql: str, params: Sequence[Any] = ()) -> list[T]:
        return [make(*r) for r in self.db.execute(sql, tuple(params))]

    def _value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.db.execute(sql, tuple(params)).fetchone()
        return row[0] if row else None

    def has_table(self, name: str) -> bool:
        """Whether the store has this table yet (a read-only store is never migrated)."""
        return self.db.execute(self.dialect.has_table, (name,)).fetchone() is not None

    def _grouped(self, sql: str) -> dict[str, int]:
        return {str(r[0]): int(r[1]) for r in self.db.execute(sql)}

    # -- events ------------------------------------------------------------------------------

    def count_events(self, trigger: str | None = None) -> int:
        if trigger is None:
            return int(self._value("SELECT count(*) FROM events") or 0)
        return int(self._value("SELECT count(*) FROM events WHERE trigger=?", (trigger,)) or 0)

    def event_triggers(self) -> list[str]:
        """The triggers that have events in the store."""
        return [str(r[0]) for r in self.db.execute("SELECT DISTINCT trigger FROM events")]

    def event_rows(self, q: EventQuery) -> list[EventRow]:
        """Events oldest first (by event time, else first seen)."""
        where, params = ["1=1"], []
        for clause, value in (
            ("trigger=?", q.trigger),
            ("event_id=?", q.event_id),
            ("coalesce(event_time, first_seen)>=?", q.since),
            ("coalesce(event_time, first_seen)<=?", q.until),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = (
            f"SELECT {', '.join(EventRow._fields)} FROM events WHERE {' AND '.join(where)} "
            "ORDER BY coalesce(event_time, first_seen), id"
        )
        if q.limit is not None:
            sql += f" LIMIT {int(q.limit)} OFFSET {int(q.offset)}"
        return self._rows(EventRow, sql, params)

    def notices_of_events(self, events: Sequence[int]) -> list[EventNoticeRow]:
        """The notices of these events (row ids), each event's in arrival order."""
        return self._rows(
            EventNoticeRow,
            "SELECT en.event, n.id, n.topic, n.received, n.created, n.name, n.partition, "
            f'n."offset" FROM event_notices en JOIN notices n ON n.id = en.notice_id '
            f"WHERE en.event IN ({marks(events)}) ORDER BY en.event, en.seq",
            events,
        )

    def event_summaries(
        self, trigger: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[EventSummary]:
        """Events newest first, one row each: counts, latest conclusion, passes."""
        where, params = ("WHERE e.trigger=?", (trigger,)) if trigger else ("", ())
        return self._rows(
            EventSummary,
            "SELECT e.id, e.trigger, e.event_id, e.event_time, e.first_seen, e.last_seen, "
            "e.notices, (SELECT count(*) FROM decisions d WHERE d.event = e.id), "
            "(SELECT count(*) FROM decisions d WHERE d.event = e.id AND d.conclusion = 'PASS'), "
            "(SELECT d.conclusion FROM decisions d WHERE d.event = e.id ORDER BY d.id DESC "
            "LIMIT 1), (SELECT count(*) FROM actions a JOIN decisions d ON d.id = a.decision "
            f"WHERE d.event = e.id) FROM events e {where} "
            "ORDER BY coalesce(e.event_time, e.first_seen) DESC, e.id DESC LIMIT ? OFFSET ?",
            (*params, int(limit), int(offset)),
        )

    def last_decision_ids(
        self, triggers: Sequence[str], event_ids: Sequence[str]
    ) -> dict[str, int]:
        """The newest decision id per event id, over these triggers (one indexed query)."""
        rows = self.db.execute(
            "SELECT e.event_id, max(d.id) FROM events e JOIN decisions d ON d.event = e.id "
            f"WHERE e.trigger IN ({marks(triggers)}) AND e.event_id IN ({marks(event_ids)}) "
            "GROUP BY e.event_id",
            (*triggers, *event_ids),
        )
        return {str(r[0]): int(r[1]) for r in rows}

    # -- decisions (with their factors), actions ----------------------------------------------

    def decision_rows(
        self, *, events: Sequence[int] | None = None, trigger: str | None = None
    ) -> list[DecisionRow]:
        """Decisions in the order they were made: of these events, of a trigger, or all."""
        columns = DECISION_COLUMNS
        if self.has_table("factors"):  # schema 7 and before, read-only: never migrated
            old = f"{self.dialect.factors_before_8} AS factors"
            columns = ", ".join(old if c == "factors" else c for c in DecisionRow._fields)
        sql, params = f"SELECT {columns} FROM decisions", ()  # type: tuple[str, tuple[Any, ...]]
        if events is not None:
            sql, params = f"{sql} WHERE event IN ({marks(events)})", tuple(events)
        elif trigger is not None:
            sql, params = f"{sql} WHERE trigger=?", (trigger,)
        return self._rows(DecisionRow, f"{sql} ORDER BY id", params)

    def action_rows(self, decisions: Sequence[int]) -> list[ActionRow]:
        return self._rows(
            ActionRow,
            f"SELECT {', '.join(ActionRow._fields)} FROM actions "
            f"WHERE decision IN ({marks(decisions)}) ORDER BY id",
            decisions,
        )

    def decision_rule_files(self) -> list[str]:
        """The rule files the stored decisions were made by."""
        rows = self.db.execute(
            "SELECT DISTINCT rule_file FROM decisions WHERE rule_file IS NOT NULL"
        )
        return [str(r[0]) for r in rows]

    def list_actions(
        self, *, status: str | None = None, trigger: str | None = None, limit: int = 200
    ) -> list[ActionListRow]:
        """Actions newest first, for the operator: where each stands and when it runs next."""
        where, params = action_filter([], trigger, None, status)
        return self._rows(
            ActionListRow,
            f"SELECT {', '.join(ActionListRow._fields)} FROM actions WHERE {where} "
            "ORDER BY id DESC LIMIT ?",
            (*params, limit),
        )

    def actions_keyed(self, prefix: str, other_than_decision: int) -> list[tuple[str, str]]:
        """(idempotency key, status) of actions whose key starts with `prefix`, planned by
        another decision than this one."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self.db.execute(
            "SELECT idempotency_key, status FROM actions WHERE idempotency_key LIKE ? "
            "ESCAPE '\\' AND decision != ?",
            (escaped + "%", other_than_decision),
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    def waiting_actions(self) -> int:
        """Pending actions due now (not those failed and waiting for a later try)."""
        return int(
            self._value("SELECT count(*) FROM actions WHERE status='pending' AND retry_at IS NULL")
            or 0
        )

    # -- totals ---------------------------------------------------------------------------------

    def totals(self) -> Totals:
        """Notices by status, decisions by conclusion, actions by status, events, dead letters."""
        return Totals(
            self._grouped("SELECT status, count(*) FROM notices GROUP BY status"),
            self._grouped("SELECT conclusion, count(*) FROM decisions GROUP BY conclusion"),
            self._grouped("SELECT status, count(*) FROM actions GROUP BY status"),
            int(self._value("SELECT count(*) FROM events") or 0),
            int(self._value("SELECT count(*) FROM dead_letters") or 0),
        )

    # -- notices ---------------------------------------------------------------------------------

    def notice_statuses(self, notices: Sequence[tuple[int, float]]) -> dict[int, str]:
        """The status of each (notice id, received) from the status index, never the row.

        `status` is stored after the payload, so reading it from the row walks the payload's
        overflow pages: 2 ms for each 1 MB LVK alert. The index `notices_by_status` (status,
        received) holds it beside the row id, and (status, received, id) finds it in a few
        seeks.
        """
        if not notices:
            return {}
        ids = sorted({n[0] for n in notices})
        times = sorted({n[1] for n in notices})
        found = {
            int(r[0]): str(r[1])
            for r in self.db.execute(
                "SELECT id, status FROM notices INDEXED BY notices_by_status "
                f"WHERE status IN ({marks(NOTICE_STATUSES)}) AND received IN ({marks(times)}) "
                f"AND id IN ({marks(ids)})",
                (*NOTICE_STATUSES, *times, *ids),
            )
        }
        for notice_id in set(ids) - set(found):  # a status this list does not know yet
            status = self._value("SELECT status FROM notices WHERE id=?", (notice_id,))
            found[notice_id] = str(status)
        return found

    def earlier_replayed(self, notice_id: int) -> tuple[int, list[TieRow]]:
        """Of the notices without a Kafka offset on this notice's topic (originals only): how
        many arrived before it, and those that arrived at the same time (its ties)."""
        peers = (
            "FROM notices n JOIN notices o ON o.topic = n.topic "
            'WHERE n.id = ? AND o."offset" < 0 AND o.duplicate_of IS NULL AND o.id != n.id AND '
        )
        earlier = int(self._value(f"SELECT count(*) {peers} o.received < n.received", (notice_id,)))
        ties = self._rows(
            TieRow,
            f"SELECT o.id, o.received, o.sha256, o.payload {peers} o.received = n.received",
            (notice_id,),
        )
        return earlier, ties

    def new_notices(self, since: float | None, until: float | None) -> list[tuple[int, float]]:
        """(id, received) of the notices not evaluated yet, by arrival time then id."""
        sql = "SELECT id, received FROM notices WHERE status='new'"
        params: list[float] = []
        if since is not None:
            sql += " AND received >= ?"
            params.append(since)
        if until is not None:
            sql += " AND received <= ?"
            params.append(until)
        rows = self.db.execute(sql + " ORDER BY received, id", params)
        return [(int(r[0]), float(r[1])) for r in rows]

    def original_notice_ids(self) -> list[int]:
        """Ids of the stored notices that are not duplicates, by arrival time then id."""
        rows = self.db.execute(
            "SELECT id FROM notices WHERE status != 'duplicate' ORDER BY received, id"
        )
        return [int(r[0]) for r in rows]


def action_filter(
    ids: Sequence[int], trigger: str | None, event_id: str | None, status: str | None
) -> tuple[str, tuple[Any, ...]]:
    """A WHERE clause over actions (placeholders only) and its parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    if ids:
        clauses.append(f"id IN ({marks(ids)})")
        params += ids
    for column, value in (("trigger", trigger), ("event_id", event_id), ("status", status)):
        if value:
            clauses.append(f"{column}=?")
            params.append(value)
    return " AND ".join(clauses) or "1=1", tuple(params)
