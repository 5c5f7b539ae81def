"""The `mwa` action through the engine, against a local stand-in of the MWA trigger service.

Real Swift BAT notices (a burst at 37.7 deg elevation from the MWA, and one at 22 deg, below
the 30 deg limit) and a real-format LVK alert with its sky map; a real SQLite store; the
stand-in parses form bodies like the service and answers in its JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA, NOTICES
from tests.observatory_standins import MWA_KEY, Scripted, StandIn, mwa_answer, serve
from tests.sql import sql_rows
from tracerules.products.sky.mwa_pointings import gw_pointings
from tracerules.products.sky.sites import Site
from tracerules.products.sky.skymap import skymap_from_alert
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.engine.arbitration import repoint_distance
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.sources.files import notice_from_bytes, notice_from_file
from tracerules.runtime.sources.notices import Notice
from tracerules.runtime.store.store import Store

SITES = Path(__file__).parents[1] / "rules" / "sites.yaml"
VISIBLE_BAT = NOTICES / "swift_chain" / "02_BAT_GRB_Pos_1201696-785.xml"  # 37.7 deg up
EXAMPLES = Path(__file__).parents[1] / "examples" / "notices"
LOW_BAT = EXAMPLES / "swift" / "1016881" / "02_BAT_GRB_Pos_1016881-253.xml"  # 21.9 deg up
GW_ALERT = DATA / "skymaps" / "igwn_gwalert_preliminary.json"

BAT_TRIGGER = """\
  - id: {id}
    topics: [gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK]
    event_id: trig_id
    event_time: burst_time
    expiry: 1 d
    priority: {priority}
    fields:
      trig_id: {{xpath: "//Param[@name='TrigID']/@value", as: int}}
      burst_time: {{xpath: "//ISOTime", as: time}}
      ra: {{xpath: "//Position2D/Value2/C1", as: angle}}
      dec: {{xpath: "//Position2D/Value2/C2", as: angle}}
      is_test: {{expr: "{test}"}}
    actions:
      - type: mwa
        mode: {mode}
        url: {url}
        project_id: G0055
        secure_key: ${{env:TR_MWA_KEY}}
        ra_unit: hours
        nobs: 2
        exptime: 120
        freqspecs: ["145,24", "121:24"]
        freqres: 10
        inttime: 0.5
        tileset: all_on
        obsname: "Swift_{{trig_id}}"
        creator: tracerules-tests
        test: is_test
    lint: {{disable: [no-conditions]}}
"""

GW_TRIGGER = """\
  - id: {id}
    topics: [igwn.gwalert]
    event_id: superevent_id
    event_time: time_made
    expiry: 1 d
    priority: {priority}
    fields:
      superevent_id: {{jsonpath: "$.superevent_id", as: string}}
      time_made: {{jsonpath: "$.time_created", as: time}}
    actions:
      - type: mwa
        mode: gw
        url: {url}
        project_id: G0094
        secure_key: ${{env:TR_MWA_KEY}}
        ra_unit: degrees
        exptime: 600
        nobs: {nobs}
        repoint: {repoint}
    lint: {{disable: [no-conditions]}}
"""


@pytest.fixture
def mwa() -> Iterator[StandIn]:
    with serve(mwa_answer) as stand_in:
        yield stand_in


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TR_MWA_KEY", MWA_KEY)


def engine_for(tmp_path: Path, body: str, *, dry_run: bool = False, name: str = "rules") -> Engine:
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(DATA / "rules" / "topics.yaml", folder / "topics.yaml")
    shutil.copy(SITES, folder / "sites.yaml")
    (folder / "triggers.yaml").write_text("schema_version: 1\ntriggers:\n" + body)
    store = Store(tmp_path / f"{name}.sqlite")
    out = tmp_path / f"{name}-out"
    return Engine(load_ruleset([folder]), store, out_dir=out, dry_run=dry_run, products=dry_run)


def bat(url: str, *, mode: str = "correlator", test: str = "false", **extra: Any) -> str:
    values = {"id": "mwa-bat", "priority": 10, "url": url, "mode": mode, "test": test}
    return BAT_TRIGGER.format(**{**values, **extra})


def actions(engine: Engine) -> list[Any]:
    return sql_rows(engine.store, "SELECT * FROM actions ORDER BY id")


def requests_file(engine: Engine, row: Any) -> dict[str, Any]:
    files = json.loads(row["files"])
    assert len(files) == 1, files
    data: dict[str, Any] = json.loads(Path(files[0]).read_text())
    return data


def as_sent(stand_in: StandIn) -> list[dict[str, Any]]:
    """What the stand-in received, in the form a request file shows (key as ***)."""
    out = []
    for r in stand_in.received:
        query = "&".join(f"{k}={v}" for k, v in r.query.items())
        body = {k: "***" if v == MWA_KEY else v for k, v in r.body.items()}
        out.append({"method": r.method, "path": r.path, "query": query, "body": body})
    return out


def as_written(document: dict[str, Any], base: str) -> list[dict[str, Any]]:
    from urllib.parse import parse_qsl, urlsplit

    out = []
    for r in document["requests"]:
        parts = urlsplit(r["url"])
        assert r["url"].startswith(base)
        query = "&".join(f"{k}={v}" for k, v in parse_qsl(parts.query))
        out.append({"method": r["method"], "path": parts.path, "query": query, "body": r["body"]})
    return out


def test_correlator_sends_every_option_the_service_accepts(tmp_path: Path, mwa: StandIn) -> None:
    engine = engine_for(tmp_path, bat(mwa.url))
    engine.process(notice_from_file(VISIBLE_BAT))
    [row] = actions(engine)
    assert row["status"] == "done", row["log"]
    [seen] = mwa.received
    assert (seen.method, seen.path) == ("POST", "/triggerobs")
    assert seen.query == {"project_id": "G0055", "obsname": "Swift_1201696"}
    assert seen.body == {
        "secure_key": MWA_KEY,
        "ra": repr(round(95.7721 / 15, 6)),  # ra_unit: hours
        "dec": "-48.3592",
        "freqspecs": '["145,24", "121:24"]',
        "nobs": "2",
        "exptime": "120",
        "calibrator": "True",
        "calexptime": "120",
        "freqres": "10",
        "inttime": "0.5",
        "avoidsun": "True",
        "tileset": "all_on",
        "creator": "tracerules-tests",
        "pretend": "False",
    }
    assert "calibrator HerA" in row["log"]


def test_observation_end_is_nobs_freqspecs_exposure_plus_calibrator(
    tmp_path: Path, mwa: StandIn
) -> None:
    engine = engine_for(tmp_path, bat(mwa.url))
    notice = notice_from_file(VISIBLE_BAT)
    engine.process(notice)
    obs = sql_rows(engine.store, "SELECT started, until FROM observations")[0]
    assert obs["until"] - obs["started"] == 2 * 2 * 120 + 120


def test_the_secure_key_is_never_stored_logged_or_written(
    tmp_path: Path, mwa: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    engine = engine_for(tmp_path, bat(mwa.url))
    engine.process(notice_from_file(VISIBLE_BAT))
    assert mwa.received[0].body["secure_key"] == MWA_KEY  # it did go on the wire
    engine.store.close()
    assert MWA_KEY.encode() not in (tmp_path / "rules.sqlite").read_bytes()
    for path in (tmp_path / "rules-out").rglob("*"):
        if path.is_file():
            assert MWA_KEY.encode() not in path.read_bytes(), path
    assert MWA_KEY not in caplog.text


def test_a_target_below_the_limit_is_refused_before_any_request(
    tmp_path: Path, mwa: StandIn
) -> None:
    engine = engine_for(tmp_path, bat(mwa.url))
    engine.process(notice_from_file(LOW_BAT))
    [row] = actions(engine)
    assert row["status"] == "refused"
    assert "21.88 deg elevation" in row["log"]
    assert "below the 30 deg limit of site 'mwa'" in row["log"]
    assert mwa.received == []
    assert sql_rows(engine.store, "SELECT * FROM observations") == []


def test_a_test_observation_is_sent_as_pretend(tmp_path: Path, mwa: StandIn) -> None:
    engine = engine_for(tmp_path, bat(mwa.url, test="true"))
    engine.process(notice_from_file(VISIBLE_BAT))
    assert mwa.received[0].body["pretend"] == "True"
    [obs] = sql_rows(engine.store, "SELECT test FROM observations")
    assert obs["test"] == 1


def test_vcs_mode_goes_to_triggervcs(tmp_path: Path, mwa: StandIn) -> None:
    engine = engine_for(tmp_path, bat(mwa.url, mode="vcs"))
    engine.process(notice_from_file(VISIBLE_BAT))
    [seen] = mwa.received
    assert seen.path == "/triggervcs" and seen.body["vcsmode"] == "True"


@pytest.mark.parametrize(
    ("scripted", "expected"),
    [
        (None, "Invalid secure_key for project_id G0055"),  # the service's own error
        (Scripted(200, b"<html>Service Unavailable</html>", 0, "text/html"), "not JSON"),
        (Scripted(500, b"<h1>Server Error (500)</h1>", 0, "text/html"), "status 500, not JSON"),
        (Scripted(200, b'{"success": false, "errors": {"0": "Observations clash"}}'), "clash"),
        (Scripted(200, b'{"success": true}', 5.0), "no answer within 1 s"),
    ],
)
def test_a_bad_answer_is_a_recorded_failure_with_the_service_errors(
    tmp_path: Path,
    mwa: StandIn,
    monkeypatch: pytest.MonkeyPatch,
    scripted: Scripted | None,
    expected: str,
) -> None:
    if scripted is None:
        monkeypatch.setenv("TR_MWA_KEY", "a-wrong-key-0000")
    else:
        mwa.script.append(scripted)
    body = bat(mwa.url).replace(
        "        test: is_test\n", "        test: is_test\n        request_timeout: 1\n"
    )
    engine = engine_for(tmp_path, body)
    engine.process(notice_from_file(VISIBLE_BAT))
    [row] = actions(engine)
    assert row["status"] == "failed"
    assert expected in row["log"], row["log"]
    assert "a-wrong-key-0000" not in row["log"]


def test_dry_run_writes_exactly_what_a_live_run_sends(tmp_path: Path, mwa: StandIn) -> None:
    dry = engine_for(tmp_path, bat(mwa.url), dry_run=True, name="dry")
    dry.process(notice_from_file(VISIBLE_BAT))
    assert mwa.received == []  # a dry run sends nothing
    [dry_row] = actions(dry)
    written = requests_file(dry, dry_row)
    assert MWA_KEY not in json.dumps(written)
    live = engine_for(tmp_path, bat(mwa.url), name="live")
    live.process(notice_from_file(VISIBLE_BAT))
    assert as_written(written, mwa.url) == as_sent(mwa)
    assert written["requests"][0]["body"]["secure_key"] == "***"


def gw_notice(received: float | None = None) -> Notice:
    notice = notice_from_file(GW_ALERT)
    return notice if received is None else dataclasses.replace(notice, received=received)


def test_gw_dumps_the_buffer_then_points_four_subarrays(tmp_path: Path, mwa: StandIn) -> None:
    body = GW_TRIGGER.format(id="mwa-gw", priority=10, url=mwa.url, repoint="1 deg", nobs=1)
    engine = engine_for(tmp_path, body)
    engine.process(gw_notice())
    [row] = actions(engine)
    assert row["status"] == "done", row["log"]
    dump, vcs = mwa.received
    assert dump.path == "/triggerbuffer"
    assert dump.body == {
        "secure_key": MWA_KEY,
        "pretend": "False",
        "start_time": "0",
        "obstime": "600",
    }
    assert vcs.path == "/triggervcs"
    assert json.loads(vcs.body["subarrays"]) == ["all_ne", "all_nw", "all_se", "all_sw"]
    ras, decs = json.loads(vcs.body["ra"]), json.loads(vcs.body["dec"])
    plan = json.loads(row["request"])["_plan"]
    assert [[round(r, 6), round(d, 6)] for r, d in plan["pointings"]] == [
        list(p) for p in zip(ras, decs, strict=True)
    ]
    assert len(ras) == 4 and "obsids [1400000000, 1400000008]" in row["log"]


def test_gw_repointing_does_not_dump_the_buffer_again(tmp_path: Path, mwa: StandIn) -> None:
    # 10 x 600 s + 120 s: the first observation still runs when the update comes.
    body = GW_TRIGGER.format(id="mwa-gw", priority=10, url=mwa.url, repoint="0.1 deg", nobs=10)
    engine = engine_for(tmp_path, body)
    first = gw_notice()
    engine.process(first)
    # An update of the alert an hour later, same map: the sky has turned, the spots moved.
    alert = json.loads(first.payload)
    alert["alert_type"] = "UPDATE"
    update = notice_from_bytes(json.dumps(alert).encode(), offset=99)
    later = dataclasses.replace(update, received=first.received + 3600)
    engine.process(later)
    paths = [r.path for r in mwa.received]
    assert paths == ["/triggerbuffer", "/triggervcs", "/triggervcs"], paths
    rows = actions(engine)
    assert "arbitration: repoint" in rows[1]["log"]
    # The repeat names the event's first observation as its group.
    start = json.loads(rows[0]["request"])["_plan"]["start_gps"]
    assert "group_id" not in mwa.received[1].body
    assert mwa.received[2].body["group_id"] == str(start)


def test_correlator_and_vcs_share_the_telescope(tmp_path: Path, mwa: StandIn) -> None:
    body = bat(mwa.url) + bat(mwa.url, mode="vcs", id="mwa-bat-vcs", priority=10).replace(
        "trig_id, as: int", "trig_id, as: int"
    )
    engine = engine_for(tmp_path, body)
    engine.process(notice_from_file(VISIBLE_BAT))
    statuses = sorted(r["status"] for r in actions(engine))
    assert statuses == ["clash", "done"]
    assert [r.path for r in mwa.received] == ["/triggerobs"]


def test_test_and_live_never_clash(tmp_path: Path, mwa: StandIn) -> None:
    body = bat(mwa.url) + bat(mwa.url, id="mwa-bat-test", test="true")
    engine = engine_for(tmp_path, body)
    engine.process(notice_from_file(VISIBLE_BAT))
    assert [r["status"] for r in actions(engine)] == ["done", "done"]
    assert sorted(r.body["pretend"] for r in mwa.received) == ["False", "True"]


def test_a_missing_key_variable_sends_nothing(tmp_path: Path, mwa: StandIn) -> None:
    os.environ.pop("TR_MWA_KEY")
    engine = engine_for(tmp_path, bat(mwa.url))
    engine.process(notice_from_file(VISIBLE_BAT))
    [row] = actions(engine)
    assert row["status"] == "failed" and "TR_MWA_KEY" in row["log"]
    assert mwa.received == []


def test_repoint_distance_is_the_largest_distance_to_the_nearest_current_pointing() -> None:
    current = ((10.0, -30.0), (40.0, -30.0))
    assert repoint_distance(((10.0, -30.0),), current) == pytest.approx(0.0)
    assert repoint_distance(((40.0, -29.0), (10.0, -30.0)), current) == pytest.approx(1.0)
    assert repoint_distance(((10.0, -30.0), (10.0, -10.0)), current) == pytest.approx(20.0)


GW_THEN_TARGET = """\
  - id: mwa-gw
    topics: [igwn.gwalert]
    event_id: superevent_id
    event_time: time_made
    expiry: 1 d
    priority: 10
    fields: &alert
      superevent_id: {{jsonpath: "$.superevent_id", as: string}}
      time_made: {{jsonpath: "$.time_created", as: time}}
      alert_type: {{jsonpath: "$.alert_type", as: string}}
    conditions:
      first_alert: alert_type == "PRELIMINARY"
    actions:
      - type: mwa
        mode: gw
        url: {url}
        project_id: G0094
        secure_key: ${{env:TR_MWA_KEY}}
        ra_unit: degrees
        nobs: 4
        exptime: 600
        repoint: 1 deg
  - id: mwa-target
    topics: [igwn.gwalert]
    event_id: superevent_id
    event_time: time_made
    expiry: 1 d
    priority: 10
    fields:
      <<: *alert
      ra: {{expr: "{ra}", as: angle}}
      dec: {{expr: "{dec}", as: angle}}
    conditions:
      update: alert_type == "UPDATE"
    actions:
      - type: mwa
        mode: correlator
        url: {url}
        project_id: G0094
        secure_key: ${{env:TR_MWA_KEY}}
        ra_unit: degrees
        repoint: 1 deg
"""


def test_a_target_on_any_running_gw_pointing_clashes(tmp_path: Path, mwa: StandIn) -> None:
    """The running GW observation has four pointings: a request at its third is not new,
    although it is far more than the threshold from the first."""
    first = gw_notice()
    skymap = skymap_from_alert(json.loads(first.payload))
    assert skymap is not None
    mwa_site = Site("mwa", -26.703319444, 116.670813889, 377.8, 30.0)
    spots = gw_pointings(skymap.uniq, skymap.probdensity, first.received, mwa_site)
    third = spots[2]
    assert repoint_distance(((third.ra, third.dec),), ((spots[0].ra, spots[0].dec),)) > 10
    body = GW_THEN_TARGET.format(url=mwa.url, ra=f"{third.ra:.6f}", dec=f"{third.dec:.6f}")
    engine = engine_for(tmp_path, body)
    engine.process(first)
    alert = json.loads(first.payload)
    alert["alert_type"] = "UPDATE"
    update = notice_from_bytes(json.dumps(alert).encode(), offset=7)
    engine.process(dataclasses.replace(update, received=first.received + 60))
    gw, target = actions(engine)
    assert gw["status"] == "done" and target["status"] == "clash"
    assert "0.000 deg from mwa-gw/MS260605l" in target["log"]
    assert [r.path for r in mwa.received] == ["/triggerbuffer", "/triggervcs"]


def test_gw_without_a_sky_map_is_refused_before_any_request(tmp_path: Path, mwa: StandIn) -> None:
    body = GW_TRIGGER.format(id="mwa-gw", priority=10, url=mwa.url, repoint="1 deg", nobs=1)
    engine = engine_for(tmp_path, body)
    retraction = notice_from_file(DATA / "skymaps" / "igwn_gwalert_retraction.json")
    engine.process(retraction)
    [row] = actions(engine)
    assert row["status"] == "refused"
    assert "no GW pointings" in row["log"]
    assert mwa.received == []


def test_a_pretend_config_is_arbitrated_as_a_test(tmp_path: Path, mwa: StandIn) -> None:
    pretend = bat(mwa.url, id="mwa-bat-pretend").replace(
        "        test: is_test\n", "        test: is_test\n        pretend: true\n"
    )
    engine = engine_for(tmp_path, bat(mwa.url) + pretend)
    engine.process(notice_from_file(VISIBLE_BAT))
    assert [r["status"] for r in actions(engine)] == ["done", "done"]
    assert sorted(r.body["pretend"] for r in mwa.received) == ["False", "True"]


def test_an_unreadable_sky_map_refuses_the_request_not_the_decision(
    tmp_path: Path, mwa: StandIn
) -> None:
    body = GW_TRIGGER.format(id="mwa-gw", priority=10, url=mwa.url, repoint="1 deg", nobs=1)
    engine = engine_for(tmp_path, body)
    alert = json.loads(GW_ALERT.read_text())
    alert["event"]["skymap"] = alert["event"]["skymap"][:5000]  # a truncated FITS file
    processed = engine.process(notice_from_bytes(json.dumps(alert).encode()))
    [decision] = processed.decisions
    assert decision.conclusion.value == "PASS"
    [row] = actions(engine)
    assert row["status"] == "refused" and "no GW pointings" in row["log"]
    assert mwa.received == []
