"""Rules that mean what they say (issue 16): mistakes a rule author makes are reported at
file:line:col with a hint, and correct rules are not refused."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import DATA
from tracerules.errors import Diagnostic
from tracerules.rules.compile import compile_loaded
from tracerules.rules.loader import load_paths

HEADER = """schema_version: 1
triggers:
  - id: swift-check
    topics: [gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK]
    event_id: trig_id
    event_time: burst_time
    expiry: 1 h
    mode: pretend
    fields:
      trig_id: {xpath: "//Param[@name='TrigID']/@value", as: int}
      burst_time: {xpath: "//ISOTime", as: time}
"""


def check(tmp_path: Path, body: str) -> tuple[Path, list[Diagnostic]]:
    """The diagnostics of one trigger (HEADER + body) next to the test topic registry."""
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    shutil.copy(DATA / "rules" / "topics.yaml", folder)
    path = folder / "check.yaml"
    path.write_text(HEADER + body)
    _, diagnostics = compile_loaded(load_paths([folder]))
    return path, diagnostics


def at(path: Path, text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of the first `needle` in `text` (the rule file's source)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number, line.index(needle) + 1
    raise AssertionError(f"{needle!r} not in {path}")


# -- a webhook that is not an observation needs no position (item 6) ---------------------------

WEBHOOK = """    conditions:
      known: exists(trig_id)
    actions:
      - type: webhook
        url: "https://chat.example.org/hooks/{event_id}"
"""


def test_a_webhook_without_observatory_needs_no_ra_or_dec_field(tmp_path: Path) -> None:
    _, diagnostics = check(tmp_path, WEBHOOK)
    assert diagnostics == []


def test_a_webhook_with_a_mistyped_position_field_is_still_reported(tmp_path: Path) -> None:
    path, diagnostics = check(tmp_path, WEBHOOK + "        ra: right_asc\n")
    [found] = diagnostics
    assert found.code == "E802" and "right_asc" in found.message
    assert (found.span.line, found.span.col) == at(path, path.read_text(), "right_asc")


def test_an_observatory_without_a_ra_field_points_at_the_observatory(tmp_path: Path) -> None:
    path, diagnostics = check(tmp_path, WEBHOOK + "        observatory: test-telescope\n")
    assert {d.code for d in diagnostics} == {"E802"}
    assert {d.message.split()[0] for d in diagnostics} == {"ra", "dec"}
    where = at(path, path.read_text(), "observatory:")
    assert all((d.span.line, d.span.col) == where for d in diagnostics)
    assert all(d.hint is not None and "under fields:" in d.hint for d in diagnostics)


# -- a namespaced VOEvent selector matches nothing (item 5) ------------------------------------


def test_a_voe_prefixed_param_step_is_linted_where_it_is_written(tmp_path: Path) -> None:
    body = """      grb: {xpath: "//voe:Param[@name='GRB_Identified']/@value", as: bool}
    conditions:
      is_grb: grb
"""
    path, diagnostics = check(tmp_path, body)
    [found] = diagnostics
    assert (found.code, found.lint) == ("W007", "namespaced-xpath-step")
    assert not found.is_error
    assert "'voe:Param' never matches" in found.message and "'grb'" in found.message
    assert (found.span.line, found.span.col) == at(path, path.read_text(), "voe:Param")
    assert found.span.length == len("voe:Param")
    assert found.hint == "write //Param[@name='GRB_Identified']/@value"


def test_the_namespaced_root_element_is_not_linted(tmp_path: Path) -> None:
    body = """      grb: {xpath: "/voe:VOEvent/What/Param[@name='GRB_Identified']/@value", as: bool}
    conditions:
      is_grb: grb
"""
    _, diagnostics = check(tmp_path, body)
    assert diagnostics == []


# -- a bare number beside an angle has no unit (item 3) ----------------------------------------

ANGLES = """      error: {xpath: "//Position2D/Error2Radius", as: angle}
      dec: {xpath: "//Position2D/Value2/C2", as: angle}
    conditions:
"""


def test_an_angle_compared_with_a_bare_number_is_an_error_at_the_number(tmp_path: Path) -> None:
    path, diagnostics = check(tmp_path, ANGLES + "      sharp: error < 4\n      south: dec < 0\n")
    [found] = diagnostics  # `dec < 0` is fine: zero is zero in every unit
    assert found.code == "E304" and found.is_error
    assert "bare number 4" in found.message
    assert found.hint == "write `4 arcmin` or `4 deg`"
    line, col = at(path, path.read_text(), "error < 4")
    assert (found.span.line, found.span.col) == (line, col + len("error < "))


def test_arithmetic_on_an_angle_with_a_bare_number_is_an_error(tmp_path: Path) -> None:
    path, diagnostics = check(tmp_path, ANGLES + "      north: dec + 1.5 > 10 deg\n")
    [found] = diagnostics
    assert found.code == "E304" and "'+' combines an angle with the bare number 1.5" in (
        found.message
    )
    assert found.hint == "write `1.5 arcmin` or `1.5 deg`"
    line, col = at(path, path.read_text(), "1.5 >")
    assert (found.span.line, found.span.col) == (line, col)


def test_angles_with_units_and_scaled_angles_validate(tmp_path: Path) -> None:
    body = ANGLES + "      sharp: error * 2 < 4 arcmin\n      north: dec + 1.5 deg > 10 deg\n"
    _, diagnostics = check(tmp_path, body)
    assert diagnostics == []
