"""Per-notice providers: lazily computed values that functions and actions read through the
evaluation context (`ctx.extra(name)`), such as the decoded LVK sky map.

The rule compiler chooses them from what the rules read and puts them on the rule set, so the
engine imports none of them: it asks the rule set's providers for each parsed notice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tracerules.products.sky.skymap_functions import skymap_extras

# callable(notice, parsed document) -> {name: factory}; a factory computes its value on demand
NoticeProvider = Callable[[Any, Any], Mapping[str, Callable[[], Any]] | None]


@dataclass(frozen=True)
class ProviderSpec:
    name: str  # the extra it provides
    formats: frozenset[str]  # the payload formats it can find it in
    provide: NoticeProvider


# The LVK alert sky map (`igwn.gwalert` JSON carrying `event.skymap`): sky-map functions in
# conditions (`area(0.9)`) and observation planning (pointings over the map) read it.
KNOWN_PROVIDERS: tuple[ProviderSpec, ...] = (
    ProviderSpec("skymap", frozenset({"json"}), skymap_extras),
)


def notice_providers(formats: Iterable[str]) -> tuple[NoticeProvider, ...]:
    """The providers rules reading payloads of these formats need, in a stable order."""
    read = set(formats)
    return tuple(p.provide for p in KNOWN_PROVIDERS if p.formats & read)
