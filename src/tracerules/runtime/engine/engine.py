"""The engine: notices in, decisions out, the same for Kafka, files and tests.

`process` stores the notice durably first, then offers it to the triggers subscribed to its
topic in priority order, each in isolation, and records every decision with its factors and
planned actions in one transaction. It is deterministic given the notices and the clock.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracerules.dsl.values import Missing, Vote
from tracerules.products.sky.skymap_functions import skymap_extras
from tracerules.rules.compile import CompiledTrigger, RuleSet
from tracerules.runtime.dispatch.actions import Dispatcher, plan
from tracerules.runtime.engine.decisions import (
    ActionRecord,
    Conclusion,
    Decision,
    Factor,
    Source,
    conclude,
    notice_label,
    tally,
)
from tracerules.runtime.engine.evaluate import Reading, earliest, fold, read
from tracerules.runtime.engine.events import EventBook, EventState
from tracerules.runtime.sources.notices import Notice, NoticeError, parse_payload
from tracerules.runtime.store import history
from tracerules.runtime.store.store import Store, StoredNotice
from tracerules.timetext import utc_text


@dataclass
class Processed:
    """What became of one notice."""

    notice_id: int
    status: str  # evaluated, unsubscribed, dead, duplicate
    decisions: list[Decision] = field(default_factory=list)
    reason: str | None = None  # for dead letters and duplicates


class Engine:
    """Evaluates notices against a rule set, recording everything in the store."""

    def __init__(
        self,
        rules: RuleSet,
        store: Store,
        *,
        out_dir: Path | str = "tracerules-out",
        dry_run: bool = False,
        run_actions: bool = True,
        clock: Callable[[], float] = time.time,
        extras: Any = None,
        products: bool = False,
    ) -> None:
        self.rules = rules
        self.store = store
        self.events = EventBook(store)
        self.dry_run = dry_run
        # A dry run may render file products (into out_dir only), and never acts otherwise.
        self.products = products and dry_run
        self.run_actions = (run_actions and not dry_run) or self.products
        self.clock = clock
        # Per-notice lazy values, a callable(notice, doc); by default the LVK alert sky map.
        self.extras = extras if extras is not None else skymap_extras
        self.dispatcher = Dispatcher(
            store, lambda: self.rules, Path(out_dir), clock, dry_run=self.dry_run
        )

    def reload(self, rules: RuleSet) -> None:
        """Swap in a new, already validated rule set whole."""
        self.rules = rules
        self.events.forget()

    # -- notices -----------------------------------------------------------------------------

    def process(self, notice: Notice) -> Processed:
        """Store the notice durably, then evaluate it (unless it was already evaluated)."""
        subscribed = notice.topic in self.rules.by_topic
        stored = self.store.add_notice(notice, "new" if subscribed else "unsubscribed")
        if stored.status == "unsubscribed":
            return Processed(stored.id, "unsubscribed")  # stored and counted, never parsed
        if stored.status == "duplicate" or (not stored.new and stored.status != "new"):
            why = (
                f"same payload as notice {stored.duplicate_of}"
                if stored.duplicate_of
                else "already stored"
            )
            return Processed(stored.id, "duplicate", reason=why)
        return self.evaluate(notice, stored.id)

    def stored_notice(self, notice_id: int) -> Notice:
        row = self.store.notice(notice_id)
        if row is None:
            raise KeyError(f"no notice {notice_id} in the store")
        return notice_of(row)

    def evaluate(self, notice: Notice, notice_id: int) -> Processed:
        """Offer a stored notice to its topic's triggers, in priority order."""
        stored = StoredNotice(notice_id, False, "new")
        triggers = self.rules.by_topic.get(notice.topic, ())
        if not triggers:
            self.store.set_notice_status(stored.id, "unsubscribed")
            return Processed(stored.id, "unsubscribed")
        try:
            doc = parse_payload(notice.payload, triggers[0].format)
        except NoticeError as err:
            self.store.dead_letter(stored.id, notice.topic, str(err))
            return Processed(stored.id, "dead", reason=str(err))
        source = Source.DRY_RUN if self.dry_run else Source.NOTICE
        extras = self._extras(notice, doc)
        try:
            with self.store.transaction():
                decisions = [
                    self._decide(t, notice, stored.id, doc, source, extras) for t in triggers
                ]
                self.store.set_notice_status(stored.id, "evaluated")
        except BaseException:
            self.events.forget()  # the cache may hold state the rollback undid
            raise
        if self.run_actions:
            self._run([a for d in decisions for a in d.actions])
        return Processed(stored.id, "evaluated", decisions)

    def _run(self, records: list[ActionRecord]) -> None:
        """Run the pending actions now (tests, dry runs); the service uses its workers."""
        pending = {a.id: a for a in records if a.status == "pending"}
        for result in self.dispatcher.run_pending(list(pending)):
            pending[result.action_id].status = result.status
            pending[result.action_id].log += result.log

    def _extras(self, notice: Notice, doc: Any) -> dict[str, Any]:
        """Per-notice lazy values for functions: sky maps, and the event's history."""
        extras = dict(self.extras(notice, doc) or {}) if self.extras else {}
        extras["history"] = lambda: self.has_passed
        return extras

    def has_passed(self, trigger_id: str, event_id: str) -> bool:
        """Whether a trigger has already passed this event (earlier notices, or this one at a
        higher priority): gocart's "a previous alert of this event already passed"."""
        row = self.store.db.execute(
            "SELECT 1 FROM decisions d JOIN events e ON d.event = e.id WHERE e.trigger=? AND "
            "e.event_id=? AND d.conclusion='PASS' LIMIT 1",
            (trigger_id, event_id),
        ).fetchone()
        return row is not None

    def _decide(
        self,
        trigger: CompiledTrigger,
        notice: Notice,
        notice_id: int,
        doc: Any,
        source: Source,
        extras: Any,
    ) -> Decision:
        now = notice.received
        try:
            reading = read(trigger, notice, doc, now, extras)
            if isinstance(reading.event_id, Missing):
                unknown = Conclusion.NOT_APPLICABLE
                why = reading.event_id.reason
                return self._undecided(trigger, notice_id, source, now, unknown, why)
            state = self.events.get(trigger.id, reading.event_id, now)
            event_time = earliest(state.event_time, reading.event_time)
            factors, votes = fold(trigger, reading, event_time, state.factors, state.factors_from)
            origin = notice_label(state.seq + 1, notice.topic, notice.time)
            self.events.advance(state, notice_id, event_time, factors, now, origin)
            decision = Decision(
                trigger.id,
                state.event_id,
                source,
                now,
                trigger.mode,
                votes,
                conclude(votes, source),
                factors,
                state.seq,
                notice_id,
            )
            return self._record(
                trigger, state, notice_id, decision, reading.ctx.values, reading.ctx.extra
            )
        except Exception as err:  # one trigger's failure never stops the others
            tail = traceback.format_exception_only(type(err), err)[-1].strip()
            return self._undecided(trigger, notice_id, source, now, Conclusion.ERROR, tail)

    def _undecided(
        self,
        trigger: CompiledTrigger,
        notice_id: int,
        source: Source,
        now: float,
        conclusion: Conclusion,
        why: str | None,
    ) -> Decision:
        """A decision without an event: no event id in the notice, or the trigger failed."""
        decision = Decision(
            trigger.id, None, source, now, trigger.mode, Vote.UNKNOWN, conclusion, error=why
        )
        return self._record(trigger, None, notice_id, decision, {})

    def _record(
        self,
        trigger: CompiledTrigger,
        state: EventState | None,
        notice_id: int | None,
        decision: Decision,
        values: dict[str, Any],
        extra: Callable[[str], Any] | None = None,
    ) -> Decision:
        decision.rule_file = trigger.path
        decision.rule_revision = trigger.revision
        decision.rule_commit = self.rules.git_commit
        decision.notice_id = notice_id
        db = self.store.db
        row = db.execute(
            "INSERT INTO decisions (event, trigger, event_id, notice_id, seq, source, actor, at, "
            "mode, votes, conclusion, error, rule_file, rule_revision, rule_commit) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
            (
                state.pk if state else None,
                trigger.id,
                decision.event_id,
                notice_id,
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
            ),
        ).fetchone()
        decision.id = int(row[0])
        db.executemany(
            "INSERT INTO factors (decision, position, name, vote, inherited, reason, detail) "
            "VALUES (?,?,?,?,?,?,?)",
            [
                (decision.id, i, f.name, f.vote.value, int(f.inherited), f.reason, f.detail)
                for i, f in enumerate(decision.factors)
            ],
        )
        if decision.passed and trigger.actions:
            facts = self._facts(trigger, decision, notice_id, values)
            decision.actions = plan(
                self.store,
                trigger,
                decision,
                {**values, **facts},
                self.dry_run,
                self.products,
                extra,
                getattr(self.rules, "sites", None),
            )
        return decision

    def _facts(
        self,
        trigger: CompiledTrigger,
        decision: Decision,
        notice_id: int | None,
        values: dict[str, Any],
    ) -> dict[str, Any]:
        """Template names besides the fields: where the notice came from and what was decided."""
        row = self.store.db.execute(
            'SELECT partition, "offset", source FROM notices WHERE id=?', (notice_id,)
        ).fetchone()
        event_time = values.get("event_time")
        return {
            "notice_id": notice_id,
            "partition": row["partition"] if row else -1,
            "offset": self._offset(notice_id, row),
            "decision": decision.id,
            "conclusion": decision.conclusion.value,
            "event_id": decision.event_id,
            "ext": trigger.format,
            "date": utc_text(event_time, "%Y%m%d") if isinstance(event_time, float) else "-",
        }

    def _offset(self, notice_id: int | None, row: Any) -> int:
        """The Kafka offset; for a replayed notice (never on Kafka), its stable sequence
        number, so that products named by `{offset}` do not overwrite each other."""
        if row is None or notice_id is None:
            return -1
        if row["offset"] >= 0 or row["source"] == "kafka":
            return int(row["offset"])
        return history.sequence(self.store, notice_id)

    # -- people ------------------------------------------------------------------------------

    def current_conditions(
        self, trigger_id: str, event_id: str, now: float | None = None
    ) -> tuple[tuple[Factor, ...], Any] | None:
        """Replay the event's notices under the rules as they are now, without acting."""
        trigger = self.rules.trigger(trigger_id)
        if trigger is None:
            return None
        factors: tuple[Factor, ...] | None = None
        event_time: float | None = None
        last: Reading | None = None
        origin: str | None = None
        for row in self.store.query(
            "SELECT n.*, en.seq FROM notices n JOIN event_notices en ON en.notice_id = n.id "
            "JOIN events e ON e.id = en.event WHERE e.trigger=? AND e.event_id=? "
            "ORDER BY en.seq",
            (trigger_id, event_id),
        ):
            notice = notice_of(row)
            try:
                doc = parse_payload(notice.payload, trigger.format)
            except NoticeError:
                continue
            clock = notice.received if now is None else now
            last = read(trigger, notice, doc, clock, self._extras(notice, doc))
            event_time = earliest(event_time, last.event_time)
            factors, _ = fold(trigger, last, event_time, factors, origin)
            origin = notice_label(row["seq"], notice.topic, notice.time)
        if factors is None or last is None:
            return None
        return factors, last

    def retrigger(self, trigger_id: str, event_id: str, actor: str) -> Decision:
        """A manual decision: replay the event now; MAYBE becomes PASS; act as usual."""
        trigger = self.rules.trigger(trigger_id)
        if trigger is None:
            raise KeyError(f"no trigger '{trigger_id}' in the rules")
        now = self.clock()
        replay = self.current_conditions(trigger_id, event_id, now)
        if replay is None:
            raise KeyError(f"trigger '{trigger_id}' has no event '{event_id}'")
        factors, reading = replay
        votes = tally(factors)
        with self.store.transaction():
            state = self.events.get(trigger_id, event_id, now)
            decision = Decision(
                trigger_id,
                event_id,
                Source.MANUAL,
                now,
                trigger.mode,
                votes,
                conclude(votes, Source.MANUAL),
                factors,
                state.seq,
                actor=actor,
            )
            last_notice = self.store.scalar(
                "SELECT notice_id FROM event_notices WHERE event=? ORDER BY seq DESC LIMIT 1",
                (state.pk,),
            )
            decision = self._record(
                trigger, state, last_notice, decision, reading.ctx.values, reading.ctx.extra
            )
            self.store.db.execute("UPDATE decisions SET actor=? WHERE id=?", (actor, decision.id))
        if self.run_actions:
            self._run(decision.actions)
        return decision


def notice_of(row: Any) -> Notice:
    return Notice(
        row["topic"],
        bytes(row["payload"]),
        row["partition"],
        row["offset"],
        row["created"],
        row["received"],
        row["source"],
        row["name"],
        row["sha256"],
    )
