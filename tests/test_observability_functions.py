"""Observability in rules: real notices, the evaluation clock, sky maps, listings, errors."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests import astropy_sky
from tests.conftest import NOTICES
from tracerules.cli.main import app
from tracerules.dsl.compiler import Compiled, compile_expression
from tracerules.dsl.context import Context
from tracerules.dsl.values import Missing, Type
from tracerules.products.actions import registry
from tracerules.products.actions.registry import ActionConfig
from tracerules.products.sky import visibility as vis
from tracerules.products.sky.observability_functions import OBSERVABILITY_BUILTINS
from tracerules.products.sky.sites import Site
from tracerules.products.sky.skymap import skymap_from_alert
from tracerules.rules.compile import RuleSet, compile_loaded, load_ruleset
from tracerules.rules.functions import builtin_functions
from tracerules.rules.loader import load_paths
from tracerules.runtime.engine.decisions import Factor
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.sources.files import notice_from_file
from tracerules.runtime.sources.notices import Notice
from tracerules.runtime.store.store import Store

ROOT = Path(__file__).resolve().parents[1]
BAT = NOTICES / "swift_chain" / "02_BAT_GRB_Pos_1201696-785.xml"
LVK = NOTICES / "lvk_json" / "igwn_gwalert_preliminary.json"
NAMES = {b.name for b in OBSERVABILITY_BUILTINS}
LA_SILLA = Site("lasilla", -29.2567, -70.7346, 2400.0, 20.0, sun_limit=-12.0)

SWIFT_RULE = """
schema_version: 1
triggers:
  - id: swift-mwa
    topics: [gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK]
    event_id: trig_id
    event_time: burst_time
    fields:
      trig_id: {xpath: "//Param[@name='TrigID']/@value", as: int}
      burst_time: {xpath: "//ISOTime", as: time}
      ra: {xpath: "//Position2D/Value2/C1", as: angle}
      dec: {xpath: "//Position2D/Value2/C2", as: angle}
      up_at_atca: {expr: "alt(ra, dec, 'atca') > 12 deg"}
    conditions:
      mwa_up: alt(ra, dec, 'mwa') > 30 deg
      atca: up_at_atca
      low: airmass(ra, dec, 'atca') < 3
      soon: visible_within(ra, dec, 'mwa', 12 h)
      rises: rises_within(ra, dec, 'mwa', 12 h) or alt(ra, dec, 'mwa') > 30 deg
      next: next_visible(ra, dec, 'mwa') - now() < 12 h
      night: sun_alt('atca') < -12 deg
      moon: moon_sep(ra, dec) > 30 deg and moon_illumination() < 1.5
      west: hour_angle(ra, dec, 'mwa') > 0 deg
    actions: [{type: notice}]
"""

LVK_RULE = """
schema_version: 1
triggers:
  - id: lvk-mwa
    topics: [igwn.gwalert]
    event_id: superevent_id
    event_time: time_created
    fields:
      superevent_id: {jsonpath: "$.superevent_id"}
      time_created: {jsonpath: "$.time_created", as: time}
    conditions:
      seen: visible_prob('mwa') > 0.1
      later: visible_prob_within('mwa', 24 h) >= visible_prob('mwa')
      at_atca: visible_prob('atca') >= 0
      where: best_visible_dec('mwa') < 90 deg and best_visible_ra('mwa') >= 0 deg
    actions: [{type: notice}]
"""


def _rules(tmp_path: Path, text: str) -> RuleSet:
    folder = tmp_path / "rules"
    folder.mkdir()
    shutil.copy(ROOT / "rules" / "topics.yaml", folder)
    shutil.copy(ROOT / "rules" / "sites.yaml", folder)
    (folder / "observe.yaml").write_text(text)
    return load_ruleset([folder])


def _factors(rules: RuleSet, store: Store, tmp_path: Path, notice: Notice) -> dict[str, Factor]:
    engine = Engine(rules, store, out_dir=tmp_path / "out")
    (decision,) = engine.process(notice).decisions
    return {f.name: f for f in decision.factors}


def _position(path: Path) -> tuple[float, float]:
    xml = path.read_text()
    return (
        float(xml.split("<C1>")[1].split("</C1>")[0]),
        float(xml.split("<C2>")[1].split("</C2>")[0]),
    )


def _shown(factor: Factor, text: str) -> float:
    """The figure printed beside a vote, e.g. 'alt(ra, dec, "mwa")=42.1 deg' -> 42.1."""
    assert factor.detail is not None
    value = factor.detail.split(f"{text}=")[1].split(",")[0]
    return float(value.removesuffix(" deg"))


def test_a_swift_burst_is_judged_at_the_notice_time(store: Store, tmp_path: Path) -> None:
    rules = _rules(tmp_path, SWIFT_RULE)
    notice = notice_from_file(BAT)
    factors = _factors(rules, store, tmp_path, notice)
    ra, dec = _position(BAT)
    ref_mwa, _ = astropy_sky.altaz(ra, dec, rules.sites["mwa"], notice.received)
    ref_atca, _ = astropy_sky.altaz(ra, dec, rules.sites["atca"], notice.received)
    shown = _shown(factors["mwa_up"], 'alt(ra, dec, "mwa")')
    assert shown == pytest.approx(float(ref_mwa), abs=0.05)
    assert factors["mwa_up"].detail.endswith(" deg")  # type: ignore[union-attr]
    assert factors["mwa_up"].vote.value == ("PASS" if ref_mwa > 30 else "FAIL")
    assert factors["atca"].vote.value == ("PASS" if ref_atca > 12 else "FAIL")
    # Every condition could be evaluated; none is UNKNOWN.
    assert {f.vote.value for f in factors.values()} <= {"PASS", "FAIL"}, factors
    assert 'sun_alt("atca")=' in factors["night"].detail  # type: ignore[operator]
    assert "moon_illumination()=" in factors["moon"].detail  # type: ignore[operator]
    assert factors["rises"].vote == factors["soon"].vote


def test_the_clock_is_the_notice_time_not_the_wall_clock(store: Store, tmp_path: Path) -> None:
    rules = _rules(tmp_path, SWIFT_RULE)
    notice = notice_from_file(BAT)
    first = _shown(_factors(rules, store, tmp_path, notice)["mwa_up"], 'alt(ra, dec, "mwa")')
    # The same notice received six hours later (another trigger id: a fresh event).
    later = dataclasses.replace(
        notice,
        payload=notice.payload.replace(b"1201696", b"1201697"),
        received=notice.received + 6 * 3600,
        offset=1,
        digest="",
    )
    second = _shown(_factors(rules, store, tmp_path, later)["mwa_up"], 'alt(ra, dec, "mwa")')
    ra, dec = _position(BAT)
    ref, _ = astropy_sky.altaz(ra, dec, rules.sites["mwa"], later.received)
    assert second == pytest.approx(float(ref), abs=0.05)
    assert abs(second - first) > 1.0


def test_a_gravitational_wave_map_is_weighed_at_each_site(store: Store, tmp_path: Path) -> None:
    rules = _rules(tmp_path, LVK_RULE)
    notice = notice_from_file(LVK)
    factors = _factors(rules, store, tmp_path, notice)
    assert {f.vote.value for f in factors.values()} <= {"PASS", "FAIL"}, factors
    alert = json.loads(LVK.read_bytes())
    skymap = skymap_from_alert(alert)
    assert skymap is not None
    pixels = vis.Pixels.of_map(skymap.uniq, skymap.probdensity)
    for site_name in ("mwa", "atca"):
        site = rules.sites[site_name]
        alt, _ = astropy_sky.altaz(pixels.ra, pixels.dec, site, notice.received)
        expected = float(pixels.prob[alt >= site.elevation_limit].sum())
        condition = "seen" if site_name == "mwa" else "at_atca"
        text = f'visible_prob("{site_name}")'
        assert _shown(factors[condition], text) == pytest.approx(expected, abs=2e-3)
    within = _shown(factors["later"], 'visible_prob_within("mwa", 24 h)')
    assert within >= _shown(factors["later"], 'visible_prob("mwa")')
    ra = _shown(factors["where"], 'best_visible_ra("mwa")')
    dec = _shown(factors["where"], 'best_visible_dec("mwa")')
    alt, _ = astropy_sky.altaz(ra, dec, rules.sites["mwa"], notice.received)
    assert float(alt) >= 30.0 - 0.01


def test_a_notice_without_a_map_gives_unknown_with_the_reason(store: Store, tmp_path: Path) -> None:
    rules = _rules(tmp_path, LVK_RULE)
    notice = notice_from_file(NOTICES / "lvk_json" / "igwn_gwalert_retraction.json")
    engine = Engine(rules, store, out_dir=tmp_path / "out")
    decisions = engine.process(notice).decisions
    factors = {f.name: f for d in decisions for f in d.factors}
    assert factors["seen"].vote.value == "UNKNOWN"
    assert factors["seen"].reason == "no skymap in this notice"


def test_every_observability_function_is_listed_and_in_the_schema() -> None:
    runner = CliRunner()
    listed = json.loads(runner.invoke(app, ["functions", "--format", "json"]).stdout)
    signatures = {f["name"]: f["signature"] for f in listed}
    assert set(signatures) >= NAMES
    assert signatures["alt"] == "alt(angle, angle, site) -> angle"
    assert signatures["visible_prob_within"] == "visible_prob_within(site, duration) -> number"
    assert signatures["next_visible"] == "next_visible(angle, angle, site) -> time"
    schema = json.loads(runner.invoke(app, ["schema"]).stdout)
    assert {f["name"] for f in schema["x-functions"]} >= NAMES
    assert "SiteSpec" in schema["$defs"]
    assert schema["properties"]["sites"]["items"] == {"$ref": "#/$defs/SiteSpec"}


def test_the_starter_rules_validate_with_their_sites() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["validate", str(ROOT / "rules"), str(ROOT / "examples" / "rules")])
    assert result.exit_code == 0, result.stdout


def test_a_window_longer_than_a_week_is_a_missing_value(store: Store, tmp_path: Path) -> None:
    rules = _rules(tmp_path, SWIFT_RULE.replace("'mwa', 12 h)", "'mwa', 8 d)"))
    factors = _factors(rules, store, tmp_path, notice_from_file(BAT))
    assert factors["soon"].vote.value == "UNKNOWN"
    assert "longer than 7 d" in (factors["soon"].reason or "")


def test_map_functions_reuse_one_set_of_pixels_per_map(tmp_path: Path) -> None:
    from tracerules.products.sky import skymap_functions as sf
    from tracerules.products.sky.observability_functions import pixels_of

    figures = sf.figures_for_alert(json.loads(LVK.read_bytes()))
    assert figures is not None
    assert pixels_of(figures) is pixels_of(figures)
    assert np.isclose(pixels_of(figures).prob.sum(), 1.0)


# -- actions that name a site -----------------------------------------------------------------


class _SiteProbeConfig(ActionConfig):
    type: Literal["site-probe"]
    site: str
    site_refs: ClassVar[tuple[str, ...]] = ("site",)


def _never(config: Any, request: Any) -> Any:
    raise AssertionError("not run in these tests")


ACTION_RULE = """
schema_version: 1
triggers:
  - id: probe
    topics: [gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK]
    event_id: trig_id
    event_time: burst_time
    fields:
      trig_id: {xpath: "//Param[@name='TrigID']/@value", as: int}
      burst_time: {xpath: "//ISOTime", as: time}
    actions:
      - {type: site-probe, site: atca}
      - type: site-probe
        site: mwaa
"""


def test_an_action_naming_an_unknown_site_is_an_error_at_its_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.get("notice")  # the built-in types first, then ours beside them
    probe = registry.ActionType("site-probe", _SiteProbeConfig, _never, "test only")
    monkeypatch.setitem(registry._TYPES, "site-probe", probe)
    folder = tmp_path / "rules"
    folder.mkdir()
    shutil.copy(ROOT / "rules" / "topics.yaml", folder)
    shutil.copy(ROOT / "rules" / "sites.yaml", folder)
    (folder / "probe.yaml").write_text(ACTION_RULE)
    ruleset, diagnostics = compile_loaded(load_paths([folder]))
    assert ruleset is None
    errors = [(d.code, d.span.line, d.span.col, d.hint) for d in diagnostics if d.is_error]
    assert errors == [("E606", 14, 15, "did you mean 'mwa'?")]
    (folder / "probe.yaml").write_text(ACTION_RULE.replace("mwaa", "mwa"))
    ruleset = load_ruleset([folder])
    actions = ruleset.triggers[0].actions
    assert [dict(a.sites) for a in actions] == [
        {"atca": ruleset.sites["atca"]},
        {"mwa": ruleset.sites["mwa"]},
    ]


# -- the window functions agree with each other ---------------------------------------------

WINDOW_NAMES = {"ra": Type.ANGLE, "dec": Type.ANGLE}


def compile_with_every_function(text: str, names: Mapping[str, Type], **options: Any) -> Compiled:
    """An expression compiled against the assembled table (sky-map and site functions too)."""
    return compile_expression(text, names, builtins=builtin_functions(), **options)


@cache
def _starter_sites() -> dict[str, Site]:
    return dict(load_ruleset([ROOT / "rules"]).sites)


@settings(max_examples=30, deadline=None)
@given(
    st.floats(0.0, 360.0, exclude_max=True),
    st.floats(-90.0, 90.0),
    st.sampled_from(["mwa", "atca", "lasilla"]),
    st.floats(1420070400.0, 1924992000.0),
    st.sampled_from(["30 min", "2 h", "12 h", "2 d"]),
)
def test_the_window_functions_agree(
    ra: float, dec: float, site: str, t: float, window: str
) -> None:
    sites = {**_starter_sites(), "lasilla": LA_SILLA}
    limit = sites[site].elevation_limit

    def value(text: str) -> Any:
        compiled = compile_with_every_function(text, WINDOW_NAMES, sites=sites)
        return compiled.fn(Context({"ra": ra, "dec": dec}, t))

    within = value(f"visible_within(ra, dec, '{site}', {window})")
    rises = value(f"rises_within(ra, dec, '{site}', {window})")
    now_up = value(f"alt(ra, dec, '{site}')") >= limit and (
        site != "lasilla" or value(f"sun_alt('{site}')") < -12.0
    )
    assert within == (now_up or rises) or abs(value(f"alt(ra, dec, '{site}')") - limit) < 1e-3
    assert not (rises and now_up)
    first = value(f"next_visible(ra, dec, '{site}')")
    seconds = value(f"seconds(duration('{window}'))")
    if isinstance(first, Missing):
        assert not within
    else:
        assert first >= t
        assert within == (first <= t + seconds)
        assert value(f"next_visible(ra, dec, '{site}') == now()") == (first == t)


def test_a_declination_off_the_sphere_is_a_missing_value_with_the_reason() -> None:
    for text in ("alt(ra, dec, 'mwa')", "hour_angle(ra, dec, 'atca')", "moon_sep(ra, dec)"):
        compiled = compile_with_every_function(text, WINDOW_NAMES, sites=_starter_sites())
        value = compiled.fn(Context({"ra": 10.0, "dec": 95.0}, 1.7e9))
        assert isinstance(value, Missing), text
        assert "declination 95 is outside [-90, 90]" in value.reason
