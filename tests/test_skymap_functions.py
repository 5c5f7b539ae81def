"""Sky-map figures in the rule language: values, missing cases, and one decode per notice."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA, NOTICES
from tracerules.dsl.compiler import Compiled, compile_expression
from tracerules.dsl.context import Context
from tracerules.dsl.values import Missing, Type
from tracerules.errors import DslError
from tracerules.products.sky import healpix as hp
from tracerules.products.sky import skymap_functions as sf
from tracerules.products.sky.skymap import read_skymap, skymap_from_alert
from tracerules.rules.compile import RuleSet, load_ruleset
from tracerules.rules.functions import builtin_functions
from tracerules.runtime.engine.decisions import Conclusion
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.sources.files import notice_from_bytes, notice_from_file
from tracerules.runtime.sources.notices import Notice
from tracerules.runtime.store.store import Store

LVK = NOTICES / "lvk_json"
ROOT = Path(__file__).resolve().parents[1]


def compile_with_every_function(text: str, names: Mapping[str, Type], **options: Any) -> Compiled:
    """An expression compiled against the assembled table (sky-map and site functions too)."""
    return compile_expression(text, names, builtins=builtin_functions(), **options)


def _alert(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((LVK / name).read_bytes())
    return loaded


def _evaluate(text: str, doc: Any) -> Any:
    compiled = compile_with_every_function(text, {})
    return compiled.fn(Context({}, 0.0, sf.skymap_extras(None, doc)))


@pytest.fixture(scope="module")
def product_rules() -> RuleSet:
    return load_ruleset([DATA / "rules" / "topics.yaml", DATA / "products" / "gw.yaml"])


def test_figures_match_the_maths_on_the_map() -> None:
    doc = _alert("igwn_gwalert_preliminary.json")
    skymap = skymap_from_alert(doc)
    assert skymap is not None
    assert skymap.distmu is not None and skymap.distsigma is not None
    assert skymap.distnorm is not None
    areas = hp.credible_areas(skymap.uniq, skymap.probdensity, [0.5, 0.9])
    assert _evaluate("area(0.9)", doc) == pytest.approx(areas[1], rel=1e-12)
    assert _evaluate("area(0.5)", doc) == pytest.approx(areas[0], rel=1e-12)
    distance = hp.marginal_distance(
        skymap.uniq, skymap.probdensity, skymap.distmu, skymap.distsigma, skymap.distnorm
    )
    assert distance is not None
    assert _evaluate("dist_mean()", doc) == pytest.approx(distance[0])
    assert _evaluate("dist_std()", doc) == pytest.approx(distance[1])
    ra, dec = hp.max_probability_position(skymap.uniq, skymap.probdensity)
    assert (_evaluate("maxprob_ra()", doc), _evaluate("maxprob_dec()", doc)) == (ra, dec)
    inside = _evaluate("prob_in_circle(maxprob_ra(), maxprob_dec(), 5 deg)", doc)
    assert inside == pytest.approx(
        hp.probability_in_circle(skymap.uniq, skymap.probdensity, ra, dec, 5.0)
    )
    assert 0.9 < inside <= 1.0 + 1e-9  # a 7.8 deg2 region fits in a 5-degree circle
    assert _evaluate("prob_in_circle(maxprob_ra() + 180 deg, 0 deg, 5 deg)", doc) < 1e-6


def test_burst_maps_have_no_distance_and_retractions_no_map() -> None:
    burst = _alert("S230528ay-preliminary.json")
    missing = _evaluate("dist_mean()", burst)
    assert isinstance(missing, Missing) and "Burst" in missing.reason
    assert _evaluate("area(0.9)", burst) == pytest.approx(96.676, abs=0.01)
    retraction = _evaluate("area(0.9)", _alert("igwn_gwalert_retraction.json"))
    assert isinstance(retraction, Missing) and retraction.reason == "no skymap in this notice"


def test_bad_levels_and_unreadable_maps_are_missing_values() -> None:
    doc = _alert("igwn_gwalert_preliminary.json")
    for text in ("area(0)", "area(1.5)", "prob_in_circle(1 deg, 95 deg, 1 deg)"):
        value = _evaluate(text, doc)
        assert isinstance(value, Missing), text
    truncated = _alert("03_MS181101ab-initial_displayexample.json")
    before = sf.decode_count()
    extras = sf.skymap_extras(None, truncated)
    for _ in range(3):  # three triggers asking: the broken map is decoded (tried) once
        value = compile_with_every_function("area(0.9)", {}).fn(Context({}, 0.0, extras))
        assert isinstance(value, Missing) and "skymap could not be read" in value.reason
    assert sf.decode_count() - before == 1


def test_types_and_arity_are_checked_when_rules_load() -> None:
    with pytest.raises(DslError) as err:
        compile_with_every_function('area("90%")', {})
    assert err.value.code == "E304"
    with pytest.raises(DslError) as err:
        compile_with_every_function("prob_in_circle(1 deg, 2 deg)", {})
    assert err.value.code == "E303"
    assert compile_with_every_function("maxprob_dec()", {}).type is Type.ANGLE
    assert compile_with_every_function("area(0.9) < 2000", {}).type is Type.BOOL


def test_a_notice_map_is_decoded_once_for_every_trigger_and_product(
    product_rules: RuleSet, store: Store, tmp_path: Path
) -> None:
    engine = Engine(product_rules, store, out_dir=tmp_path / "out")
    sf.forget()
    before = sf.decode_count()
    processed = engine.process(notice_from_file(LVK / "igwn_gwalert_preliminary.json"))
    # Two triggers, five sky-map conditions, two gw-alert products: one decode.
    assert sf.decode_count() - before == 1
    assert [d.conclusion for d in processed.decisions] == [Conclusion.PASS, Conclusion.PASS]
    assert [a.status for d in processed.decisions for a in d.actions] == ["done", "done"]
    second = tmp_path / "out/second/gw-second-look/MS260605l/preliminary"
    assert (second / "bayestar.multiorder.fits").is_file()


def test_maps_are_not_decoded_when_nothing_asks(store: Store, tmp_path: Path) -> None:
    rules = tmp_path / "plain.yaml"
    rules.write_text(
        (DATA / "products" / "gw.yaml")
        .read_text()
        .split("  - id: gw-second-look")[0]
        .replace("area(0.9) < 100", "group == 'CBC'")
        .replace("dist_mean() < 60 or (exists(group) and missing(dist_mean()))", "exists(group)")
        .replace("prob_in_circle(maxprob_ra(), maxprob_dec(), 15 deg) > 0.5", "exists(created)")
        .replace("type: gw-alert", "type: notice")
        .replace("nside: 32", 'path: "{event_id}.json"')
    )
    engine = Engine(
        load_ruleset([DATA / "rules" / "topics.yaml", rules]), store, out_dir=tmp_path / "out"
    )
    sf.forget()
    before = sf.decode_count()
    processed = engine.process(notice_from_file(LVK / "igwn_gwalert_preliminary.json"))
    assert processed.decisions[0].conclusion is Conclusion.PASS
    assert sf.decode_count() == before


def _with_map(alert: dict[str, Any], fits: Path, superevent: str) -> bytes:
    changed = json.loads(json.dumps(alert))
    changed["superevent_id"] = superevent
    changed["event"]["skymap"] = base64.b64encode(fits.read_bytes()).decode()
    return json.dumps(changed).encode()


def test_conditions_vote_on_both_sides_of_the_thresholds(
    product_rules: RuleSet, store: Store, tmp_path: Path
) -> None:
    engine = Engine(product_rules, store, out_dir=tmp_path / "out")
    alert = _alert("igwn_gwalert_preliminary.json")
    wide = DATA / "skymaps" / "bayestar.multiorder.02.fits"  # 580 deg2 at 100 Mpc
    assert read_skymap(wide).has_distance
    notice = notice_from_bytes(_with_map(alert, wide, "MS260605w"), offset=5)
    (decision, _) = engine.process(notice).decisions
    votes = {f.name: f.vote.value for f in decision.factors}
    # Spread over 580 deg2, the map holds less than half its probability within 15 deg.
    assert votes == {"expiry": "PASS", "compact": "FAIL", "nearby": "FAIL", "covered": "FAIL"}
    assert decision.conclusion is Conclusion.FAIL and not decision.actions


def test_example_lvk_rules_read_the_sky_map(store: Store, tmp_path: Path) -> None:
    examples = ROOT / "examples" / "rules"
    rules = load_ruleset([examples / "topics.yaml", examples / "lvk.yaml"])
    engine = Engine(rules, store, out_dir=tmp_path / "out")
    alert = _alert("igwn_gwalert_preliminary.json")
    alert.update(superevent_id="S260605l", alert_type="INITIAL")
    notice = notice_from_bytes(json.dumps(alert).encode(), topic="igwn.gwalert", offset=9)
    decisions = {d.trigger: d for d in engine.process(notice).decisions}
    for trigger, names in (
        ("lvk-high-significance", ("nearby",)),
        ("lvk-general", ("nearby", "compact")),
    ):
        factors = {f.name: f for f in decisions[trigger].factors}
        for name in names:
            assert factors[name].vote.value == "PASS", (trigger, name)
        assert decisions[trigger].conclusion is Conclusion.PASS
    # The same alert carrying the 580 deg2 map: still compact enough for "general" (2000).
    wide = dataclasses.replace(
        notice,
        payload=_with_map(alert, DATA / "skymaps" / "bayestar.multiorder.02.fits", "S260605w"),
        offset=10,
        digest="",
    )
    general = next(d for d in engine.process(wide).decisions if d.trigger == "lvk-general")
    compact = next(f for f in general.factors if f.name == "compact")
    assert compact.vote.value == "PASS"
    # The figure a vote rests on is shown beside it, as fields are (hover text, reports).
    area90 = float(compact.detail.split("area(0.9)=")[1].split(",")[0])
    assert 500 < area90 < 2000


def test_engine_extras_can_be_replaced(
    product_rules: RuleSet, store: Store, tmp_path: Path
) -> None:
    engine = Engine(product_rules, store, out_dir=tmp_path / "out", extras=lambda n, d: {})
    processed = engine.process(
        Notice("igwn.gwalert", (LVK / "igwn_gwalert_preliminary.json").read_bytes(), 0, 1)
    )
    factor = processed.decisions[0].factors[1]
    assert factor.vote.value == "UNKNOWN" and factor.reason == "no skymap in this notice"


# --- credible_level(ra, dec) ------------------------------------------------------------------


def _independent_levels(uniq: Any, density: Any, ra: Any, dec: Any) -> tuple[Any, Any]:
    """Bounds on the credible level of each position, from astropy-healpix and numpy only.

    The containing pixel is found order by order with astropy-healpix's ``lonlat_to_healpix``;
    its level lies between the probability of strictly denser pixels and that of pixels at
    least as dense minus its own (equal when no other pixel has its density).
    """
    import astropy.units as u
    import numpy as np
    from astropy_healpix import level_ipix_to_uniq, lonlat_to_healpix, uniq_to_level_ipix

    level, _ = uniq_to_level_ipix(uniq)
    prob = density * np.pi / 3.0 / 4.0**level
    prob = prob / prob.sum()
    row_of = {int(q): i for i, q in enumerate(uniq)}
    low, high = np.ones(len(ra)), np.ones(len(ra))
    for k, (a, d) in enumerate(zip(ra, dec, strict=True)):
        for order in np.unique(level):
            ipix = lonlat_to_healpix(a * u.deg, d * u.deg, 2 ** int(order), order="nested")
            row = row_of.get(int(level_ipix_to_uniq(order, ipix)))
            if row is not None:
                low[k] = prob[density > density[row]].sum()
                high[k] = prob[density >= density[row]].sum() - prob[row]
    return low, high


@pytest.mark.parametrize("name", ["igwn_gwalert_preliminary.json", "S230528ay-preliminary.json"])
def test_credible_level_matches_an_independent_computation(name: str) -> None:
    import numpy as np

    doc = _alert(name)
    skymap = skymap_from_alert(doc)
    assert skymap is not None
    figures = sf.figures_for_alert(doc)
    assert figures is not None
    ra0, dec0 = hp.max_probability_position(skymap.uniq, skymap.probdensity)
    rng = np.random.default_rng(14)
    # Positions all over the sky, and a cloud around the most probable one (inside the
    # credible regions), for a spread of levels from 0 to 1.
    spread = 0.5 * np.sqrt(hp.credible_areas(skymap.uniq, skymap.probdensity, [0.9])[0])
    near_ra = ra0 + rng.normal(0, spread, 150) / max(np.cos(np.radians(dec0)), 0.1)
    near_dec = np.clip(dec0 + rng.normal(0, spread, 150), -90, 90)
    ra = np.concatenate([[ra0], rng.uniform(0, 360, 150), np.mod(near_ra, 360)])
    dec = np.concatenate([[dec0], np.degrees(np.arcsin(rng.uniform(-1, 1, 150))), near_dec])
    got = np.array([figures.credible_level(a, d) for a, d in zip(ra, dec, strict=True)])
    low, high = _independent_levels(skymap.uniq, skymap.probdensity, ra, dec)
    assert np.all(got >= low - 1e-12) and np.all(got <= high + 1e-12)
    assert got[0] == 0.0  # the most probable pixel
    assert np.ptp(got) > 0.9 and ((got > 0.05) & (got < 0.9)).sum() > 20
    # The rule language gives the same numbers.
    for k in (0, 5, 200):
        text = f"credible_level({ra[k]:.12f} deg, {dec[k]:.12f} deg)"
        assert _evaluate(text, doc) == pytest.approx(got[k], abs=1e-9)
    # Inside the 90% region exactly when below 0.9: the region's area is area(0.9).
    levels = hp.credible_levels(skymap.uniq, skymap.probdensity)
    area = hp.pixel_area(hp.uniq_to_order_ipix(skymap.uniq)[0])
    inside = float(area[levels < 0.9].sum()) * (180 / np.pi) ** 2
    assert inside == pytest.approx(_evaluate("area(0.9)", doc), rel=1e-12)


def test_credible_level_is_one_outside_the_support_and_missing_without_a_map() -> None:
    import numpy as np

    # Twelve base pixels, only the first with probability: outside it the level is 1.
    uniq = np.arange(4, 16, dtype=np.int64)
    density = np.zeros(12)
    density[0] = 3.0 / np.pi
    figures = sf.SkyMapFigures(sf_skymap(uniq, density), b"")
    assert figures.credible_level(45.0, 40.0) == 0.0  # inside base pixel 0
    assert figures.credible_level(225.0, -40.0) == 1.0
    partial = sf.SkyMapFigures(sf_skymap(uniq[:1], density[:1]), b"")
    assert partial.credible_level(225.0, -40.0) == 1.0  # no pixel at all there
    retraction = _evaluate("credible_level(10 deg, 20 deg)", _alert("igwn_gwalert_retraction.json"))
    assert isinstance(retraction, Missing)
    bad = _evaluate("credible_level(10 deg, 95 deg)", _alert("igwn_gwalert_preliminary.json"))
    assert isinstance(bad, Missing)
    with pytest.raises(DslError) as err:
        compile_with_every_function('credible_level("10h", 20 deg)', {})  # a string is not an angle
    assert err.value.code == "E304"
    assert compile_with_every_function("credible_level(1 deg, 2 deg) <= 0.9", {}).type is Type.BOOL


def sf_skymap(uniq: Any, density: Any) -> Any:
    from tracerules.products.sky.skymap import SkyMap

    return SkyMap(uniq, density, None, None, None, {})


def test_credible_level_is_listed_for_users_and_editors() -> None:
    from typer.testing import CliRunner

    from tracerules.cli.main import app
    from tracerules.rules.models import json_schema

    listed = json.loads(CliRunner().invoke(app, ["functions", "--format", "json"]).stdout)
    (entry,) = [f for f in listed if f["name"] == "credible_level"]
    assert entry["signature"] == "credible_level(angle, angle) -> number"
    assert entry["category"] == "skymap"
    names = {f["name"] for f in json_schema()["x-functions"]}
    assert "credible_level" in names
