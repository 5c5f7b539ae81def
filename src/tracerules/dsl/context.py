"""What a compiled expression sees when it runs: one notice's field values and the clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tracerules.dsl.values import Missing


class Context:
    """Evaluation context for one trigger on one notice.

    `values` maps field names (and the predeclared names) to values; `now` is the evaluation
    clock in POSIX seconds, which is the notice's time, never the wall clock. `extras` gives
    lazily computed, per-notice things such as a decoded sky map: functions that need one ask
    for it by name, so nothing is decoded unless a condition or product uses it.
    """

    __slots__ = ("_extras", "extra_factories", "now", "values")

    def __init__(
        self,
        values: dict[str, Any],
        now: float,
        extra_factories: dict[str, Callable[[], Any]] | None = None,
    ) -> None:
        self.values = values
        self.now = now
        self.extra_factories = extra_factories or {}
        self._extras: dict[str, Any] = {}

    def extra(self, name: str) -> Any:
        """A lazily built per-notice value (computed once), or Missing when unavailable."""
        if name in self._extras:
            return self._extras[name]
        factory = self.extra_factories.get(name)
        if factory is None:
            value: Any = Missing(f"no {name} in this notice")
        else:
            try:
                value = factory()
            except Exception as err:  # a broken payload must not stop evaluation
                value = Missing(f"{name} could not be read: {err}")
        self._extras[name] = value
        return value

    def once(self, key: str, compute: Callable[[], Any]) -> Any:
        """`compute()` the first time `key` is asked for in this context, then its result."""
        if key not in self._extras:
            self._extras[key] = compute()
        return self._extras[key]
