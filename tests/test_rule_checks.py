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
