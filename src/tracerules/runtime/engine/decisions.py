"""Factors, inheritance and conclusions: the pure part of evaluation (behaviour.md section 2).

The first notice of an event sets each factor; a later notice replaces a factor only with a
definite vote, and otherwise the old vote stays, marked inherited. Expiry is factor 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import NamedTuple

from tracerules.dsl.values import Vote
from tracerules.timetext import utc_text

EXPIRY = "expiry"
ARBITRATION_PREFIX = "arbitration: "  # an observation's log starts with the ruling


class Source(str, Enum):
    NOTICE = "notice"  # automatic: MAYBE is demoted to FAIL
    MANUAL = "manual"  # a person's retrigger: MAYBE is promoted to PASS
    DRY_RUN = "dry-run"  # automatic, but never acts


class Conclusion(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"  # the trigger itself failed (a bug in a rule, a broken product)
    NOT_APPLICABLE = "NOT_APPLICABLE"  # the notice has no event id for this trigger


class Factor(NamedTuple):
    """One condition's vote on an event (or expiry's). A named tuple, not a frozen dataclass:
    a month's replay makes one for every condition of every decision, and a tuple is made
    several times faster."""

    name: str
    vote: Vote
    inherited: bool = False
    reason: str | None = None  # why this notice could not vote (UNKNOWN or inherited)
    detail: str | None = None  # the values the condition read, for people to check


class EventState(NamedTuple):
    """One trigger's event as it stood before a notice: what a decision folds the notice into.

    A value, not a row: `decide` reads it and returns the next one; the store keeps it. (A
    named tuple, as Factor, for the same reason: one for every decision.)"""

    trigger: str
    event_id: str
    pk: int | None = None  # None for an event no notice has joined yet (not stored)
    event_time: float | None = None  # the earliest parseable event time of its notices
    factors: tuple[Factor, ...] | None = None  # the latest decided factors, None before any
    seq: int = 0  # how many notices the event has
    factors_from: str | None = None  # the notice the latest factors were decided on
    passed: bool = False  # some decision on this event concluded PASS


def inherit(
    previous: Sequence[Factor] | None, fresh: Sequence[Factor], origin: str | None = None
) -> tuple[Factor, ...]:
    """This notice's votes over the event's previous factors: the newest definite vote wins.

    `origin` names the notice the previous factors were decided on: a vote kept from it says
    so beside its values (a vote kept twice already says where it came from)."""
    before = {f.name: f for f in previous or ()}
    out = []
    for factor in fresh:
        old = before.get(factor.name)
        if factor.vote.definite or old is None:
            out.append(factor)
        else:
            detail = old.detail if old.inherited or origin is None else _from(old.detail, origin)
            out.append(Factor(factor.name, old.vote, True, factor.reason, detail))
    return tuple(out)


def _from(detail: str | None, origin: str) -> str:
    return f"{detail}; from {origin}" if detail else f"from {origin}"


def notice_label(seq: int, topic: str, when: float) -> str:
    """Which notice of an event: its number in the event, its topic and its time (UTC)."""
    return f"notice {seq} ({_where(topic, when)})"


@lru_cache(maxsize=64)
def _where(topic: str, when: float) -> str:
    """A notice's short topic and time: the same for every trigger that reads the notice,
    so made once for them all (the time's formatting is most of a label's cost)."""
    for prefix in ("gcn.classic.voevent.", "gcn.notices."):
        topic = topic.removeprefix(prefix)
    return f"{topic}, {utc_text(when)}"


def tally(factors: Sequence[Factor]) -> Vote:
    """FAIL if any factor is FAIL or never determined; else MAYBE if any is; else PASS."""
    votes = {f.vote for f in factors}
    if Vote.FAIL in votes or Vote.UNKNOWN in votes:
        return Vote.FAIL
    if Vote.MAYBE in votes:
        return Vote.MAYBE
    return Vote.PASS


def conclude(votes: Vote, source: Source) -> Conclusion:
    """Automatic decisions demote MAYBE to FAIL; a manual retrigger promotes it to PASS."""
    if votes is Vote.PASS or (votes is Vote.MAYBE and source is Source.MANUAL):
        return Conclusion.PASS
    return Conclusion.FAIL


@dataclass
class ActionRecord:
    """An action a decision started (or would have started), as stored."""

    id: int
    position: int
    type: str
    label: str
    status: str
    idempotency_key: str
    log: str = ""
    files: list[str] = field(default_factory=list)

    @property
    def arbitration(self) -> str | None:
        """How observation arbitration ruled (start, override, repoint, clash), if it did."""
        head = self.log.partition("\n")[0]
        if not head.startswith(ARBITRATION_PREFIX):
            return None
        return head[len(ARBITRATION_PREFIX) :].partition(":")[0]


@dataclass
class Decision:
    """One evaluation of a trigger on an event."""

    trigger: str
    event_id: str | None
    source: Source
    at: float
    mode: str
    votes: Vote
    conclusion: Conclusion
    factors: tuple[Factor, ...] = ()
    seq: int = 0
    notice_id: int | None = None
    error: str | None = None
    id: int | None = None
    rule_file: str = ""
    rule_revision: str = ""
    rule_commit: str | None = None
    actor: str | None = None
    actions: list[ActionRecord] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.conclusion is Conclusion.PASS

    def factor(self, name: str) -> Factor | None:
        return next((f for f in self.factors if f.name == name), None)
