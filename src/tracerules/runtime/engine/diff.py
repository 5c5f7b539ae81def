"""What a rule change does: two replays of the same notices, compared event by event.

An event's *outcome* is PASS when any of its decisions passed (the trigger fired on it at some
point), and otherwise the conclusion of its last decision. An event *changes* when its outcome,
its last conclusion, or the actions it starts (which action on which of its notices) differ.
For each change, the *decisive notice* is the event's first notice whose decision differs, and
the *deciding factor* is the first factor whose vote differs on that notice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from tracerules.rules.compile import RuleSet
from tracerules.runtime.engine.decisions import Decision, Factor
from tracerules.runtime.store.history import EventView, events
from tracerules.runtime.store.store import Store


@dataclass(frozen=True)
class FactorChange:
    """The first factor whose vote differs on the decisive notice."""

    name: str
    before: str | None  # "PASS", "FAIL*" (inherited); None where the condition does not exist
    after: str | None
    before_detail: str | None = None  # the values the condition read
    after_detail: str | None = None
    before_text: str | None = None  # the condition's expression, when it changed
    after_text: str | None = None


@dataclass(frozen=True)
class EventChange:
    trigger: str
    event_id: str
    kind: str  # changed, added (the new rules only), removed (the old rules only)
    before: str | None  # the outcome: PASS, FAIL, ...; None when the event does not exist
    after: str | None
    actions_before: int
    actions_after: int
    step: int | None = None  # the decisive notice, counted from 1 within the event
    notice: str | None = None  # its file name, or its topic
    factor: FactorChange | None = None


@dataclass
class DiffReport:
    notices: int = 0
    events_before: int = 0
    events_after: int = 0
    firing_before: int = 0
    firing_after: int = 0
    changes: list[EventChange] = field(default_factory=list)
    silent: int = 0  # events one side has and the other not, that never fire: not reported

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def outcome(view: EventView) -> str:
    """PASS if the trigger fired on the event at some point, else its last conclusion."""
    if view.passed:
        return "PASS"
    return view.last.conclusion.value if view.last else "FAIL"


def _actions(view: EventView) -> list[tuple[int, str]]:
    return [(d.seq, a.label) for d in view.decisions for a in d.actions]


def compare(before: Store, after: Store, old: RuleSet, new: RuleSet) -> DiffReport:
    """Compare the events of two replays of the same notices, under `old` and `new` rules."""
    a = {(e.trigger, e.event_id): e for e in events(before)}
    b = {(e.trigger, e.event_id): e for e in events(after)}
    report = DiffReport(
        events_before=len(a),
        events_after=len(b),
        firing_before=sum(1 for e in a.values() if e.passed),
        firing_after=sum(1 for e in b.values() if e.passed),
    )
    texts = (_condition_texts(old), _condition_texts(new))
    order = sorted(a.keys() | b.keys(), key=lambda k: _when(a.get(k) or b[k]))
    for key in order:
        change = _change(a.get(key), b.get(key), texts)
        if change is not None:
            report.changes.append(change)
        elif (key in a) != (key in b):
            report.silent += 1
    return report


def _when(view: EventView) -> tuple[float, str, str]:
    first = view.notices[0].received if view.notices else 0.0
    return (view.event_time if view.event_time is not None else first, view.trigger, view.event_id)


ConditionTexts = Mapping[tuple[str, str], str]


def _condition_texts(rules: RuleSet) -> dict[tuple[str, str], str]:
    return {(t.id, c.name): c.text for t in rules.triggers for c in t.conditions}


def _change(
    a: EventView | None, b: EventView | None, texts: tuple[ConditionTexts, ConditionTexts]
) -> EventChange | None:
    if a is None or b is None:
        return _one_sided(a, b)
    same = outcome(a) == outcome(b) and _actions(a) == _actions(b)
    if same and a.last and b.last and a.last.conclusion == b.last.conclusion:
        return None
    step, da, db = _decisive(a, b)
    factor = _deciding_factor(a.trigger, da, db, texts) if da and db else None
    return EventChange(
        a.trigger,
        a.event_id,
        "changed",
        outcome(a),
        outcome(b),
        len(_actions(a)),
        len(_actions(b)),
        step,
        _notice_name(b, step),
        factor,
    )


def _one_sided(a: EventView | None, b: EventView | None) -> EventChange | None:
    """An event only one rule set has (a new or removed trigger, a new event id): reported
    only when it fires, since an event that never fires changes nothing."""
    view = a or b
    if view is None or not view.passed:
        return None
    first = next(d.seq for d in view.decisions if d.passed)
    return EventChange(
        view.trigger,
        view.event_id,
        "removed" if b is None else "added",
        outcome(a) if a else None,
        outcome(b) if b else None,
        len(_actions(a)) if a else 0,
        len(_actions(b)) if b else 0,
        first,
        _notice_name(view, first),
    )


def _decisive(a: EventView, b: EventView) -> tuple[int | None, Decision | None, Decision | None]:
    """The event's first notice on which the two decisions differ, and the two decisions."""
    da = {d.seq: d for d in a.decisions}
    db = {d.seq: d for d in b.decisions}
    for seq in sorted(da.keys() | db.keys()):
        x, y = da.get(seq), db.get(seq)
        if x is None or y is None or _differ(x, y):
            return seq, x, y
    return None, None, None


def _differ(x: Decision, y: Decision) -> bool:
    """A different conclusion, or different actions (votes alone change nothing)."""
    return x.conclusion != y.conclusion or [a.label for a in x.actions] != [
        a.label for a in y.actions
    ]


def _deciding_factor(
    trigger: str, x: Decision, y: Decision, texts: tuple[ConditionTexts, ConditionTexts]
) -> FactorChange | None:
    names = list(dict.fromkeys([f.name for f in y.factors] + [f.name for f in x.factors]))
    for name in names:
        fx, fy = x.factor(name), y.factor(name)
        if (fx.vote if fx else None) == (fy.vote if fy else None):
            continue
        old, new = texts[0].get((trigger, name)), texts[1].get((trigger, name))
        changed = old != new
        return FactorChange(
            name,
            _shown(fx),
            _shown(fy),
            fx.detail if fx else None,
            fy.detail if fy else None,
            old if changed else None,
            new if changed else None,
        )
    return None


def _shown(factor: Factor | None) -> str | None:
    if factor is None:
        return None
    return factor.vote.value + ("*" if factor.inherited else "")


def _notice_name(view: EventView, step: int | None) -> str | None:
    if step is None or not 1 <= step <= len(view.notices):
        return None
    ref = view.notices[step - 1]
    return ref.name or ref.topic
