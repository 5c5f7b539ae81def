"""Current conditions, remembered between page views until something they depend on changes.

Current conditions replay an event's notices under today's rules. For an LVK alert that
means parsing a megabyte of JSON and decoding its sky map per notice, tens of milliseconds
each, so a trigger page of twenty superevents took seconds on every view. The replay depends
only on the rules (the loaded rule set, and the trigger's revision) and on the store's
decisions about the event id (its notices bring decisions; `passed()` reads the decisions of
other triggers on the same event id), so the result is kept under exactly that key.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Final

from tracerules.rules.compile import RuleSet
from tracerules.runtime.engine.decisions import Factor
from tracerules.runtime.store.store import Store

REMEMBERED: Final = 4096  # events; each entry is a handful of small factors

Key = tuple[int, str, str, str, int]
Conditions = tuple[Factor, ...] | None


def last_decisions(store: Store, rules: RuleSet, event_ids: Iterable[str]) -> dict[str, int]:
    """The newest decision id per event id, over every trigger (one indexed query)."""
    ids = sorted(set(event_ids))
    triggers = [t.id for t in rules.triggers]
    if not ids or not triggers:
        return {}
    return store.last_decision_ids(triggers, ids)


class ConditionsMemo:
    """A bounded, thread-safe memo of current conditions per (rules, trigger, event, state)."""

    def __init__(self, size: int = REMEMBERED) -> None:
        self.size = size
        self._values: OrderedDict[Key, Conditions] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(rules: RuleSet, trigger_id: str, event_id: str, last_decision: int) -> Key:
        trigger = rules.trigger(trigger_id)
        revision = trigger.revision if trigger is not None else ""
        return (id(rules), revision, trigger_id, event_id, last_decision)

    def get(self, key: Key, compute: Callable[[], Conditions]) -> Conditions:
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        value = compute()  # outside the lock: other pages need not wait for a replay
        with self._lock:
            self._values[key] = value
            while len(self._values) > self.size:
                self._values.popitem(last=False)
        return value
