"""Events: the notices of one trigger that share an event id, and their running state.

The state a decision needs (the event's time, its latest factors, whether it has passed)
lives in the store; a bounded cache keeps recent events in memory so a busy stream does not
re-read them, and memory stays flat however long the service runs. With capacity 0 (a
PostgreSQL store, which several services decide on) every state is read from the store.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from tracerules.dsl.values import Missing
from tracerules.runtime.engine.decisions import EventState
from tracerules.runtime.store.store import Store

__all__ = ["EVENT_CACHE", "EventBook", "EventState", "event_key"]

EVENT_CACHE = 4096  # events kept in memory (SQLite: one service per store)


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
    """Loads event states from the store, with a bounded in-memory cache of stored ones."""

    def __init__(self, store: Store, capacity: int = EVENT_CACHE) -> None:
        self.store = store
        self.capacity = capacity
        self._cache: OrderedDict[tuple[str, str], EventState] = OrderedDict()

    def states(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], EventState]:
        """The stored state of each (trigger, event id); events not stored are left out."""
        found = {}
        for key in keys:
            state = self._cache.get(key)
            if state is not None:
                self._cache.move_to_end(key)
            else:
                state = self.store.event_state(*key)
                if state is None:
                    continue
                self.remember(state)
            found[key] = state
        return found

    def remember(self, state: EventState) -> None:
        """Keep a stored state (after a decision persisted it)."""
        key = (state.trigger, state.event_id)
        self._cache[key] = state
        self._cache.move_to_end(key)
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)

    def forget(self) -> None:
        """Drop the cache (after a rollback, or when rules change)."""
        self._cache.clear()
