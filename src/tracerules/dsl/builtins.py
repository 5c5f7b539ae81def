"""The core built-in functions, and how a table of built-ins is assembled.

The full table a rule set compiles against is core + the sky-map and observability functions
of `tracerules.products.sky`, assembled by :func:`tracerules.rules.functions.builtin_functions`
and passed to the compiler: no module adds itself to a table when imported. That table drives
type checks, `tracerules functions` and docs.

Implementations receive plain values (never Missing, unless the function says it handles
missing values) and may raise ValueError/TypeError/ArithmeticError: the compiler turns those
into a Missing with the reason, so a bad value gives an UNKNOWN vote, never a crash.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

from tracerules.dsl import convert
from tracerules.dsl.context import Context
from tracerules.dsl.values import Missing, Type
from tracerules.products.sky.galactic import icrs_to_galactic

SAME_AS_FIRST: Final = "same-as-first"  # the return type follows the first argument's


@dataclass(frozen=True, slots=True)
class Builtin:
    name: str
    params: tuple[Type, ...]
    returns: Type | str
    impl: Callable[..., Any]
    doc: str
    category: str
    optional: int = 0  # how many trailing parameters may be left out
    variadic: bool = False  # the last parameter repeats
    handles_missing: bool = False  # receives Missing arguments instead of propagating them
    needs_context: bool = False  # receives the evaluation Context first
    regex_arg: int | None = None  # this argument must be a literal regex, compiled at load
    site_arg: int | None = None  # this argument must name a declared site, resolved at load
    figure: bool = False  # shown beside the vote with its unit, even when it reads fields
    same_types: bool = False  # every argument must have the first one's type (min, max)

    @property
    def min_args(self) -> int:
        return len(self.params) - self.optional

    @property
    def max_args(self) -> int | None:
        return None if self.variadic else len(self.params)

    def signature(self) -> str:
        parts = []
        for i, param in enumerate(self.params):
            name = "site" if i == self.site_arg else param.value
            text = name + ("..." if self.variadic and i == len(self.params) - 1 else "")
            parts.append(f"[{text}]" if i >= self.min_args else text)
        returns = self.returns.value if isinstance(self.returns, Type) else self.returns
        return f"{self.name}({', '.join(parts)}) -> {returns}"


# --- sky: pure maths, degrees in and out -------------------------------------------------


def separation(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Great-circle distance in degrees (Vincenty's formula: exact at all angles)."""
    l1, b1, l2, b2 = map(math.radians, (ra1, dec1, ra2, dec2))
    dl = l2 - l1
    num1 = math.cos(b2) * math.sin(dl)
    num2 = math.cos(b1) * math.sin(b2) - math.sin(b1) * math.cos(b2) * math.cos(dl)
    den = math.sin(b1) * math.sin(b2) + math.cos(b1) * math.cos(b2) * math.cos(dl)
    return math.degrees(math.atan2(math.hypot(num1, num2), den))


def _check_dec(dec: float) -> float:
    if not -90.0 <= dec <= 90.0:
        raise ValueError(f"declination {dec} is outside [-90, 90]")
    return dec


def _sep(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    return separation(ra1, _check_dec(dec1), ra2, _check_dec(dec2))


def _gal_lat(ra: float, dec: float) -> float:
    return icrs_to_galactic(ra, _check_dec(dec))[1]


def _gal_lon(ra: float, dec: float) -> float:
    return icrs_to_galactic(ra, _check_dec(dec))[0]


# --- time -----------------------------------------------------------------------------------

_MJD_EPOCH: Final = -3506716800.0  # 1858-11-17T00:00:00Z in POSIX seconds


def _age(ctx: Context, when: Any = None) -> Any:
    start = ctx.values.get("event_time") if when is None else when
    if start is None or isinstance(start, Missing):
        return start if isinstance(start, Missing) else Missing("the event has no time")
    return ctx.now - float(start)


def _passed(ctx: Context, trigger: Any = None) -> Any:
    history = ctx.extra("history")
    event_id = ctx.values.get("event_id")
    if isinstance(history, Missing) or not isinstance(event_id, str):
        return history if isinstance(history, Missing) else Missing("the event has no id yet")
    return bool(history(trigger or ctx.values.get("trigger"), event_id))


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


# --- existence --------------------------------------------------------------------------------


def _exists(value: Any) -> bool:
    return not isinstance(value, Missing)


def _default(value: Any, fallback: Any) -> Any:
    return fallback if isinstance(value, Missing) else value


def _nullif(value: Any, placeholder: Any) -> Any:
    # A number equals a number of the other kind (0 == 0.0), but true is not 1.
    kinds = {type(value), type(placeholder)}
    comparable = len(kinds) == 1 or kinds <= {int, float}
    if comparable and value == placeholder:
        return Missing(f"{value!r} is a placeholder value")
    return value


def _coalesce(*values: Any) -> Any:
    for value in values:
        if not isinstance(value, Missing):
            return value
    return Missing("every argument of coalesce() is missing")


def _first(value: Any) -> Any:
    if isinstance(value, tuple | list):
        if not value:
            raise ValueError("the list is empty")
        return value[0]
    return value


def _round(x: float, digits: int = 0) -> float:
    return round(x, int(digits))


def _extract(text: str, pattern: re.Pattern[str], group: int = 1) -> Any:
    match = pattern.search(text)
    if match is None:
        return Missing(f"{pattern.pattern!r} does not match")
    return match.group(int(group) if pattern.groups else 0)


def _hypot(*values: float) -> float:
    return math.hypot(*values)


def _format_time(t: float, fmt: str) -> str:
    return datetime.fromtimestamp(t, UTC).strftime(fmt)


def _len(value: Any) -> int:
    if isinstance(value, str | tuple | list):
        return len(value)
    raise TypeError(f"len() of {type(value).__name__}")


N, B, S, T, D, A, L, ANY = (
    Type.NUMBER,
    Type.BOOL,
    Type.STRING,
    Type.TIME,
    Type.DURATION,
    Type.ANGLE,
    Type.LIST,
    Type.ANY,
)

_TABLE: tuple[Builtin, ...] = (
    # math
    Builtin("abs", (ANY,), SAME_AS_FIRST, abs, "absolute value (keeps the unit)", "math"),
    Builtin(
        "min",
        (ANY, ANY),
        SAME_AS_FIRST,
        min,
        "smallest argument (of one unit)",
        "math",
        variadic=True,
        same_types=True,
    ),
    Builtin(
        "max",
        (ANY, ANY),
        SAME_AS_FIRST,
        max,
        "largest argument (of one unit)",
        "math",
        variadic=True,
        same_types=True,
    ),
    Builtin("round", (N, N), N, _round, "round to n digits (default 0)", "math", optional=1),
    Builtin("floor", (N,), N, math.floor, "largest integer not above x", "math"),
    Builtin("ceil", (N,), N, math.ceil, "smallest integer not below x", "math"),
    Builtin("sqrt", (N,), N, math.sqrt, "square root", "math"),
    Builtin("log10", (N,), N, math.log10, "base-10 logarithm", "math"),
    Builtin("ln", (N,), N, math.log, "natural logarithm", "math"),
    Builtin("exp", (N,), N, math.exp, "e to the power x", "math"),
    Builtin(
        "hypot",
        (ANY, ANY),
        SAME_AS_FIRST,
        _hypot,
        "sqrt(a**2 + b**2 + ...), keeping the unit: errors added in quadrature",
        "math",
        variadic=True,
        same_types=True,
    ),
    # strings
    Builtin("lower", (S,), S, str.lower, "lower-case text", "string"),
    Builtin("upper", (S,), S, str.upper, "upper-case text", "string"),
    Builtin("strip", (S,), S, str.strip, "text without surrounding white space", "string"),
    Builtin("len", (ANY,), N, _len, "length of a string or list", "string"),
    Builtin("startswith", (S, S), B, str.startswith, "text starts with prefix", "string"),
    Builtin("endswith", (S, S), B, str.endswith, "text ends with suffix", "string"),
    Builtin(
        "replace",
        (S, S, S),
        S,
        lambda s, old, new: s.replace(old, new),
        "text with every old replaced by new",
        "string",
    ),
    Builtin("contains", (S, S), B, lambda s, part: part in s, "text contains part", "string"),
    Builtin(
        "matches",
        (S, S),
        B,
        lambda s, rx: rx.search(s) is not None,
        "regular expression (literal, compiled at load) is found in text",
        "string",
        regex_arg=1,
    ),
    Builtin(
        "extract",
        (S, S, N),
        S,
        _extract,
        "the regex's group (default 1, or the whole match) found in text; missing if none",
        "string",
        optional=1,
        regex_arg=1,
    ),
    # existence and defaults
    Builtin("exists", (ANY,), B, _exists, "the value is present", "missing", handles_missing=True),
    Builtin(
        "missing",
        (ANY,),
        B,
        lambda v: not _exists(v),
        "the value is absent",
        "missing",
        handles_missing=True,
    ),
    Builtin(
        "default",
        (ANY, ANY),
        SAME_AS_FIRST,
        _default,
        "the value, or the fallback when it is missing",
        "missing",
        handles_missing=True,
    ),
    Builtin(
        "nullif",
        (ANY, ANY),
        SAME_AS_FIRST,
        _nullif,
        "missing when the value equals the placeholder, e.g. nullif(error, 0 deg); else the value",
        "missing",
    ),
    Builtin(
        "coalesce",
        (ANY, ANY),
        SAME_AS_FIRST,
        _coalesce,
        "the first argument that is present",
        "missing",
        variadic=True,
        handles_missing=True,
    ),
    Builtin(
        "first", (ANY,), ANY, _first, "the first item of a list; a single value as is", "missing"
    ),
    # conversions
    Builtin("float", (ANY,), N, convert.to_float, "convert to a number", "conversion"),
    Builtin(
        "int", (ANY,), N, convert.to_int, "convert to an integer (decimal or 0x hex)", "conversion"
    ),
    Builtin(
        "bool",
        (ANY,),
        B,
        convert.to_bool,
        "convert true/false/yes/no/0/1, or a number (0 is false)",
        "conversion",
    ),
    Builtin("str", (ANY,), S, convert.to_string, "convert to text", "conversion"),
    Builtin(
        "time", (ANY,), T, convert.to_time, "ISO 8601 text to a time (UTC if no zone)", "conversion"
    ),
    Builtin(
        "duration",
        (ANY,),
        D,
        convert.to_duration,
        "seconds, or text like '90 min', to a duration",
        "conversion",
    ),
    Builtin("deg", (ANY,), A, convert.to_angle, "a number of degrees to an angle", "conversion"),
    Builtin("seconds", (D,), N, lambda d: d, "a duration in seconds", "conversion"),
    Builtin("minutes", (D,), N, lambda d: d / 60.0, "a duration in minutes", "conversion"),
    Builtin("hours", (D,), N, lambda d: d / 3600.0, "a duration in hours", "conversion"),
    Builtin("days", (D,), N, lambda d: d / 86400.0, "a duration in days", "conversion"),
    # time
    Builtin(
        "now",
        (),
        T,
        lambda ctx: ctx.now,
        "the evaluation clock: the notice's time, never the wall clock",
        "time",
        needs_context=True,
    ),
    Builtin(
        "age",
        (T,),
        D,
        _age,
        "now() minus the event time, or minus the given time",
        "time",
        optional=1,
        needs_context=True,
    ),
    Builtin(
        "passed",
        (S,),
        B,
        _passed,
        "this trigger (or the one named) already passed this event: on an earlier notice, or "
        "on this one at a higher priority",
        "time",
        optional=1,
        needs_context=True,
    ),
    Builtin("mjd", (T,), N, lambda t: (t - _MJD_EPOCH) / 86400.0, "Modified Julian Date", "time"),
    Builtin("iso", (T,), S, _iso, "ISO 8601 text of a time, in UTC", "time"),
    Builtin(
        "format_time",
        (T, S),
        S,
        _format_time,
        "a time as text in UTC with strftime codes, e.g. '%Y%m%dT%H%M%S'",
        "time",
    ),
    # sky
    Builtin(
        "sep",
        (A, A, A, A),
        A,
        _sep,
        "great-circle separation of (ra1, dec1) and (ra2, dec2)",
        "sky",
    ),
    Builtin("gal_lat", (A, A), A, _gal_lat, "galactic latitude b of (ra, dec)", "sky"),
    Builtin("gal_lon", (A, A), A, _gal_lon, "galactic longitude l of (ra, dec)", "sky"),
)


def assemble(*groups: Iterable[Builtin]) -> Mapping[str, Builtin]:
    """A read-only table of the built-ins of every group, by name; a name defined twice
    differently is a ValueError (a function must not silently shadow another)."""
    table: dict[str, Builtin] = {}
    for group in groups:
        for builtin in group:
            if table.setdefault(builtin.name, builtin) != builtin:
                raise ValueError(f"built-in {builtin.name!r} is defined twice")
    return MappingProxyType(table)


#: The functions of the expression language itself (no sky maps, no sites): read-only.
CORE_BUILTINS: Final[Mapping[str, Builtin]] = assemble(_TABLE)
