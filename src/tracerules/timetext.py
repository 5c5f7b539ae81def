"""Times as text for people, safe on whatever a store holds.

A store written by an older tracerules, or by hand, may hold an infinite, NaN or far-future
time; every reader shows it as a marker instead of ending in a traceback.
"""

from __future__ import annotations

import math
import time
from typing import Any


def utc_text(seconds: Any, fmt: str = "%Y-%m-%dT%H:%M:%SZ", missing: str = "-") -> str:
    """POSIX seconds as UTC text with `fmt`; `missing` for None, and a marker for a value no
    calendar can show (infinite, NaN, out of range, not a number)."""
    if seconds is None:
        return missing
    try:
        value = float(seconds)
        if not math.isfinite(value):
            return f"(not a time: {value})"
        return time.strftime(fmt, time.gmtime(value))
    except (TypeError, ValueError, OverflowError, OSError):
        return f"(not a time: {str(seconds)[:40]})"
