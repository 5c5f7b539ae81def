"""The decision step: a read notice, the state of its events and the clock in, decisions out.

`read_notice` reads every subscribed trigger's fields from a parsed notice; `decide` folds
each reading into its event's state and concludes. Both are pure: no store, no files, no
wall clock (the clock is an argument). The engine loads the states `wanted` names, calls
`decide`, and persists what it returns in one transaction; a replay, a test or a property
check can call it on states built by hand and get the same decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracerules.dsl.context import Context
from tracerules.dsl.values import Missing, Vote
from tracerules.errors import exception_tail
from tracerules.rules.compile import CompiledTrigger, RuleSet
from tracerules.rules.providers import NoticeProvider
from tracerules.runtime.engine.decisions import (
    Conclusion,
    Decision,
    EventState,
    Source,
    conclude,
    notice_label,
)
from tracerules.runtime.engine.evaluate import ExtraFactories, Reading, earliest, fold, read
from tracerules.runtime.sources.notices import Notice

EventKey = tuple[str, str]  # (trigger id, event id)


@dataclass(frozen=True)
class TriggerReading:
    """One trigger's reading of a notice, or why it could not read it."""

    trigger: CompiledTrigger = field(compare=False)
    reading: Reading | None
    error: str | None = None


@dataclass(frozen=True)
class ReadNotice:
    """A notice as its topic's triggers read it, in priority order."""

    notice: Notice
    notice_id: int | None
    readings: tuple[TriggerReading, ...]
    extras: ExtraFactories = field(default_factory=dict, compare=False)

    def event_ids(self) -> list[EventKey]:
        """The events this notice names, by trigger."""
        return [
            (r.trigger.id, r.reading.event_id)
            for r in self.readings
            if r.reading is not None and isinstance(r.reading.event_id, str)
        ]


@dataclass(frozen=True)
class EventStates:
    """The state of the events a notice names; an event absent here has no notice yet."""

    known: Mapping[EventKey, EventState] = field(default_factory=dict)

    def get(self, trigger: str, event_id: str) -> EventState:
        return self.known.get((trigger, event_id)) or EventState(trigger, event_id)

    def passed(self, trigger: str, event_id: str) -> bool:
        state = self.known.get((trigger, event_id))
        return state is not None and state.passed


@dataclass
class Verdict:
    """One trigger's decision on a notice, and the event as it stands after it."""

    decision: Decision
    event: EventState | None  # None: no event (the notice has no id, or the trigger failed)
    trigger: CompiledTrigger = field(compare=False)
    values: dict[str, Any] = field(default_factory=dict, compare=False)  # for action templates
    extra: Callable[[str], Any] | None = field(default=None, compare=False)  # the sky map ...


def notice_extras(
    providers: Iterable[NoticeProvider],
    notice: Notice,
    doc: Any,
) -> ExtraFactories:
    """The per-notice lazy values of the rule set's providers (the LVK sky map)."""
    extras: ExtraFactories = {}
    for provide in providers:
        extras.update(provide(notice, doc) or {})
    return extras


def read_notice(
    triggers: Sequence[CompiledTrigger],
    notice: Notice,
    notice_id: int | None,
    doc: Any,
    clock: float,
    extras: ExtraFactories | None = None,
) -> ReadNotice:
    """Every trigger's fields read from the parsed notice; a trigger that fails says why."""
    extras = extras or {}
    readings = []
    for trigger in triggers:
        try:
            readings.append(TriggerReading(trigger, read(trigger, notice, doc, clock, extras)))
        except Exception as err:  # one trigger's failure never stops the others
            readings.append(TriggerReading(trigger, None, exception_tail(err)))
    return ReadNotice(notice, notice_id, tuple(readings), extras)


def wanted(read: ReadNotice, rules: RuleSet, history_readers: frozenset[str]) -> list[EventKey]:
    """The event states `decide` needs: each named event, and when a trigger asks `passed()`,
    every trigger's event of the same id."""
    keys = read.event_ids()
    if any(r.trigger.id in history_readers for r in read.readings):
        ids = {event_id for _, event_id in keys}
        keys += [(t.id, event_id) for t in rules.triggers for event_id in ids]
    return list(dict.fromkeys(keys))


def decide(
    rules: RuleSet,
    states: EventStates,
    read: ReadNotice,
    clock: float,
    source: Source = Source.NOTICE,
) -> tuple[Verdict, ...]:
    """Each trigger's decision on the notice, in priority order, without side effects."""
    passed_here: set[EventKey] = set()  # passed on this notice, at a higher priority

    def history(trigger: str, event_id: str) -> bool:
        return (trigger, event_id) in passed_here or states.passed(trigger, event_id)

    extras = {**read.extras, "history": lambda: history}
    verdicts = []
    for reading in read.readings:
        verdict = _judge(rules, states, read, reading, clock, source, extras)
        decision = verdict.decision
        if decision.passed and decision.event_id is not None:
            passed_here.add((decision.trigger, decision.event_id))
        verdicts.append(verdict)
    return tuple(verdicts)


def _judge(
    rules: RuleSet,
    states: EventStates,
    read: ReadNotice,
    reading: TriggerReading,
    clock: float,
    source: Source,
    extras: ExtraFactories,
) -> Verdict:
    trigger, seen = reading.trigger, reading.reading
    try:
        if seen is None:
            return undecided(rules, trigger, read.notice_id, source, clock, reading.error)
        if isinstance(seen.event_id, Missing):
            why = seen.event_id.reason
            unknown = Conclusion.NOT_APPLICABLE
            return undecided(rules, trigger, read.notice_id, source, clock, why, unknown)
        before = states.get(trigger.id, seen.event_id)
        # A context of its own: the reading stays as it was, whatever state it is folded into.
        ctx = Context(dict(seen.ctx.values), clock, extras)
        mine = Reading(ctx, seen.event_id, seen.event_time)
        event_time = earliest(before.event_time, seen.event_time)
        factors, votes = fold(trigger, mine, event_time, before.factors, before.factors_from)
        seq = before.seq + 1
        after = EventState(
            trigger.id,
            before.event_id,
            before.pk,
            event_time,
            factors,
            seq,
            notice_label(seq, read.notice.topic, read.notice.time),
            before.passed or conclude(votes, source) is Conclusion.PASS,
        )
        decision = decision_on(rules, trigger, after, read.notice_id, source, clock, votes)
        return Verdict(decision, after, trigger, ctx.values, ctx.extra)
    except Exception as err:  # one trigger's failure never stops the others
        return undecided(rules, trigger, read.notice_id, source, clock, exception_tail(err))


def decision_on(
    rules: RuleSet,
    trigger: CompiledTrigger,
    event: EventState,
    notice_id: int | None,
    source: Source,
    clock: float,
    votes: Vote,
) -> Decision:
    """The decision on an event as it stands (its factors and notice count) given the votes."""
    return Decision(
        trigger.id,
        event.event_id,
        source,
        clock,
        trigger.mode,
        votes,
        conclude(votes, source),
        event.factors or (),
        seq=event.seq,
        notice_id=notice_id,
        rule_file=trigger.path,
        rule_revision=trigger.revision,
        rule_commit=rules.git_commit,
    )


def undecided(
    rules: RuleSet,
    trigger: CompiledTrigger,
    notice_id: int | None,
    source: Source,
    clock: float,
    why: str | None,
    conclusion: Conclusion = Conclusion.ERROR,
) -> Verdict:
    """A decision without an event: no event id in the notice, or the trigger failed."""
    decision = Decision(
        trigger.id,
        None,
        source,
        clock,
        trigger.mode,
        Vote.UNKNOWN,
        conclusion,
        error=why,
        notice_id=notice_id,
        rule_file=trigger.path,
        rule_revision=trigger.revision,
        rule_commit=rules.git_commit,
    )
    return Verdict(decision, None, trigger)


def history_readers(rules: RuleSet) -> frozenset[str]:
    """Triggers whose conditions or computed fields call `passed()`, as the compiler
    recorded the functions each calls."""
    return frozenset(
        t.id
        for t in rules.triggers
        if any("passed" in c.functions for c in t.conditions)
        or any("passed" in f.functions for f in t.fields)
    )
