"""The gw-alert product on real LVK alerts: through the engine, file by file, and the PNG."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image
from pydantic import ValidationError

from tests.conftest import DATA, NOTICES
from tests.sql import sql_value
from tracerules import __version__
from tracerules.errors import RuleError
from tracerules.products.actions.gw_alert import GwAlertConfig, run
from tracerules.products.actions.registry import ActionRequest
from tracerules.products.sky import healpix as hp
from tracerules.products.sky.galactic import equatorial_to_galactic
from tracerules.rules.compile import RuleSet, load_ruleset
from tracerules.runtime.engine.decisions import Conclusion, Decision
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.sources.files import notice_from_file
from tracerules.runtime.store.store import Store

LVK = NOTICES / "lvk_json"
CBC = "igwn_gwalert_preliminary.json"
BURST = "S230528ay-preliminary.json"
RETRACTION = "igwn_gwalert_retraction.json"
CBC_FOLDER = Path("mockevents/MS260605l/20260605T120107_preliminary")
BURST_FOLDER = Path("superevents/S230528ay/20230528T114043_preliminary")
#: gocart 0.4.9's skymap.csv columns for a CBC map (its convert/ascii.py): plugins read these.
GOCART_CSV_COLUMNS = ["IPIX", "PROB", "DISTMU", "DISTSIGMA", "RA", "DEC", "GLON", "GLAT"]


@pytest.fixture(scope="module")
def product_rules() -> RuleSet:
    return load_ruleset([DATA / "rules" / "topics.yaml", DATA / "products" / "gw.yaml"])


@pytest.fixture
def gw_engine(product_rules: RuleSet, store: Store, tmp_path: Path) -> Engine:
    return Engine(product_rules, store, out_dir=tmp_path / "out")


def _decision(engine: Engine, name: str, trigger: str, offset: int = 0) -> Decision:
    processed = engine.process(notice_from_file(LVK / name, offset=offset))
    (decision,) = [d for d in processed.decisions if d.trigger == trigger]
    return decision


def _request(name: str, out: Path, **values: Any) -> ActionRequest:
    payload = (LVK / name).read_bytes()
    return ActionRequest("snapshot-rule", "E1", 7, "key", {"notice_id": 3, **values}, payload, out)


def _csv(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    lines = path.read_text().splitlines()
    comments = [line for line in lines if line.startswith("#")]
    header = lines[len(comments)].split(",")
    table = np.genfromtxt(path, delimiter=",", skip_header=len(comments) + 1)
    return comments, header, table


def test_cbc_alert_end_to_end(gw_engine: Engine, tmp_path: Path) -> None:
    decision = _decision(gw_engine, CBC, "gw-compact")
    assert decision.conclusion is Conclusion.PASS
    assert [(a.type, a.status) for a in decision.actions] == [("gw-alert", "done")]
    folder = tmp_path / "out" / CBC_FOLDER
    names = {p.name for p in folder.iterdir()}
    assert names == {
        "MS260605l-preliminary.json",
        "bayestar.multiorder.fits",
        "meta.yaml",
        "skymap.csv",
        "skymap.png",
    }  # no temporary files left behind
    payload = (LVK / CBC).read_bytes()
    alert = json.loads(payload)
    assert (folder / "MS260605l-preliminary.json").read_bytes() == payload  # as received
    fits = (folder / "bayestar.multiorder.fits").read_bytes()
    assert fits == base64.b64decode(alert["event"]["skymap"])

    meta = yaml.safe_load((folder / "meta.yaml").read_text())
    assert list(meta) == ["ALERT", "HEADER", "EXTRA", "PROVENANCE"]
    del alert["event"]["skymap"]
    assert meta["ALERT"] == alert  # the alert minus its sky map, every other value intact
    assert meta["HEADER"]["CREATOR"] == "BAYESTAR" and meta["HEADER"]["MOCORDER"] == 11
    extra = meta["EXTRA"]
    assert 0 < extra["area10"] < extra["area50"] < extra["area90"] < 100
    assert extra["distance_mean"] == pytest.approx(meta["HEADER"]["DISTMEAN"], abs=1e-3)
    assert extra["distance_std"] == pytest.approx(meta["HEADER"]["DISTSTD"], abs=1e-3)
    assert extra["total_probability"] == pytest.approx(1.0, abs=1e-6)
    assert extra["pixels"] == 19200 and extra["orders"] == list(range(4, 12))
    assert 0 <= extra["sun"]["separation"] <= 180 and 0 <= extra["moon"]["separation"] <= 180
    assert meta["PROVENANCE"] == {
        "tool": f"tracerules {__version__}",
        "rule": "gw-compact",
        "event": "MS260605l",
        "notice": decision.notice_id,
        "decision": decision.id,
    }

    comments, header, table = _csv(folder / "skymap.csv")
    assert comments == ["# EVENT:MS260605l", "# NSIDE:32"]  # gocart's two lines, no more
    assert header[:8] == GOCART_CSV_COLUMNS and header[8:] == ["DISTMEAN", "DISTSTD"]
    assert table.shape == (12 * 32**2, 10)
    np.testing.assert_array_equal(table[:, 0], np.arange(12 * 32**2))
    assert table[:, 1].sum() == pytest.approx(1.0, abs=1e-6)
    ra, dec = hp.pixel_centres(32)
    np.testing.assert_allclose(table[:, 4], ra, atol=1e-6)
    np.testing.assert_allclose(table[:, 5], dec, atol=1e-6)
    gal_l, gal_b = equatorial_to_galactic(ra, dec)
    assert hp.angular_separation(table[:, 6], table[:, 7], gal_l, gal_b).max() < 1e-5
    # Distances merged by probability weight: the flat map's mixture mean is the map's mean.
    prob, mean = table[:, 1], table[:, 8]
    good = np.isfinite(mean)
    assert np.sum(prob[good] * mean[good]) == pytest.approx(extra["distance_mean"], rel=1e-3)

    recorded = json.loads(
        sql_value(
            gw_engine.store, "SELECT files FROM actions WHERE id=?", (decision.actions[0].id,)
        )
    )
    assert {Path(f).name for f in recorded} == names


def test_retraction_writes_its_json_and_meta_and_no_map(gw_engine: Engine, tmp_path: Path) -> None:
    _decision(gw_engine, CBC, "gw-compact")
    decision = _decision(gw_engine, RETRACTION, "gw-compact", offset=1)
    # The retraction abstains on every sky-map condition and inherits the alert's PASS.
    assert {f.name: (f.vote.value, f.inherited) for f in decision.factors} == {
        "expiry": ("PASS", False),
        "compact": ("PASS", True),
        "nearby": ("PASS", True),
        "covered": ("PASS", True),
    }
    assert [a.status for a in decision.actions] == ["done"]
    folder = tmp_path / "out" / "mockevents/MS260605l/20260605T121057_retraction"
    assert {p.name for p in folder.iterdir()} == {"MS260605l-retraction.json", "meta.yaml"}
    meta = yaml.safe_load((folder / "meta.yaml").read_text())
    assert meta["ALERT"]["alert_type"] == "RETRACTION" and meta["ALERT"]["event"] is None
    assert meta["HEADER"] == {}
    assert meta["EXTRA"] == {"note": "retraction: the alert has no event and no sky map"}


def test_burst_alert_has_no_distance(gw_engine: Engine, tmp_path: Path) -> None:
    decision = _decision(gw_engine, BURST, "gw-compact")
    assert decision.conclusion is Conclusion.PASS
    folder = tmp_path / "out" / BURST_FOLDER
    # An oLIB map: named after its creator, not renamed "bilby" as gocart does.
    assert (folder / "ligo-skymap-from-samples.multiorder.fits").is_file()
    _, header, table = _csv(folder / "skymap.csv")
    assert header == ["IPIX", "PROB", "RA", "DEC", "GLON", "GLAT"]
    assert table[:, 1].sum() == pytest.approx(1.0, abs=1e-6)
    extra = yaml.safe_load((folder / "meta.yaml").read_text())["EXTRA"]
    assert extra["distance_mean"] is None and extra["distance_std"] is None
    assert extra["area90"] == pytest.approx(96.676, abs=0.01)


def test_an_unreadable_map_fails_but_keeps_the_alert(tmp_path: Path) -> None:
    # The user-guide display examples truncate the base64 sky map.
    request = _request("03_MS181101ab-initial_displayexample.json", tmp_path)
    outcome = run(GwAlertConfig(type="gw-alert"), request)
    assert not outcome.ok
    assert any(
        line.startswith("decode failed: ") and "SkyMapError: " in line for line in outcome.log
    )
    folder = tmp_path / "mockevents/MS181101ab/20181101T223625_initial"
    assert {p.name for p in folder.iterdir()} == {"MS181101ab-initial.json", "meta.yaml"}
    meta = yaml.safe_load((folder / "meta.yaml").read_text())
    assert meta["EXTRA"] == {"note": "the sky map could not be read"}
    assert "skymap" not in meta["ALERT"]["event"]


def test_meta_yaml_snapshot(tmp_path: Path, snapshot: Any) -> None:
    outcome = run(GwAlertConfig(type="gw-alert", csv=False, png=False), _request(CBC, tmp_path))
    assert outcome.ok, outcome.log
    assert (tmp_path / CBC_FOLDER / "meta.yaml").read_text() == snapshot


def test_retraction_meta_yaml_snapshot(tmp_path: Path, snapshot: Any) -> None:
    outcome = run(GwAlertConfig(type="gw-alert"), _request(RETRACTION, tmp_path))
    assert outcome.ok, outcome.log
    folder = tmp_path / "mockevents/MS260605l/20260605T121057_retraction"
    assert (folder / "meta.yaml").read_text() == snapshot


@pytest.mark.parametrize("name", [CBC, BURST])
def test_png_is_rendered_with_its_provenance(tmp_path: Path, name: str) -> None:
    config = GwAlertConfig(type="gw-alert", csv=False, alert_json=False, skymap=False)
    outcome = run(config, _request(name, tmp_path))
    assert outcome.ok, outcome.log
    (png,) = [Path(f) for f in outcome.files if f.endswith("skymap.png")]
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == (1200, 560)
        text = dict(image.text)  # type: ignore[attr-defined]
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    assert text["Software"] == f"tracerules {__version__}"
    assert "rule snapshot-rule" in text["Description"] and "notice 3" in text["Description"]
    # Not blank: a good share of the figure is drawn, in many shades.
    assert (pixels.sum(axis=2) < 3 * 250).mean() > 0.25
    packed = (pixels[..., 0].astype(np.int32) << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
    assert np.unique(packed).size > 150  # an indexed PNG of up to 256 colours, most used

    def share(colour: str) -> float:
        rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
        return float((np.abs(pixels - rgb).sum(axis=2) < 30).mean())

    assert share("#2aa198") > 0  # the 90% credible contour
    assert share("#e08e0b") > 1e-4  # the Sun and its footprint
    assert share("#859900") > 1e-4  # the galactic plane


def test_parts_can_be_switched_off(tmp_path: Path) -> None:
    config = GwAlertConfig(type="gw-alert", skymap=False, csv=False, png=False)
    outcome = run(config, _request(CBC, tmp_path))
    assert outcome.ok
    assert sorted(p.name for p in (tmp_path / CBC_FOLDER).iterdir()) == [
        "MS260605l-preliminary.json",
        "meta.yaml",
    ]
    assert set(outcome.detail["seconds"]) == {"json", "decode", "areas", "meta"}


def test_folder_template_takes_fields_and_layout_names(tmp_path: Path) -> None:
    config = GwAlertConfig(
        type="gw-alert", folder="lvk/{trigger_name}/{gw_id}-{gw_stamp}-{gw_type}", png=False
    )
    request = _request(BURST, tmp_path, trigger_name="mine")
    assert run(config, request).ok
    assert (tmp_path / "lvk/mine/S230528ay-20230528T114043-preliminary/meta.yaml").is_file()


def test_unknown_template_names_and_bad_nside_are_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="power of two"):
        GwAlertConfig(type="gw-alert", nside=48)
    rules = (
        (DATA / "products" / "gw.yaml")
        .read_text()
        .replace('folder: "second/{trigger}/{gw_id}/{gw_type}"', 'folder: "x/{gw_idd}"')
    )
    path = tmp_path / "bad.yaml"
    path.write_text(rules)
    with pytest.raises(RuleError) as err:
        load_ruleset([DATA / "rules" / "topics.yaml", path])
    (diagnostic,) = err.value.diagnostics
    assert diagnostic.code == "E802" and "gw_idd" in diagnostic.message
    assert diagnostic.hint == "did you mean 'gw_id'?"


def test_meta_areas_keep_six_significant_figures_and_name_the_distance_convention(
    tmp_path: Path,
) -> None:
    from tracerules.products.actions.gw_meta import significant
    from tracerules.products.sky.skymap import skymap_from_alert, summarize

    assert significant(0.019712345) == 0.0197123  # 4 decimal places would give 0.0197
    assert significant(27813.456789) == 27813.5
    assert significant(0.0) == 0.0
    outcome = run(GwAlertConfig(type="gw-alert", csv=False, png=False), _request(CBC, tmp_path))
    assert outcome.ok, outcome.log
    extra = yaml.safe_load((tmp_path / CBC_FOLDER / "meta.yaml").read_text())["EXTRA"]
    skymap = skymap_from_alert(json.loads((LVK / CBC).read_bytes()))
    assert skymap is not None
    summary = summarize(skymap, ephemeris=False)
    for key in ("area10", "area50", "area90"):
        assert extra[key] == pytest.approx(getattr(summary, key), rel=5e-6)
    assert extra["area10"] < 1.0  # small enough that fixed decimals would cut digits
    assert "LVK" in extra["distance_convention"] and "DISTMEAN" in extra["distance_convention"]


SKYMAPS = DATA / "skymaps"
UPDATE_FOLDER = Path("mockevents/MS181101ab/20181101T223625_update")


def _skymaps_request(name: str, out: Path) -> ActionRequest:
    payload = (SKYMAPS / name).read_bytes()
    return ActionRequest("r", "E1", 7, "key", {"notice_id": 3}, payload, out)


@pytest.mark.parametrize("alert_json", [True, False])
def test_two_alerts_of_one_type_in_one_second_keep_their_own_folders(
    tmp_path: Path, alert_json: bool
) -> None:
    config = GwAlertConfig(type="gw-alert", csv=False, png=False, alert_json=alert_json)
    update = _skymaps_request("MS181101ab-update.json", tmp_path)
    ext_update = _skymaps_request("MS181101ab-ext-update.json", tmp_path)
    for request in (update, ext_update, update, ext_update):  # replays reuse their folder
        assert run(config, request).ok
    first, second = tmp_path / UPDATE_FOLDER, tmp_path / f"{UPDATE_FOLDER}_2"
    assert sorted(p.name for p in first.parent.iterdir()) == [first.name, second.name]
    for folder, request in ((first, update), (second, ext_update)):
        meta = yaml.safe_load((folder / "meta.yaml").read_text())
        assert meta["ALERT"]["time_created"] == "2018-11-01T22:36:25Z"
        assert (meta["ALERT"].get("external_coinc") is not None) is (request is ext_update)
        if alert_json:
            assert (folder / "MS181101ab-update.json").read_bytes() == request.payload


def test_the_combined_sky_map_is_written_as_its_own_fits(tmp_path: Path) -> None:
    from tracerules.products.sky.skymap import read_skymap

    request = _skymaps_request("MS181101ab-ext-update.json", tmp_path)
    outcome = run(GwAlertConfig(type="gw-alert", csv=False, png=False), request)
    assert outcome.ok, outcome.log
    path = tmp_path / UPDATE_FOLDER / "combined-ext.multiorder.fits"
    assert str(path) in outcome.files
    alert = json.loads(request.payload)
    assert path.read_bytes() == base64.b64decode(alert["external_coinc"]["combined_skymap"])
    combined = read_skymap(path)
    assert hp.total_probability(combined.uniq, combined.probdensity) == pytest.approx(1, abs=1e-6)
    gw_map = (tmp_path / UPDATE_FOLDER / "bayestar.multiorder.fits").read_bytes()
    assert path.read_bytes() != gw_map
    # Alerts without one have no such file; the file can be switched off.
    run(GwAlertConfig(type="gw-alert", csv=False, png=False), _request(CBC, tmp_path))
    assert not (tmp_path / CBC_FOLDER / "combined-ext.multiorder.fits").exists()
    off = GwAlertConfig(type="gw-alert", csv=False, png=False, combined_skymap=False)
    run(off, _skymaps_request("MS181101ab-ext-update.json", tmp_path / "off"))
    assert not (tmp_path / "off" / UPDATE_FOLDER / "combined-ext.multiorder.fits").exists()


def test_skymap_csv_reads_like_gocarts(tmp_path: Path) -> None:
    """gocart writes two comment lines, then IPIX,PROB,DISTMU,DISTSIGMA,RA,DEC,GLON,GLAT with
    DISTMU ``inf`` where a pixel has no distance: a plugin that skips two lines, reads by
    name or by position, or tests DISTMU for infinity reads ours the same way."""
    from tracerules.products.sky.skymap import skymap_from_alert

    config = GwAlertConfig(type="gw-alert", png=False, nside=16)
    assert run(config, _skymaps_request("MS181101ab-update.json", tmp_path)).ok
    path = tmp_path / UPDATE_FOLDER / "skymap.csv"
    lines = path.read_text().splitlines()
    assert lines[:2] == ["# EVENT:MS181101ab", "# NSIDE:16"]
    table = np.genfromtxt(path, delimiter=",", skip_header=2, names=True)
    assert list(table.dtype.names or ())[:8] == GOCART_CSV_COLUMNS
    skymap = skymap_from_alert(json.loads((SKYMAPS / "MS181101ab-update.json").read_bytes()))
    assert skymap is not None and skymap.distmu is not None and skymap.distsigma is not None
    # Every pixel of this map is finer than nside 16: each row's DISTMU/DISTSIGMA is the
    # probability-weighted mean of its informative children's, inf/1 when it has none.
    order, ipix = hp.uniq_to_order_ipix(skymap.uniq)
    assert order.min() >= 4
    parent = ipix >> (2 * (order - 4))
    prob = skymap.probdensity * hp.pixel_area(order)
    good = np.isfinite(skymap.distmu)
    weight = np.bincount(parent[good], prob[good], minlength=12 * 16**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.bincount(parent[good], (prob * skymap.distmu)[good], minlength=weight.size) / weight
        sigma = np.bincount(parent[good], (prob * skymap.distsigma)[good], weight.size) / weight
    known = weight > 0
    assert (~known).any()  # the map has pixels without distance (DISTMU = inf)
    np.testing.assert_allclose(table["DISTMU"][known], mu[known], atol=1e-4)
    np.testing.assert_allclose(table["DISTSIGMA"][known], sigma[known], atol=1e-4)
    assert np.isposinf(table["DISTMU"][~known]).all()
    assert (table["DISTSIGMA"][~known] == 1).all()
    assert np.isnan(table["DISTMEAN"][~known]).all()  # written empty, read as NaN
