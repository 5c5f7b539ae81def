"""The expression language's conformance table: expression, context, expected result.

Each row is evaluated through the real parser and compiler. `ERR:Exxx` rows must fail to
compile with that code; `MISSING` rows must give a missing value (an UNKNOWN vote).
"""

from __future__ import annotations

from typing import Any

import pytest

from tracerules.dsl.compiler import compile_expression
from tracerules.dsl.context import Context
from tracerules.dsl.values import Missing, Type, Vote
from tracerules.errors import DslError

T0 = 1_700_000_000.0  # the event time in these rows
NAMES = {
    "far": Type.NUMBER,
    "snr": Type.NUMBER,
    "n": Type.NUMBER,
    "name": Type.STRING,
    "kind": Type.STRING,
    "t": Type.TIME,
    "ra": Type.ANGLE,
    "dec": Type.ANGLE,
    "err": Type.ANGLE,
    "ok": Type.BOOL,
    "bad": Type.BOOL,
    "gone": Type.ANY,
    "raw": Type.ANY,
    "ids": Type.LIST,
    "event_time": Type.TIME,
    "wait": Type.DURATION,
}
VALUES: dict[str, Any] = {
    "far": 3e-9,
    "snr": 8.5,
    "n": 0x20000003,
    "name": "GRB 231101A",
    "kind": "BNS",
    "t": T0 + 60,
    "ra": 120.0,
    "dec": -45.5,
    "err": 0.05,
    "ok": True,
    "bad": False,
    "gone": Missing("no match for $.gone"),
    "raw": " 4.40",
    "ids": ("745121685", "bn240812094"),
    "event_time": T0,
    "wait": 600.0,
}
NOW = T0 + 3600  # one hour after the event

MISSING = object()

CASES: list[tuple[str, Any]] = [
    # arithmetic
    ("1 + 2 * 3", 7),
    ("(1 + 2) * 3", 9),
    ("7 / 2", 3.5),
    ("7 % 4", 3),
    ("2 ** 10", 1024),
    ("-snr", -8.5),
    ("n % 65536", 3),
    ("n & 0xFFFF", 3),
    ("0x10 + 1", 17),
    ("1 / 0", MISSING),
    # comparisons, chained
    ("1e-10 <= far < 1e-8", True),
    ("1e-10 <= far < 1e-9", False),
    ("snr > 8", True),
    ("snr == 8.5", True),
    ("snr != 8.5", False),
    ("0 < snr < 5 < 100", False),
    ("name == 'GRB 231101A'", True),
    # logic, missing-aware (Kleene)
    ("ok and not bad", True),
    ("ok or bad", True),
    ("bad and gone > 1", False),
    ("ok or gone > 1", True),
    ("ok and gone > 1", MISSING),
    ("not (gone > 1)", MISSING),
    ("gone > 1", MISSING),
    # membership
    ("kind in ['BNS', 'NSBH']", True),
    ("kind not in ['BNS', 'NSBH']", False),
    ("'GRB' in name", True),
    ("'bn240812094' in ids", True),
    ("gone in [1, 2]", MISSING),
    # votes
    ("case when snr > 10 then PASS when snr > 5 then MAYBE else FAIL end", Vote.MAYBE),
    ("case when snr > 1 then PASS else FAIL end", Vote.PASS),
    ("case when gone > 1 then PASS else FAIL end", MISSING),
    ("case when snr > 100 then PASS end", MISSING),
    ("PASS", Vote.PASS),
    ("case when snr > 100 then PASS else UNKNOWN end", Vote.UNKNOWN),
    ("gone > 1 and far < 1", MISSING),
    ("gone > 1 and far > 1", False),
    ("gone > 1 or far > 1", MISSING),
    ("gone > 1 or far < 1", True),
    # units and time
    ("90 min", 5400.0),
    ("2 h + 30 min", 9000.0),
    ("5 deg", 5.0),
    ("30 arcmin", 0.5),
    ("err < 5 arcmin", True),
    ("age() <= 1 h", True),
    ("age() < 59 min", False),
    ("age(t) == 59 min", True),
    ("t - event_time == 1 min", True),
    ("wait < 15 min", True),
    ("now() - event_time", 3600.0),
    ("mjd(time('1858-11-17T00:00:00'))", 0.0),
    ("iso(event_time)", "2023-11-14T22:13:20Z"),
    # strings and regex
    ("startswith(name, 'GRB')", True),
    ("endswith(name, 'A')", True),
    ("matches(name, '^GRB \\d{6}[A-Z]$')", True),
    ("extract(name, '(\\d+)')", "231101"),
    ("extract(name, 'XRF(\\d+)')", MISSING),
    ("lower(kind)", "bns"),
    ("len(ids)", 2),
    # existence and defaults
    ("exists(gone)", False),
    ("missing(gone)", True),
    ("default(gone, 7)", 7),
    ("coalesce(gone, far)", 3e-9),
    ("first(ids)", "745121685"),
    ("first([])", MISSING),
    # conversions: the traps of real notices
    ("float(raw)", 4.4),
    ("int('0x20000003')", 0x20000003),
    ("int(' 42 ')", 42),
    ("int('4.5')", MISSING),
    ("bool('yes')", True),
    ("bool('0')", False),
    ("bool(2)", True),
    ("bool('maybe')", MISSING),
    ("str(12)", "12"),
    ("duration('90 min')", 5400.0),
    ("time('2023-11-14T22:13:20')", T0),
    ("time('2023-11-14T23:13:20+01:00')", T0),
    ("time('yesterday')", MISSING),
    # sky
    ("round(sep(0, 0, 90, 0), 9)", 90.0),
    ("round(sep(ra, dec, ra, dec + 1 deg), 9)", 1.0),
    ("sep(10, 20, 10, 20.0001) < 1 arcsec", True),
    ("round(gal_lat(10, 20), 3)", -42.79),  # astropy: -42.79039
    ("abs(gal_lat(266.40499, -28.93617)) < 1 arcsec", True),  # Sgr A*
    ("abs(gal_lat(192.85948, 27.12825)) > 89.99 deg", True),
    ("sep(0, 95, 0, 0)", MISSING),
    # math
    ("max(1, snr, 3)", 8.5),
    ("min(5 min, wait)", 300.0),
    ("round(log10(far), 2)", -8.52),
    ("sqrt(-1)", MISSING),
    ("abs(-2 deg)", 2.0),
    ("floor(2.7) + ceil(2.1)", 5),
    ("hypot(3 deg, 4 deg)", 5.0),
    ("hypot(err, 3 deg) < 5 deg", True),
    ("format_time(event_time, '%Y%m%dT%H%M%S')", "20231114T221320"),
    ("replace(name, ' ', '_')", "GRB_231101A"),
    # compile-time errors
    ("snr >", "ERR:E201"),
    ("snr = 8", "ERR:E201"),
    ("5 parsecs", "ERR:E203"),
    ("snrr > 8", "ERR:E301"),
    ("sepp(1, 2, 3, 4)", "ERR:E302"),
    ("sep(1, 2)", "ERR:E303"),
    ("age() < 90", "ERR:E304"),
    # nullif: a sentinel becomes a missing value
    ("nullif(snr, 8.5)", MISSING),
    ("nullif(snr, 0)", 8.5),
    ("nullif(err, 0.05 deg)", MISSING),
    ("nullif(name, '')", "GRB 231101A"),
    ("nullif(ok, 1)", True),
    ("nullif(gone, 0)", MISSING),
    # a bare number beside an angle: arcmin or degrees? (zero is the same in every unit)
    ("err < 4", "ERR:E304"),
    ("4 > err", "ERR:E304"),
    ("0 < err < 4", "ERR:E304"),
    ("dec + 1", "ERR:E304"),
    ("ra - -30", "ERR:E304"),
    ("err < 4 arcmin", True),
    ("dec < 0", True),
    ("err * 2 < 7 arcmin", True),
    ("err / 2 < 2 arcmin", True),
    ("snr > 4", True),
    ("snr > 'high'", "ERR:E304"),
    ("name + 1", "ERR:E304"),
    ("t + t", "ERR:E304"),
    ("lower(snr)", "ERR:E304"),
    ("snr and ok", "ERR:E304"),
    ("snr in 5", "ERR:E304"),
    ("matches(name, '(')", "ERR:E305"),
    ("matches(name, kind)", "ERR:E305"),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_conformance(text: str, expected: Any) -> None:
    if isinstance(expected, str) and expected.startswith("ERR:"):
        with pytest.raises(DslError) as info:
            compile_expression(text, NAMES)
        assert info.value.code == expected[4:]
        assert info.value.col >= 1
        return
    compiled = compile_expression(text, NAMES)
    value = compiled.fn(Context(dict(VALUES), NOW))
    if expected is MISSING:
        assert isinstance(value, Missing), value
        assert value.reason
    elif isinstance(expected, float):
        assert value == pytest.approx(expected, rel=1e-9, abs=1e-12)
    else:
        assert value == expected
        assert type(value) is type(expected) or isinstance(expected, int | float)


@pytest.mark.parametrize(
    ("text", "vote", "reason"),
    [
        ("snr > 8", Vote.PASS, None),
        ("snr > 9", Vote.FAIL, None),
        ("gone > 1", Vote.UNKNOWN, "no match for $.gone"),
        ("case when snr > 5 then MAYBE else FAIL end", Vote.MAYBE, None),
        ("case when snr > 50 then PASS else UNKNOWN end", Vote.UNKNOWN, "abstains"),
    ],
)
def test_conditions_vote(text: str, vote: Vote, reason: str | None) -> None:
    compiled = compile_expression(text, NAMES, condition=True)
    result = compiled.fn(Context(dict(VALUES), NOW))
    if vote is Vote.UNKNOWN:
        assert isinstance(result, Missing)
        assert reason is not None and reason in result.reason
    else:
        assert result is vote


def test_a_number_is_not_a_condition() -> None:
    with pytest.raises(DslError) as info:
        compile_expression("snr + 1", NAMES, condition=True)
    assert info.value.code == "E306"


def test_error_positions_point_at_the_offender() -> None:
    with pytest.raises(DslError) as info:
        compile_expression("snr > 8 and nosuch < 3", NAMES)
    assert (info.value.line, info.value.col, info.value.length) == (1, 13, 6)
    assert info.value.hint == "declare it under fields:"


def test_constants_fold_at_load() -> None:
    compiled = compile_expression("2 h + 30 min", NAMES)
    assert compiled.is_const and compiled.const == 9000.0 and compiled.type is Type.DURATION
    assert not compile_expression("snr + 1", NAMES).is_const


def test_context_functions_are_shown_beside_the_vote_and_computed_once() -> None:
    compiled = compile_expression("age(t) < 1 h and now() > t", NAMES, condition=True)
    assert [text for text, _ in compiled.shown] == ["now()"]  # age(t) reads a field: not shown
    ctx = Context({"t": 1000.0}, 2000.0)
    assert compiled.fn(ctx) is Vote.PASS
    ctx.now = 5000.0  # the figure shown is the one the vote used, not computed again
    [(_, now)] = compiled.shown
    assert now(ctx) == 2000.0
