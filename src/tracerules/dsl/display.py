"""Values as an astronomer reads them beside a vote: angles and durations in the unit the
condition was written in, times in UTC, long durations in days or years. Pure functions."""

from __future__ import annotations

from typing import Any, Final

from tracerules.dsl.values import DEGREES_PER_UNIT, SECONDS_PER_UNIT, Missing
from tracerules.timetext import utc_text

DURATION: Final = "duration"  # no unit written: the most readable of s, min, h, d, yr
TIME: Final = "time"
YEAR: Final = 365.25 * 86400.0
_READABLE: Final = (("yr", YEAR), ("d", 86400.0), ("h", 3600.0), ("min", 60.0))


def number(x: float) -> str:
    """Four significant figures (tenths from 100 up, units from 1000 up), never an exponent
    between 1e-4 and 1e6: 0.05, 2.984, 219.3, 1090."""
    size = abs(x)
    if x != 0 and (size >= 1e6 or size < 1e-4):
        return f"{x:.3g}"
    if size >= 1000:
        return f"{x:.0f}"
    return f"{x:.1f}" if size >= 100 else f"{x:.4g}"


def readable_duration(seconds: float) -> str:
    """A duration in its most readable unit: 45 s, 12 min, 3.5 h, 1090 d -> 2.984 yr."""
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    for unit, size in _READABLE:
        if seconds >= size:
            return f"{sign}{number(seconds / size)} {unit}"
    return f"{sign}{number(seconds)} s"


def show(value: Any, unit: str | None = None) -> str:
    """A value read by a condition; `unit` is an angle or duration unit word, DURATION or
    TIME for values of those kinds, None for anything else."""
    if unit is None and type(value) is float:  # most values, beside every vote
        return f"{value:.6g}"
    if isinstance(value, Missing):
        return "missing"
    if isinstance(value, bool) or not isinstance(value, int | float):
        text = repr(value) if isinstance(value, str) else str(value)
        return text if len(text) <= 40 else text[:37] + "..."
    if unit in DEGREES_PER_UNIT:
        return f"{number(value / DEGREES_PER_UNIT[unit])} {unit}"
    if unit in SECONDS_PER_UNIT:
        return f"{number(value / SECONDS_PER_UNIT[unit])} {unit}"
    if unit == DURATION:
        return readable_duration(value)
    if unit == TIME:
        return utc_text(value)
    return f"{value:.6g}" if isinstance(value, float) else str(value)
