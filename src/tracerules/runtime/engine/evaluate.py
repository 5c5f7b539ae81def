"""One trigger on one notice: read the fields, vote, and fold the votes into the event's factors.

No storage here: the engine calls these for live notices, and the replay of an event's notices
under the rules as they are now ("current conditions", retrigger) calls them too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tracerules.dsl.context import Context
from tracerules.dsl.display import readable_duration, show
from tracerules.dsl.values import Missing, Vote
from tracerules.rules.compile import CompiledTrigger
from tracerules.runtime.engine.decisions import EXPIRY, Factor, inherit, tally
from tracerules.runtime.engine.events import event_key
from tracerules.runtime.sources.notices import Notice

ExtraFactories = dict[str, Callable[[], Any]]


@dataclass
class Reading:
    """What one notice says for one trigger, before it is folded into the event."""

    ctx: Context
    event_id: str | Missing
    event_time: float | None  # this notice's own event time, when parseable


def read(
    trigger: CompiledTrigger,
    notice: Notice,
    doc: Any,
    now: float,
    extras: ExtraFactories | None = None,
) -> Reading:
    ctx = Context(
        {
            "topic": notice.topic,
            "trigger": trigger.id,
            "received": notice.received,
            "created": notice.created if notice.created is not None else Missing("no broker time"),
        },
        now,
        extras,
    )
    trigger.extract(doc, ctx)
    own_time = ctx.values.get(trigger.event_time)
    return Reading(
        ctx,
        event_key(ctx.values.get(trigger.event_id, Missing("no event id"))),
        own_time if isinstance(own_time, float) else None,
    )


def earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def expiry_factor(trigger: CompiledTrigger, event_time: float | None, now: float) -> Factor:
    """PASS while now - event time <= expiry, else MAYBE; UNKNOWN with no event time yet."""
    if event_time is None:
        return Factor(
            EXPIRY,
            Vote.UNKNOWN,
            reason=f"no notice of this event has a parseable '{trigger.event_time}'",
        )
    age = now - event_time
    within = age <= trigger.expiry
    detail = f"age {readable_duration(age)} {'<=' if within else '>'} expiry {trigger.expiry_text}"
    return Factor(EXPIRY, Vote.PASS if within else Vote.MAYBE, detail=detail)


def why_unknown(vote: Missing, names: tuple[str, ...], values: dict[str, Any]) -> str:
    """Why a condition could not vote: the fields it read that are missing, each with its
    own reason (`error is missing: no case matched (coords_type=0)`), else the vote's."""
    missing = [(n, values[n]) for n in names if isinstance(values.get(n), Missing)]
    if not missing:
        return vote.reason
    return "; ".join(f"{name} is missing: {value.reason}" for name, value in missing)


def votes(trigger: CompiledTrigger, ctx: Context) -> list[Factor]:
    """One factor per condition for this notice alone (UNKNOWN where it cannot say)."""
    out = []
    values = ctx.values
    for cond in trigger.conditions:
        vote = cond.vote(ctx)
        shown = [f"{n}={show(values[n], unit)}" for n, unit in cond.shown_units if n in values]
        if cond.shown:
            shown += [f"{text}={show(figure(ctx))}" for text, figure in cond.shown]
        detail = ", ".join(shown)
        if isinstance(vote, Missing):
            reason = why_unknown(vote, cond.names, values)
            out.append(Factor(cond.name, Vote.UNKNOWN, reason=reason, detail=detail))
        else:
            out.append(Factor(cond.name, vote, detail=detail))
    return out


def fold(
    trigger: CompiledTrigger,
    reading: Reading,
    event_time: float | None,
    previous: tuple[Factor, ...] | None,
    origin: str | None = None,
) -> tuple[tuple[Factor, ...], Vote]:
    """This notice's votes over the event's previous factors (decided on the notice `origin`
    names), and their tally."""
    ctx = reading.ctx
    ctx.values["event_time"] = (
        event_time if event_time is not None else Missing("the event has no time yet")
    )
    ctx.values["event_id"] = reading.event_id
    fresh = [expiry_factor(trigger, event_time, ctx.now), *votes(trigger, ctx)]
    factors = inherit(previous, fresh, origin)
    return factors, tally(factors)
