"""Run-time values of the expression language: votes, the missing marker and static types.

Durations are float seconds, angles float degrees and times float POSIX seconds (UTC): the
types below exist only at compile time, so the hot path handles plain floats.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Final


class Vote(str, Enum):
    """What a condition says about an event."""

    PASS = "PASS"
    MAYBE = "MAYBE"
    FAIL = "FAIL"
    UNKNOWN = "UNKNOWN"  # could not be evaluated: a missing field or a failed conversion

    @property
    def definite(self) -> bool:
        return self is not Vote.UNKNOWN


class Missing:
    """A value that is not there, with the reason why; it propagates instead of raising."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Missing({self.reason!r})"

    def __bool__(self) -> bool:
        # A missing value must never pass for false by accident in an `if`.
        raise TypeError("Missing has no truth value; check isinstance(x, Missing)")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Missing) and other.reason == self.reason

    def __hash__(self) -> int:
        return hash(("Missing", self.reason))


def is_missing(value: Any) -> bool:
    return isinstance(value, Missing)


class Type(str, Enum):
    """Static types; ANY means 'known only at run time' and is never a compile error."""

    NUMBER = "number"
    BOOL = "bool"
    STRING = "string"
    TIME = "time"
    DURATION = "duration"
    ANGLE = "angle"
    LIST = "list"
    VOTE = "vote"
    ANY = "any"

    def fits(self, expected: Type) -> bool:
        """Whether a value of this type may go where `expected` is wanted."""
        if Type.ANY in (self, expected) or self is expected:
            return True
        # Plain numbers are degrees where an angle is wanted (a field read as float).
        return {self, expected} == {Type.NUMBER, Type.ANGLE}


NUMERIC: Final = frozenset({Type.NUMBER, Type.ANGLE, Type.DURATION, Type.TIME})

SECONDS_PER_UNIT: Final[dict[str, float]] = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "min": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
    "w": 604800.0,
    "week": 604800.0,
    "weeks": 604800.0,
}
DEGREES_PER_UNIT: Final[dict[str, float]] = {
    "deg": 1.0,
    "degree": 1.0,
    "degrees": 1.0,
    "arcmin": 1.0 / 60.0,
    "arcsec": 1.0 / 3600.0,
    "rad": 57.29577951308232,
}


def unit_type(unit: str) -> tuple[Type, float] | None:
    """The type and scale of a unit word, or None when the word is not a unit."""
    if unit in SECONDS_PER_UNIT:
        return Type.DURATION, SECONDS_PER_UNIT[unit]
    if unit in DEGREES_PER_UNIT:
        return Type.ANGLE, DEGREES_PER_UNIT[unit]
    return None


ALL_UNITS: Final = tuple(SECONDS_PER_UNIT) + tuple(DEGREES_PER_UNIT)


class WithUnit:
    """A figure as shown beside a vote: its value and unit, e.g. ``42.1 deg``."""

    __slots__ = ("type", "value")

    def __init__(self, value: Any, type_: Type) -> None:
        self.value, self.type = value, type_

    def __str__(self) -> str:
        value, type_ = self.value, self.type
        if isinstance(value, bool):
            return "true" if value else "false"
        if not isinstance(value, int | float):
            return str(value)
        if type_ is Type.TIME:
            return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")[:-6] + "Z"
        unit = {Type.ANGLE: " deg", Type.DURATION: " s"}.get(type_, "")
        return f"{value:.4g}{unit}" if abs(value) < 1e4 else f"{value:.6g}{unit}"


def show_with_unit(fn: Callable[[Any], Any], type_: Type) -> Callable[[Any], Any]:
    """`fn`'s value wrapped to print with its unit; a Missing value stays Missing."""

    def shown(ctx: Any) -> Any:
        value = fn(ctx)
        return value if isinstance(value, Missing) else WithUnit(value, type_)

    return shown
