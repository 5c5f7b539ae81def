"""The engine: notices in, decisions out, the same for Kafka, files and tests.

`process` stores the notice durably first, then reads it with the triggers subscribed to its
topic (priority order), loads the state of the events it names, calls the pure `decide`
(runtime/engine/decide.py), and persists the decisions, their factors and planned actions in
one transaction. It is deterministic given the notices and the clock; the store's SQL for all
of this is in runtime/store/evaluation.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple

from tracerules.errors import exception_tail
from tracerules.rules.compile import CompiledTrigger, RuleSet
from tracerules.rules.providers import NoticeProvider
from tracerules.runtime.dispatch.actions import Dispatcher, plan
from tracerules.runtime.engine.decide import (
    EventStates,
    Verdict,
    decide,
    decision_on,
    history_readers,
    notice_extras,
    read_notice,
    undecided,
    wanted,
)
from tracerules.runtime.engine.decisions import (
    ActionRecord,
    Decision,
    Factor,
    Source,
    notice_label,
    tally,
)
from tracerules.runtime.engine.evaluate import ExtraFactories, Reading, earliest, fold, read
from tracerules.runtime.engine.events import EVENT_CACHE, EventBook
from tracerules.runtime.sources.notices import Notice, NoticeError, parse_payload
from tracerules.runtime.store import history
from tracerules.runtime.store.store import Store, StoredNotice
from tracerules.timetext import utc_text

# Notices stored in one statement (`Store.add_notices`), at most: RUN of them, or fewer
# holding RUN_BYTES of payload (a run of LVK alerts, 1-2 MB each).
RUN: Final = 1000
RUN_BYTES: Final = 8 << 20


def runs(notices: Iterable[Notice]) -> Iterator[list[Notice]]:
    """The notices in lists of RUN, or fewer when they hold RUN_BYTES of payload."""
    run: list[Notice] = []
    size = 0
    for notice in notices:
        run.append(notice)
        size += len(notice.payload)
        if len(run) == RUN or size >= RUN_BYTES:
            yield run
            run, size = [], 0
    if run:
        yield run


def first_status(rules: RuleSet, notice: Notice) -> str:
    """A notice's status as it is stored: `new` (to evaluate) on a topic a trigger reads."""
    return "new" if notice.topic in rules.by_topic else "unsubscribed"


def stored_runs(
    store: Store, rules: RuleSet, notices: Iterable[Notice]
) -> Iterator[list[tuple[Notice, StoredNotice]]]:
    """The notices stored a run (`runs`) at a time, each run in one statement, each notice
    beside what the store made of it."""
    for run in runs(notices):
        stored = store.add_notices([(notice, first_status(rules, notice)) for notice in run])
        yield list(zip(run, stored, strict=True))


class Processed(NamedTuple):
    """What became of one notice. (A named tuple, as Factor: one for each of a month's
    notices, most of them on topics no trigger reads.)"""

    notice_id: int
    status: str  # evaluated, unsubscribed, dead, duplicate
    decisions: Sequence[Decision] = ()
    reason: str | None = None  # for dead letters and duplicates


def _duplicate(stored: StoredNotice) -> Processed:
    """A notice the store already held (the same offset, or the same payload)."""
    why = (
        f"same payload as notice {stored.duplicate_of}" if stored.duplicate_of else "already stored"
    )
    return Processed(stored.id, "duplicate", reason=why)


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
        extras: NoticeProvider | None = None,
        products: bool = False,
    ) -> None:
        self.store = store
        # On PostgreSQL other services decide on the same events: their state is read under
        # the event's lock in each decision's transaction, never from this process's memory.
        self.events = EventBook(store, capacity=0 if store.is_postgresql else EVENT_CACHE)
        self.dry_run = dry_run
        # A dry run may render file products (into out_dir only), and never acts otherwise.
        self.products = products and dry_run
        self.run_actions = (run_actions and not dry_run) or self.products
        self.clock = clock
        # The rule set brings the providers its rules need; `extras` replaces them (tests).
        self.extras = extras
        self.source = Source.DRY_RUN if dry_run else Source.NOTICE
        self.reload(rules)
        self.dispatcher = Dispatcher(
            store, lambda: self.rules, Path(out_dir), clock, dry_run=self.dry_run
        )

    def reload(self, rules: RuleSet) -> None:
        """Swap in a new, already validated rule set whole."""
        self.rules = rules
        self.providers: tuple[NoticeProvider, ...] = (
            (self.extras,) if self.extras is not None else tuple(rules.providers)
        )
        self.history_readers = history_readers(rules)
        self.events.forget()

    # -- notices -----------------------------------------------------------------------------

    def process(self, notice: Notice) -> Processed:
        """Store the notice durably, then evaluate it (unless it was already evaluated)."""
        return self._stored(notice, self.store.add_notice(notice, first_status(self.rules, notice)))

    def process_many(self, notices: Iterable[Notice]) -> Iterator[Processed]:
        """`process` for each notice in turn (a replay, a benchmark), with the same outcome,
        but the notices stored a run (`runs`) at a time, each run in one statement, before
        its notices are evaluated in turn, as a replay stores its notices first."""
        for run in stored_runs(self.store, self.rules, notices):
            added: set[int] = set()
            for notice, stored in run:
                if stored.new:
                    added.add(stored.id)
                elif stored.status == "new" and stored.id in added:
                    # The same notice twice in one run: its first copy, stored by this run and
                    # not evaluated when the run was stored, is evaluated once.
                    yield _duplicate(stored)
                    continue
                yield self._stored(notice, stored)

    def _stored(self, notice: Notice, stored: StoredNotice) -> Processed:
        """What becomes of a notice the store was given: evaluated if it is new to evaluation."""
        if stored.status == "unsubscribed":
            return Processed(stored.id, "unsubscribed")  # stored and counted, never parsed
        if stored.status == "duplicate" or (not stored.new and stored.status != "new"):
            return _duplicate(stored)
        return self.evaluate(notice, stored.id)

    def process_atomically(self, notice: Notice) -> Processed:
        """`process` in one transaction: the notice and its decisions are committed together,
        one commit per notice (the service). A failure anywhere, the COMMIT included, rolls
        both back and empties the event cache, which may hold state the rollback undid."""
        try:
            with self.store.transaction():
                return self.process(notice)
        except BaseException:
            self.events.forget()
            raise

    def stored_notice(self, notice_id: int) -> Notice:
        row = self.store.notice(notice_id)
        if row is None:
            raise KeyError(f"no notice {notice_id} in the store")
        return notice_of(row)

    def evaluate(self, notice: Notice, notice_id: int) -> Processed:
        """Offer a stored notice to its topic's triggers, in priority order: read it, load the
        states of the events it names, decide, and persist the decisions in one transaction."""
        triggers = self.rules.by_topic.get(notice.topic, ())
        if not triggers:
            self.store.set_notice_status(notice_id, "unsubscribed")
            return Processed(notice_id, "unsubscribed")
        try:
            doc = parse_payload(notice.payload, triggers[0].format)
        except NoticeError as err:
            self.store.dead_letter(notice_id, notice.topic, str(err))
            return Processed(notice_id, "dead", reason=str(err))
        clock = notice.received
        seen = read_notice(triggers, notice, notice_id, doc, clock, self._extras(notice, doc))
        try:
            with self.store.transaction():
                if not self.store.take_for_evaluation(notice_id):
                    return Processed(notice_id, "duplicate", reason="evaluated by another service")
                keys = wanted(seen, self.rules, self.history_readers)
                self.store.lock_events(keys)
                states = EventStates(self.events.states(keys))
                verdicts = decide(self.rules, states, seen, clock, self.source)
                decisions = [self._persist(v, notice_id) for v in verdicts]
                self.store.set_notice_status(notice_id, "evaluated")
        except BaseException:
            self.events.forget()  # the cache may hold state the rollback undid
            raise
        if self.run_actions:
            self._run([a for d in decisions for a in d.actions])
        return Processed(notice_id, "evaluated", decisions)

    def _run(self, records: list[ActionRecord]) -> None:
        """Run the pending actions now (tests, dry runs); the service uses its workers."""
        pending = {a.id: a for a in records if a.status == "pending"}
        for result in self.dispatcher.run_pending(list(pending)):
            pending[result.action_id].status = result.status
            pending[result.action_id].log += result.log

    def _extras(self, notice: Notice, doc: Any) -> ExtraFactories:
        """Per-notice lazy values from the rule set's providers (the LVK sky map)."""
        return notice_extras(self.providers, notice, doc)

    # -- persisting --------------------------------------------------------------------------

    def _persist(self, verdict: Verdict, notice_id: int | None) -> Decision:
        """Store a verdict: the event it advanced, the decision, and its planned actions."""
        event, decision = verdict.event, verdict.decision
        event_pk = None
        if event is not None:
            event_pk = self.store.save_event(event, notice_id, decision.at)
            self.events.remember(event if event.pk is not None else event._replace(pk=event_pk))
        return self._record(verdict, event_pk)

    def _record(self, verdict: Verdict, event_pk: int | None) -> Decision:
        """Insert the decision, and plan the actions of a PASS (a planning failure is an
        error decision of its own, as any failure of one trigger)."""
        trigger, decision = verdict.trigger, verdict.decision
        self.store.save_decision(decision, event_pk)
        if not (decision.passed and trigger.actions):
            return decision
        try:
            facts = self._facts(trigger, decision, verdict.values)
            decision.actions = plan(
                self.store,
                trigger,
                decision,
                {**verdict.values, **facts},
                self.dry_run,
                self.products,
                verdict.extra,
                self.rules.sites,
            )
        except Exception as err:
            failed = undecided(
                self.rules,
                trigger,
                decision.notice_id,
                decision.source,
                decision.at,
                exception_tail(err),
            )
            self.store.save_decision(failed.decision, None)
            return failed.decision
        return decision

    def _facts(
        self, trigger: CompiledTrigger, decision: Decision, values: dict[str, Any]
    ) -> dict[str, Any]:
        """Template names besides the fields: where the notice came from and what was decided."""
        notice_id = decision.notice_id
        row = self.store.notice_place(notice_id) if notice_id is not None else None
        event_time = values.get("event_time")
        return {
            "notice_id": notice_id,
            "partition": row["partition"] if row else -1,
            "offset": self._offset(notice_id, row),
            "decision": decision.id,
            "conclusion": decision.conclusion.value,
            "event_id": decision.event_id,
            "ext": trigger.format,
            "date": utc_text(event_time, "%Y%m%d") if isinstance(event_time, float) else None,
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
        # `passed()` reads what was decided, as it stands now: nothing changes during a replay.
        states = EventStates(self.events.states((t.id, event_id) for t in self.rules.triggers))
        factors: tuple[Factor, ...] | None = None
        event_time: float | None = None
        last: Reading | None = None
        origin: str | None = None
        for row in self.store.event_notice_rows(trigger_id, event_id):
            notice = notice_of(row)
            try:
                doc = parse_payload(notice.payload, trigger.format)
            except NoticeError:
                continue
            clock = notice.received if now is None else now
            extras = {**self._extras(notice, doc), "history": lambda: states.passed}
            last = read(trigger, notice, doc, clock, extras)
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
            self.store.lock_events([(trigger_id, event_id)])
            state = self.events.states([(trigger_id, event_id)])[(trigger_id, event_id)]
            assert state.pk is not None  # stored: the replay found its notices
            replayed = state._replace(factors=factors)
            notice_id = self.store.last_event_notice(state.pk)
            decision = decision_on(
                self.rules, trigger, replayed, notice_id, Source.MANUAL, now, votes
            )
            decision.actor = actor
            verdict = Verdict(decision, None, trigger, reading.ctx.values, reading.ctx.extra)
            decision = self._record(verdict, state.pk)
            if decision.passed:
                self.events.remember(state._replace(passed=True))
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
