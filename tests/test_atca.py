"""The `atca` action through the engine, against a local stand-in of the rapid-response service.

A real Swift BAT notice (GRB 1201696, 19 deg up at Narrabri), a real SQLite store, and a
stand-in that checks the token and the schedule like the service and answers in its JSON.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA, NOTICES
from tests.observatory_standins import ATCA_TOKEN, Scripted, StandIn, atca_answer, serve
from tests.sql import sql_rows
from tracerules.errors import RuleError
from tracerules.products.actions.atca import sexagesimal
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.sources.files import notice_from_file
from tracerules.runtime.store.store import Store

SITES = Path(__file__).parents[1] / "rules" / "sites.yaml"
BAT = NOTICES / "swift_chain" / "02_BAT_GRB_Pos_1201696-785.xml"

TRIGGER = """\
  - id: atca-bat
    topics: [gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK]
    event_id: trig_id
    event_time: burst_time
    expiry: 1 d
    priority: 10
    fields:
      trig_id: {{xpath: "//Param[@name='TrigID']/@value", as: int}}
      burst_time: {{xpath: "//ISOTime", as: time}}
      ra: {{xpath: "//Position2D/Value2/C1", as: angle}}
      dec: {{xpath: "//Position2D/Value2/C2", as: angle}}
      is_test: {{expr: "{test}"}}
    actions:
      - type: atca
        url: {url}
        project: C3204
        email: grb@example.org
        token: ${{env:TR_ATCA_TOKEN}}
        target_name: "GRB{{trig_id}}"
        calibrator: {{name: "0530-727", ra: "05:29:30.0", dec: "-72:45:28.5"}}
        calibrator_scan: 2 min
        bands:
          - {{band: {band}, exposure: 20 min{freqs}}}
          - {{band: 16cm, exposure: 1 h}}
        minimum_time: 1 h
        maximum_lag: 6 h
        request_timeout: 1
        test: is_test
    lint: {{disable: [no-conditions]}}
"""


@pytest.fixture
def atca() -> Iterator[StandIn]:
    with serve(atca_answer) as stand_in:
        yield stand_in


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TR_ATCA_TOKEN", ATCA_TOKEN)


def rules(tmp_path: Path, url: str, **given: str) -> Path:
    values = {"url": url, "test": "true", "band": "7mm", "freqs": "", **given}
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    shutil.copy(DATA / "rules" / "topics.yaml", folder / "topics.yaml")
    shutil.copy(SITES, folder / "sites.yaml")
    body = TRIGGER.format(**values)
    (folder / "triggers.yaml").write_text("schema_version: 1\ntriggers:\n" + body)
    return folder


def run_bat(tmp_path: Path, url: str, *, dry_run: bool = False, **given: str) -> Any:
    folder = rules(tmp_path, url, **given)
    name = "dry" if dry_run else "live"
    store = Store(tmp_path / f"{name}.sqlite")
    engine = Engine(
        load_ruleset([folder]), store, out_dir=tmp_path / name, dry_run=dry_run, products=dry_run
    )
    engine.process(notice_from_file(BAT))
    [row] = sql_rows(store, "SELECT * FROM actions")
    return row


EXPECTED_SCHEDULE = """\
$SCAN*V5
Source=0530-727
RA=05:29:30.0
Dec=-72:45:28.5
Epoch=J2000
ScanLength=00:02:00
ScanType=Dwell
Project=C3204
Freq-1=33000
Freq-2=35000
$SCANEND
$SCAN*V5
Source=GRB1201696
RA=06:23:05.3
Dec=-48:21:33.1
Epoch=J2000
ScanLength=00:20:00
ScanType=Dwell
Project=C3204
Freq-1=33000
Freq-2=35000
$SCANEND
"""


def test_request_follows_the_client_library_format(tmp_path: Path, atca: StandIn) -> None:
    row = run_bat(tmp_path, atca.url)
    assert row["status"] == "done", row["log"]
    [seen] = atca.received
    assert seen.method == "POST" and seen.path == "/"
    body = dict(seen.body)
    schedule = body.pop("schedule")
    assert body == {
        "email": "grb@example.org",
        "authToken": ATCA_TOKEN,
        "nameTarget": "GRB1201696",
        "nameCalibrator": "0530-727",
        "minimumTime": "1",
        "maximumLag": "6",
        "test": "True",
        "noTimeLimit": "True",
        "noScoreLimit": "True",
        "noEmail": "True",
    }
    # 7 mm first (calibrator, then target), then 16 cm with its usual 2.1 GHz setup.
    assert schedule.startswith(EXPECTED_SCHEDULE)
    assert schedule.count("$SCAN*V5") == 4 and "Freq-1=2100\nFreq-2=2100" in schedule
    assert "granted (test): id rr-0001, start 2023-12-10 21:40:00, 2.0 h" in row["log"]


def test_a_live_request_is_not_a_test(tmp_path: Path, atca: StandIn) -> None:
    run_bat(tmp_path, atca.url, test="false")
    assert "test" not in atca.received[0].body and "noEmail" not in atca.received[0].body


def test_observation_end_is_the_schedule_length(tmp_path: Path, atca: StandIn) -> None:
    run_bat(tmp_path, atca.url)
    store = Store(tmp_path / "live.sqlite")
    [obs] = sql_rows(store, "SELECT started, until FROM observations")
    assert obs["until"] - obs["started"] == (2 + 20) * 60 + (2 + 60) * 60


@pytest.mark.parametrize(
    ("scripted", "expected"),
    [
        (None, "Authentication token is not valid"),
        (Scripted(200, b"Authentication required", 0, "text/plain"), "not JSON"),
        (Scripted(200, json.dumps({"error": "Project has no time left"}).encode()), "no time"),
        (Scripted(200, b'{"authenticationToken": {"verified": true}}', 3.0), "no answer"),
    ],
)
def test_a_refusal_or_bad_answer_is_a_failure(
    tmp_path: Path,
    atca: StandIn,
    monkeypatch: pytest.MonkeyPatch,
    scripted: Scripted | None,
    expected: str,
) -> None:
    if scripted is None:
        monkeypatch.setenv("TR_ATCA_TOKEN", "not-the-token-1234")
    else:
        atca.script.append(scripted)
    row = run_bat(tmp_path, atca.url)
    assert row["status"] == "failed"
    assert expected in row["log"], row["log"]
    assert "not-the-token-1234" not in row["log"]


def test_dry_run_writes_what_is_sent_with_the_token_redacted(tmp_path: Path, atca: StandIn) -> None:
    dry = run_bat(tmp_path, atca.url, dry_run=True)
    assert atca.received == []
    [path] = json.loads(dry["files"])
    written = json.loads(Path(path).read_text())["requests"]
    run_bat(tmp_path, atca.url)
    [seen] = atca.received
    assert written == [
        {
            "name": "rapid_response",
            "method": "POST",
            "url": atca.url,
            "body": {**seen.body, "authToken": "***"},
        }
    ]
    assert ATCA_TOKEN not in Path(path).read_text()


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"band": "6mm"}, "bands.0.band"),  # TRACE-T's mislabelled 7 mm band
        ({"freqs": ", freq1: 60000"}, "60000 MHz is not in the 7mm band"),
    ],
)
def test_a_wrong_band_is_an_error_at_its_line(
    tmp_path: Path, given: dict[str, str], message: str
) -> None:
    folder = rules(tmp_path, "http://127.0.0.1:9", **given)
    with pytest.raises(RuleError) as err:
        load_ruleset([folder])
    text = str(err.value)
    assert "triggers.yaml:25:" in text and message in text, text


@pytest.mark.parametrize(
    ("degrees", "hours", "text"),
    [
        (95.7721, True, "06:23:05.3"),
        (-48.3592, False, "-48:21:33.1"),
        (359.99999, True, "00:00:00.0"),
        (0.0, False, "+00:00:00.0"),
        (-0.5, False, "-00:30:00.0"),
    ],
)
def test_sexagesimal(degrees: float, hours: bool, text: str) -> None:
    assert sexagesimal(degrees, hours) == text
