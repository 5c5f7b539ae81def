"""Values beside a vote, as an astronomer reads them (issue 16, item 9): pure functions."""

from __future__ import annotations

import pytest

from tracerules.dsl.display import DURATION, TIME, readable_duration, show
from tracerules.dsl.values import Missing


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (0.05, "arcmin", "3 arcmin"),  # an error of 0.05 deg beside `< 4 arcmin`
        (3.0 / 3600, "arcsec", "3 arcsec"),
        (219.04, "deg", "219.0 deg"),
        (5400.0, "min", "90 min"),
        (1090 * 86400.0, DURATION, "2.984 yr"),
        (45.0, DURATION, "45 s"),
        (1_700_000_000.0, TIME, "2023-11-14T22:13:20Z"),
        (5.176954877338635e-16, None, "5.17695e-16"),  # a false-alarm rate keeps its exponent
        (Missing("absent"), "arcmin", "missing"),
        ("CBC", None, "'CBC'"),
    ],
)
def test_values_in_the_unit_written(value: object, unit: str | None, text: str) -> None:
    assert show(value, unit) == text


def test_no_exponent_in_a_readable_duration() -> None:
    assert readable_duration(3 * 86400.0 + 3600) == "3.042 d"
    assert "e+" not in readable_duration(12_345 * 86400.0)
