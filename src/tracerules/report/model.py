"""What a report or a dashboard page shows, read from the store: summaries and trigger sections.

Plain data only; the templates lay it out. Everything here reads through the store's read
model (`tracerules.runtime.store.history` for whole events, the store's methods for totals).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tracerules.rules.compile import CompiledTrigger, RuleSet
from tracerules.runtime.engine.decisions import Decision
from tracerules.runtime.store import history
from tracerules.runtime.store.history import EventView, NoticeRef
from tracerules.runtime.store.store import Store

PROBLEM_ROWS = 200  # error decisions and dead letters listed in full; the rest are counted


@dataclass
class TriggerStats:
    """Per-trigger totals, from the store."""

    events: int = 0
    events_passed: int = 0
    decisions: dict[str, int] = field(default_factory=dict)
    actions: int = 0


@dataclass
class TriggerInfo:
    """A trigger as the rules describe it now, or as the store remembers it."""

    id: str
    known: bool  # False when the trigger is in the store but not in the current rules
    description: str = ""
    priority: int | None = None
    mode: str = ""
    topics: tuple[str, ...] = ()
    rule_file: str = ""
    revision: str = ""
    conditions: dict[str, str] = field(default_factory=dict)
    stats: TriggerStats = field(default_factory=TriggerStats)


@dataclass
class Section:
    """A trigger and the events shown under it."""

    info: TriggerInfo
    events: list[EventView]
    hidden: int = 0  # events left out by a limit


@dataclass
class Summary:
    notices: dict[str, int]
    decisions: dict[str, int]
    actions: dict[str, int]
    events: int
    dead_letters: int
    first_notice: float | None
    last_notice: float | None
    triggers: list[TriggerInfo]

    @property
    def notices_total(self) -> int:
        return sum(self.notices.values())

    @property
    def actions_total(self) -> int:
        return sum(self.actions.values())


def trigger_info(trigger: CompiledTrigger) -> TriggerInfo:
    return TriggerInfo(
        trigger.id,
        True,
        trigger.description or "",
        trigger.priority,
        trigger.mode,
        trigger.topics,
        trigger.path,
        trigger.revision,
        {c.name: c.text for c in trigger.conditions},
    )


def trigger_stats(store: Store) -> dict[str, TriggerStats]:
    """Events, events that passed, decisions by conclusion and actions, per trigger."""
    totals = store.trigger_totals()
    stats: dict[str, TriggerStats] = {}

    def of(trigger: str) -> TriggerStats:
        return stats.setdefault(trigger, TriggerStats())

    for trigger, count in totals.events.items():
        of(trigger).events = count
    for trigger, count in totals.events_passed.items():
        of(trigger).events_passed = count
    for (trigger, conclusion), count in totals.decisions.items():
        of(trigger).decisions[conclusion] = count
    for trigger, count in totals.actions.items():
        of(trigger).actions = count
    return stats


def triggers(store: Store, rules: RuleSet | None) -> list[TriggerInfo]:
    """The rules' triggers in evaluation order, then any the store knows and the rules lack."""
    stats = trigger_stats(store)
    known = sorted(rules.triggers if rules else (), key=lambda t: (t.priority, t.id))
    infos = [trigger_info(t) for t in known]
    names = {t.id for t in known}
    infos += [TriggerInfo(name, False) for name in sorted(stats) if name not in names]
    for info in infos:
        info.stats = stats.get(info.id, TriggerStats())
        if not info.known:
            info.rule_file, info.revision = _last_revision(store, info.id)
    return infos


def _last_revision(store: Store, trigger: str) -> tuple[str, str]:
    return store.last_revision(trigger) or ("", "")


def summary(store: Store, rules: RuleSet | None) -> Summary:
    totals = store.totals()
    first, last = store.notice_span()
    return Summary(
        totals.notices,
        totals.decisions,
        totals.actions,
        totals.events,
        totals.dead_letters,
        first,
        last,
        triggers(store, rules),
    )


def sections(
    store: Store,
    infos: Sequence[TriggerInfo],
    *,
    since: float | None = None,
    until: float | None = None,
    max_events: int | None = None,
) -> list[Section]:
    """Each trigger with its events (oldest first); triggers without events are left out."""
    out = []
    for info in infos:
        if not info.stats.events:
            continue
        views = history.events(store, trigger=info.id, since=since, until=until, limit=max_events)
        shown = len(views)
        total = info.stats.events if since is None and until is None else shown
        out.append(Section(info, views, max(0, total - shown)))
    return out


def columns(event: EventView) -> list[str]:
    """The factor names of an event's decisions, in order of first appearance."""
    names: dict[str, None] = {}
    for decision in event.decisions:
        names.update((f.name, None) for f in decision.factors)
    return list(names)


def notice_of(event: EventView, decision: Decision) -> NoticeRef | None:
    return next((n for n in event.notices if n.id == decision.notice_id), None)


def problems(store: Store) -> dict[str, Any]:
    """Error decisions and dead letters, the first few in full."""
    return {
        "errors": store.error_decisions(PROBLEM_ROWS),
        "dead": store.dead_letter_rows(PROBLEM_ROWS),
        "limit": PROBLEM_ROWS,
    }
