"""Events: the notices of one trigger that share an event id, and their running state.

The state an evaluation needs (the event's time and its latest factors) lives in the store;
a bounded cache keeps recent events in memory so a busy stream does not re-read them, and
memory stays flat however long the service runs.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from tracerules.dsl.values import Missing, Vote
from tracerules.runtime.engine.decisions import Factor, notice_label
from tracerules.runtime.store.store import Store


@dataclass
class EventState:
    pk: int
    trigger: str
    event_id: str
    event_time: float | None
    factors: tuple[Factor, ...] | None  # the latest decided factors, None before any
    seq: int  # how many notices the event has
    factors_from: str | None = None  # the notice the latest factors were decided on


def event_key(value: Any) -> str | Missing:
    """An event id as text: 1016881, 1016881.0 and ' 1016881' are the same event."""
    if isinstance(value, Missing):
        return value
    if isinstance(value, bool | list | tuple | dict):
        return Missing(f"the event id {value!r} is not a single value")
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip()
    return text if text else Missing("the event id is empty")


class EventBook:
    """Finds or creates events in the store, with a bounded in-memory cache."""

    def __init__(self, store: Store, capacity: int = 4096) -> None:
        self.store = store
        self.capacity = capacity
        self._cache: OrderedDict[tuple[str, str], EventState] = OrderedDict()

    def get(self, trigger: str, event_id: str, now: float) -> EventState:
        key = (trigger, event_id)
        state = self._cache.get(key)
        if state is not None:
            self._cache.move_to_end(key)
            return state
        state = self._load(trigger, event_id) or self._create(trigger, event_id, now)
        self._remember(key, state)
        return state

    def advance(
        self,
        state: EventState,
        notice_id: int | None,
        event_time: float | None,
        factors: tuple[Factor, ...] | None,
        now: float,
        origin: str | None = None,
    ) -> None:
        """Record that a notice joined the event (notice_id None: no new notice); `origin`
        names the notice `factors` were decided on."""
        if notice_id is not None:
            state.seq += 1
            self.store.db.execute(
                "INSERT OR IGNORE INTO event_notices (event, notice_id, seq) VALUES (?,?,?)",
                (state.pk, notice_id, state.seq),
            )
        state.event_time = event_time
        if factors is not None:
            state.factors, state.factors_from = factors, origin
        self.store.db.execute(
            "UPDATE events SET event_time=?, last_seen=CASE WHEN last_seen >= ? THEN last_seen "
            "ELSE ? END, notices=? WHERE id=?",
            (event_time, now, now, state.seq, state.pk),
        )

    def forget(self) -> None:
        """Drop the cache (after a rollback, or when rules change)."""
        self._cache.clear()

    def _remember(self, key: tuple[str, str], state: EventState) -> None:
        self._cache[key] = state
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)

    def _load(self, trigger: str, event_id: str) -> EventState | None:
        row = self.store.db.execute(
            "SELECT id, event_time, notices FROM events WHERE trigger=? AND event_id=?",
            (trigger, event_id),
        ).fetchone()
        if row is None:
            return None
        factors, origin = self._last_factors(row["id"])
        return EventState(
            row["id"], trigger, event_id, row["event_time"], factors, row["notices"], origin
        )

    def _last_factors(self, pk: int) -> tuple[tuple[Factor, ...] | None, str | None]:
        """The latest decided factors, and the notice they were decided on."""
        last = self.store.db.execute(
            "SELECT d.id, d.seq, n.topic, coalesce(n.created, n.received) AS received "
            "FROM decisions d "
            "LEFT JOIN notices n ON n.id = d.notice_id "
            "WHERE d.event=? AND d.conclusion IN ('PASS', 'FAIL') ORDER BY d.id DESC LIMIT 1",
            (pk,),
        ).fetchone()
        if last is None:
            return None, None
        origin = (
            notice_label(last["seq"], last["topic"], last["received"])
            if last["topic"] is not None
            else None
        )
        rows = self.store.db.execute(
            "SELECT name, vote, inherited, reason, detail FROM factors WHERE decision=? "
            "ORDER BY position",
            (last["id"],),
        )
        factors = tuple(
            Factor(r["name"], Vote(r["vote"]), bool(r["inherited"]), r["reason"], r["detail"])
            for r in rows
        )
        return factors, origin

    def _create(self, trigger: str, event_id: str, now: float) -> EventState:
        row = self.store.db.execute(
            "INSERT INTO events (trigger, event_id, event_time, first_seen, last_seen, notices) "
            "VALUES (?, ?, NULL, ?, ?, 0) RETURNING id",
            (trigger, event_id, now, now),
        ).fetchone()
        return EventState(int(row[0]), trigger, event_id, None, None, 0)
