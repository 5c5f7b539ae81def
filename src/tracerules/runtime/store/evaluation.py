"""The store's rows for evaluation: events, the notices that joined them, decisions, factors.

A mixin of `Store`: the engine loads event states and persists what `decide` returned through
these methods, and writes no SQL itself. The caller holds the transaction.

A decision's factors are one column of its row, a JSON array with one
`[name, vote, inherited, reason, detail]` per factor (expiry first, then the conditions in
order): they are always written and read whole, and one value is several times cheaper to
store than a row for each (schema 8; `json_each(decisions.factors)` lists them in SQL).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Final

from tracerules.dsl.values import Vote
from tracerules.runtime.engine.decisions import Decision, EventState, Factor, notice_label
from tracerules.runtime.store.dialect import Connection, Dialect

_INSERT_DECISION = (
    "INSERT INTO decisions (event, trigger, event_id, notice_id, seq, source, actor, at, "
    "mode, votes, conclusion, error, rule_file, rule_revision, rule_commit, factors) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
# The latest decided (PASS or FAIL) decision of an event, and the notice it was decided on.
_LAST_DECIDED = (
    "SELECT d.factors, d.seq, n.topic, coalesce(n.created, n.received) AS received "
    "FROM decisions d LEFT JOIN notices n ON n.id = d.notice_id "
    "WHERE d.event=? AND d.conclusion IN ('PASS', 'FAIL') ORDER BY d.id DESC LIMIT 1"
)
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
UNREADABLE: Final = "unreadable"  # the name of the factor that stands for unreadable ones


def factors_text(factors: Sequence[Sequence[object]]) -> str | None:
    """A decision's factors as stored: NULL for none (a decision without an event). Each is
    a Factor, or the same five values as an older store held them (its upgrade)."""
    # A Factor is a tuple and its Vote a str: JSON writes them as they are, in C.
    return _ENCODE(factors) if factors else None


def factors_of(text: str | None) -> tuple[Factor, ...]:
    """A decision's factors read back from `factors_text`. A value that is not what it
    wrote (a store edited by hand) is one UNKNOWN factor that says so, not an error that
    would hide the rest of the history."""
    if not text:
        return ()
    try:
        return tuple(stored_factor(item) for item in _json_list(json.loads(text)))
    except (ValueError, TypeError, RecursionError) as err:
        why = f"the store's factors of this decision are unreadable ({type(err).__name__})"
        return (Factor(UNREADABLE, Vote.UNKNOWN, reason=why),)


# PostgreSQL advisory lock spaces (the two-key form, apart from the one-key locks of the
# service and of migration): an event, and an observatory's current observation.
EVENT_LOCKS: Final = 0x7472_6576  # "trev"
OBSERVATORY_LOCKS: Final = 0x7472_6F62  # "trob"


def lock_id(text: str) -> int:
    """A stable 32-bit key for a name, the same in every process (Python's hash is not)."""
    return int.from_bytes(
        hashlib.blake2b(text.encode(), digest_size=4).digest(), "big", signed=True
    )


def _json_list(value: object) -> list[object]:
    if not isinstance(value, list):
        raise TypeError(f"a {type(value).__name__}, not a list")
    return value


def stored_factor(item: object) -> Factor:
    """One factor as stored, [name, vote, inherited, reason, detail]; TypeError or
    ValueError if it is not one (the read model's and an import's one check)."""
    name, vote, inherited, reason, detail = _json_list(item)
    if not (isinstance(name, str) and name) or inherited not in (True, False):
        raise TypeError("a factor without a name, or inherited neither true nor false")
    if not (isinstance(reason, str | None) and isinstance(detail, str | None)):
        raise TypeError("a reason or detail that is not text")
    return Factor(name, Vote(vote), bool(inherited), reason, detail)


class EvaluationRows:
    """Event state in, decisions out: the SQL of evaluation."""

    db: Connection
    dialect: Dialect

    if TYPE_CHECKING:  # Store's

        @property
        def is_postgresql(self) -> bool: ...

    # -- several services on one store (PostgreSQL) ---------------------------------------
    # SQLite has one writer at a time (BEGIN IMMEDIATE) and one service per file (its lock
    # file): these are no-ops there, and its engine keeps its cache of event states. On
    # PostgreSQL the services of a team decide at once, each on its own partitions, so the
    # database serialises what one process's memory used to: who evaluates a notice, the
    # state of an event, an observatory's current observation. Each lock is held until the
    # decision's transaction ends.

    def take_for_evaluation(self, notice_id: int) -> bool:
        """Lock the notice's row for this transaction: False if it was evaluated meanwhile
        (by another service, handed the partition in a rebalance while this one was on it)."""
        if not self.is_postgresql:
            return True
        row = self.db.execute("SELECT status FROM notices WHERE id=? FOR UPDATE", (notice_id,))
        found = row.fetchone()
        return found is not None and found[0] == "new"

    def lock_events(self, keys: Iterable[tuple[str, str]]) -> None:
        """Lock the events (trigger, event id) a decision reads and writes, in one order
        everywhere (no deadlock). An advisory lock rather than SELECT ... FOR UPDATE of the
        events row: an event's first notice finds no row to lock, and two services inserting
        the same new event must wait for each other too."""
        if not self.is_postgresql:
            return
        for key in sorted({lock_id(f"{trigger}\x1f{event_id}") for trigger, event_id in keys}):
            self.db.execute("SELECT pg_advisory_xact_lock(?, ?)", (EVENT_LOCKS, key))

    def lock_observatory(self, observatory: str, test: bool) -> None:
        """Lock an observatory's current observation while a decision arbitrates it."""
        if self.is_postgresql:
            key = lock_id(f"{observatory}\x1f{int(test)}")
            self.db.execute("SELECT pg_advisory_xact_lock(?, ?)", (OBSERVATORY_LOCKS, key))

    # -- reading an event's state ---------------------------------------------------------

    def event_state(self, trigger: str, event_id: str) -> EventState | None:
        """The event as stored (None if no notice has joined it yet)."""
        row = self.db.execute(
            "SELECT id, event_time, notices, EXISTS (SELECT 1 FROM decisions d WHERE "
            "d.event = events.id AND d.conclusion = 'PASS') AS passed "
            "FROM events WHERE trigger=? AND event_id=?",
            (trigger, event_id),
        ).fetchone()
        if row is None:
            return None
        factors, origin = self._last_factors(row[0])
        return EventState(trigger, event_id, row[0], row[1], factors, row[2], origin, bool(row[3]))

    def _last_factors(self, pk: int) -> tuple[tuple[Factor, ...] | None, str | None]:
        """The latest decided factors, and the notice they were decided on."""
        last = self.db.execute(_LAST_DECIDED, (pk,)).fetchone()
        if last is None:
            return None, None
        factors, seq, topic, received = last
        origin = notice_label(seq, topic, received) if topic is not None else None
        return factors_of(factors), origin

    def event_notice_rows(self, trigger: str, event_id: str) -> list[sqlite3.Row]:
        """The notices of an event in the order they joined it, each with its `seq`."""
        return list(
            self.db.execute(
                "SELECT n.*, en.seq FROM notices n JOIN event_notices en ON en.notice_id = n.id "
                "JOIN events e ON e.id = en.event WHERE e.trigger=? AND e.event_id=? "
                "ORDER BY en.seq",
                (trigger, event_id),
            )
        )

    def last_event_notice(self, event_pk: int) -> int | None:
        row = self.db.execute(
            "SELECT notice_id FROM event_notices WHERE event=? ORDER BY seq DESC LIMIT 1",
            (event_pk,),
        ).fetchone()
        return None if row is None else int(row[0])

    def notice_place(self, notice_id: int) -> sqlite3.Row | None:
        """Where a stored notice came from: its partition, offset and source."""
        row: sqlite3.Row | None = self.db.execute(
            'SELECT partition, "offset", source FROM notices WHERE id=?', (notice_id,)
        ).fetchone()
        return row

    # -- persisting a decision --------------------------------------------------------------

    def save_event(self, event: EventState, notice_id: int | None, now: float) -> int:
        """Store an event after a notice joined it (`notice_id`, its `seq`th); its id."""
        if event.pk is None:
            cursor = self.db.execute(
                "INSERT INTO events (trigger, event_id, event_time, first_seen, last_seen, "
                "notices) VALUES (?, ?, ?, ?, ?, ?)" + self.dialect.returning_id,
                (event.trigger, event.event_id, event.event_time, now, now, event.seq),
            )
            pk = int(self.dialect.new_id(cursor) or 0)
        else:
            pk = event.pk
            self.db.execute(
                # not SQLite's two-argument max(): PostgreSQL spells it greatest()
                "UPDATE events SET event_time=?, last_seen=CASE WHEN last_seen >= ? "
                "THEN last_seen ELSE ? END, notices=? WHERE id=?",
                (event.event_time, now, now, event.seq, pk),
            )
        if notice_id is not None:
            self.db.execute(
                "INSERT INTO event_notices (event, notice_id, seq) VALUES (?,?,?) "
                "ON CONFLICT DO NOTHING",
                (pk, notice_id, event.seq),
            )
        return pk

    def save_decision(self, decision: Decision, event_pk: int | None) -> int:
        """Insert a decision with its factors; its id (also set on `decision`)."""
        cursor = self.db.execute(
            _INSERT_DECISION + self.dialect.returning_id,
            (
                event_pk,
                decision.trigger,
                decision.event_id,
                decision.notice_id,
                decision.seq,
                decision.source.value,
                decision.actor,
                decision.at,
                decision.mode,
                decision.votes.value,
                decision.conclusion.value,
                decision.error,
                decision.rule_file,
                decision.rule_revision,
                decision.rule_commit,
                factors_text(decision.factors),
            ),
        )
        decision.id = int(self.dialect.new_id(cursor) or 0)
        return decision.id
