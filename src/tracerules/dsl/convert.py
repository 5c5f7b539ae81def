"""Explicit conversions of raw notice values, shared by field selectors and built-ins.

Each converter takes a raw value (a JSON value, or the stripped text of an XML node) and
returns the converted value or a Missing with the reason; none of them raises.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from tracerules.dsl.values import DEGREES_PER_UNIT, SECONDS_PER_UNIT, Missing, Type

Converter = Callable[[Any], Any]

_TRUE: Final = frozenset({"true", "yes", "1", "t", "y", "on"})
_FALSE: Final = frozenset({"false", "no", "0", "f", "n", "off"})
_DURATION_RE: Final = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-z]*)\s*$")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _finite(value: int | float, raw: Any) -> Any:
    """A finite float, or a Missing: NaN, infinities and integers beyond a double's range
    would poison every comparison and every JSON body downstream."""
    try:
        number = float(value)
    except OverflowError:
        return Missing(f"{_show(raw)} is too large for a number")
    return number if math.isfinite(number) else Missing(f"{_show(raw)} is not a finite number")


def to_float(value: Any) -> Any:
    if isinstance(value, bool):
        return Missing(f"expected a number, got the boolean {value}")
    if isinstance(value, int | float):
        return _finite(value, value)
    if isinstance(value, str):
        text = value.strip()
        try:
            number = int(text, 16) if text[:2].lower() == "0x" else float(text)
        except (ValueError, OverflowError):
            return Missing(f"{_show(value)} is not a number")
        return _finite(number, value)
    return Missing(f"expected a number, got {_show(value)}")


def to_int(value: Any) -> Any:
    """Decimal or hexadecimal (0x...) integers; a float converts only when it is whole."""
    if isinstance(value, bool):
        return Missing(f"expected an integer, got the boolean {value}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return Missing(f"{value} is not a finite number")
        return int(value) if value.is_integer() else Missing(f"{value} is not a whole number")
    if isinstance(value, str):
        text = value.strip()
        try:
            if text[:2].lower() in ("0x", "-0x"):
                return int(text, 16)
            return int(text)
        except ValueError:  # also beyond int's 4,300-digit limit: then not a finite float
            number = to_float(text)
            if isinstance(number, float) and number.is_integer():
                return int(number)
            return Missing(f"{_show(value)} is not an integer")
    return Missing(f"expected an integer, got {_show(value)}")


def to_bool(value: Any) -> Any:
    """true/false/yes/no/0/1 (any case), or a number where 0 is false."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isnan(value):
        return Missing("NaN is not a boolean")
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        number = to_float(text)
        if isinstance(number, float):
            return number != 0
        return Missing(f"{_show(value)} is not a boolean")
    return Missing(f"expected a boolean, got {_show(value)}")


def to_string(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return Missing(f"{value} is not a finite number")
    if isinstance(value, int | float):
        return (
            repr(value)
            if isinstance(value, float) and not value.is_integer()
            else str(int(value) if isinstance(value, float) else value)
        )
    return Missing(f"expected a single value, got {_show(value)}")


def to_time(value: Any) -> Any:
    """ISO 8601 to POSIX seconds; a time without a zone is UTC."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _finite(value, value)
    if not isinstance(value, str):
        return Missing(f"expected a time, got {_show(value)}")
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    except (ValueError, OverflowError):
        return Missing(f"{_show(value)} is not an ISO 8601 time")


def to_duration(value: Any) -> Any:
    """Seconds from a number, or from text such as '90 min' or '2 h'."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _finite(value, value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value.lower())
        if match:
            number, unit = float(match.group(1)), match.group(2) or "s"
            if unit in SECONDS_PER_UNIT:
                return _finite(number * SECONDS_PER_UNIT[unit], value)
        return Missing(f"{_show(value)} is not a duration")
    return Missing(f"expected a duration, got {_show(value)}")


def to_angle(value: Any) -> Any:
    """Degrees from a number, or from text such as '5 deg' or '30 arcmin'."""
    if isinstance(value, str):
        match = _DURATION_RE.match(value.lower())
        if match and match.group(2) in DEGREES_PER_UNIT:
            return _finite(float(match.group(1)) * DEGREES_PER_UNIT[match.group(2)], value)
    number = to_float(value)
    if isinstance(number, float) and not math.isfinite(number):
        return Missing(f"{_show(value)} is not a finite angle")
    return number


def to_list(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(value)
    return (value,)


def keep(value: Any) -> Any:
    """`as: auto`: JSON values stay as they are; XML text stays a stripped string."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        return tuple(value)
    return value


# The `as:` conversions a field may declare, with the static type each produces.
CONVERSIONS: Final[dict[str, tuple[Converter, Type]]] = {
    "auto": (keep, Type.ANY),
    "float": (to_float, Type.NUMBER),
    "int": (to_int, Type.NUMBER),
    "bool": (to_bool, Type.BOOL),
    "string": (to_string, Type.STRING),
    "time": (to_time, Type.TIME),
    "duration": (to_duration, Type.DURATION),
    "angle": (to_angle, Type.ANGLE),
    "list": (to_list, Type.LIST),
}
