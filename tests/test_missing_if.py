"""`missing_if:` and `nullif()`: a sentinel in a real notice is a missing value, not data.

Fermi GBM Alert notices put RA/Dec 0, 0 +- 0 with Coords_Type 0, GBM Fin_Pos always says
Burst_Signif 0.00, INTEGRAL SPI-ACS notices carry the same 0, 0 +- 0: read as data, they pass
conditions they say nothing about.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from lxml import etree

from tests.conftest import DATA, NOTICES
from tests.test_rule_checks import HEADER, at, check
from tracerules.dsl.context import Context
from tracerules.dsl.selectors import XmlDoc
from tracerules.dsl.values import Missing
from tracerules.rules.compile import CompiledTrigger, load_ruleset
from tracerules.ruletest.load import RuleCache, load_suite
from tracerules.ruletest.run import run_test

ROOT = Path(__file__).resolve().parents[1]
GBM = NOTICES / "fermi_gbm_voevent"
ALERT = GBM / "01_GBM_Alert_2018-09-14T12-31-47.25_558621112_1-866.xml"
FLIGHT = GBM / "02_GBM_Flt_Pos_2018-09-14T12-31-47.25_558621112_45-867.xml"
FINAL = GBM / "12_GBM_Fin_Pos2018-09-14T12-31-47.25_558621112_0-905.xml"

MASKED = """      coords_type: {xpath: "//Param[@name='Coords_Type']/@value", as: int}
      ra: {xpath: "//Position2D/Value2/C1", as: angle, missing_if: coords_type == 0}
      error:
        xpath: "//Position2D/Error2Radius"
        as: angle
        missing_if: coords_type == 0 or error == 0 deg
      signif:
        xpath: "//Param[@name='Burst_Signif']/@value"
        as: float
        missing_if: signif == 0
      half_error: {expr: "error / 2", missing_if: "half_error > 5 deg"}
      tidy_ra: {expr: "nullif(ra, 0 deg)"}
    conditions:
      localised: error < 10 deg and half_error < 10 deg and tidy_ra > 0 deg
      bright: signif > 5
"""


def trigger(tmp_path: Path, body: str = MASKED) -> CompiledTrigger:
    folder = tmp_path / "rules"
    folder.mkdir()
    shutil.copy(DATA / "rules" / "topics.yaml", folder)
    (folder / "t.yaml").write_text(
        HEADER.replace("SWIFT_BAT_GRB_POS_ACK", "FERMI_GBM_ALERT") + body
    )
    [compiled] = load_ruleset([folder]).triggers
    return compiled


def fields(compiled: CompiledTrigger, notice: Path) -> dict[str, object]:
    ctx = Context({}, 0.0)
    compiled.extract(XmlDoc(etree.fromstring(notice.read_bytes())), ctx)
    return ctx.values


def test_placeholders_of_a_gbm_alert_are_missing_with_the_reason(tmp_path: Path) -> None:
    values = fields(trigger(tmp_path), ALERT)
    assert values["ra"] == Missing("ra is a placeholder (missing_if: coords_type == 0)")
    assert values["error"] == Missing(
        "error is a placeholder (missing_if: coords_type == 0 or error == 0 deg)"
    )
    assert isinstance(values["half_error"], Missing)  # computed from a masked field
    assert values["coords_type"] == 0  # the test's own inputs are left as read


def test_a_real_position_is_kept_and_a_computed_field_is_masked_after_it_is_computed(
    tmp_path: Path,
) -> None:
    values = fields(trigger(tmp_path), FLIGHT)  # Coords_Type 1, error 21.45 deg
    assert values["ra"] == 42.5667 and values["error"] == 21.45 and values["tidy_ra"] == 42.5667
    assert values["half_error"] == Missing(
        "half_error is a placeholder (missing_if: half_error > 5 deg)"
    )


def test_burst_signif_zero_of_a_final_position_is_missing(tmp_path: Path) -> None:
    values = fields(trigger(tmp_path), FINAL)
    assert values["signif"] == Missing("signif is a placeholder (missing_if: signif == 0)")
    assert values["error"] == 1.0


def test_missing_if_mistakes_are_errors_where_they_are_written(tmp_path: Path) -> None:
    body = """      coords_type: {xpath: "//Param[@name='Coords_Type']/@value", as: int}
      ra: {xpath: "//Position2D/Value2/C1", as: angle, missing_if: coords_type}
      dec: {xpath: "//Position2D/Value2/C2", as: angle, missing_if: late == 0}
      late: {expr: "coords_type + 1"}
      error: {xpath: "//Position2D/Error2Radius", as: angle, missing_if: error == 0}
    conditions:
      localised: ra > 0 deg and dec > 0 deg and error < 1 deg
"""
    path, diagnostics = check(tmp_path, body)
    text = path.read_text()
    found = {(d.code, d.span.line, d.span.col): d for d in diagnostics}
    not_bool = found[("E310", *at(path, text, "coords_type}"))]
    assert "true/false, not number" in not_bool.message
    late = found[("E310", *at(path, text, "late == 0"))]
    assert "reads 'late', computed after it is read" in late.message
    assert late.hint is not None and "expr:" in late.hint
    # `error == 0` is fine: zero needs no unit, so nothing else is reported
    assert len(diagnostics) == 2, diagnostics


def _without_masks(tmp_path: Path) -> Path:
    """The example rules and notices, with every missing_if taken out."""
    copy = tmp_path / "examples"
    shutil.copytree(ROOT / "examples" / "rules", copy / "rules", symlinks=False)
    shutil.copytree(ROOT / "examples" / "notices", copy / "notices")
    for name in ("fermi.yaml", "integral.yaml"):
        path = copy / "rules" / name
        text = re.sub(r", missing_if: [^}]*\}", "}", path.read_text())
        text = re.sub(r"\n +missing_if: .*", "", text)
        assert "missing_if:" not in text.replace("# ", "")
        path.write_text(text)
    return copy / "rules"


def _results(rules: Path, test_file: str) -> dict[str, list[str]]:
    suite = load_suite(rules / test_file, RuleCache())
    assert suite.diagnostics == [] and suite.rules is not None
    return {
        t.name: [m.what for f in run_test(t, suite.rules).failures for m in f.mismatches]
        for t in suite.tests
    }


def test_the_example_rule_tests_need_the_masks(tmp_path: Path) -> None:
    """With missing_if the examples' tests pass; without it the placeholders pass or fail
    conditions as if they were data, and the same tests fail."""
    examples = ROOT / "examples" / "rules"
    for name in ("fermi.test.yaml", "integral.test.yaml"):
        assert all(m == [] for m in _results(examples, name).values()), name
    bare = _without_masks(tmp_path)
    fermi = _results(bare, "fermi.test.yaml")
    long_grb = fermi[
        "GBM VOEvents 558621112 - a long GRB passes once well localised, never as short"
    ]
    assert {"factor localised", "factor visible", "factor significant", "conclusion"} <= set(
        long_grb
    )
    integral = _results(bare, "integral.test.yaml")
    spiacs = integral[
        "INTEGRAL SPI-ACS 10352 - the 0, 0 +- 0 placeholder is no position, so no PASS"
    ]
    assert {"factor localised", "factor visible", "conclusion"} <= set(spiacs)
