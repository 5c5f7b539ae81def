"""Extreme values in notices and in the store never break a reader (issue 11, item 2).

A store is filled with real LVK alerts made hostile (`time_created: Infinity`, `far` with
5,000 digits, 10^5 levels of JSON), plus the infinite times an older tracerules wrote; then
`events list`, `events show`, a dry run from the store and every dashboard page must answer.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import NOTICES
from tests.dashboard_server import Server, get
from tests.sql import sql_rows, sql_run
from tracerules.cli.main import app
from tracerules.dsl.convert import CONVERSIONS
from tracerules.dsl.values import Missing
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.sources.notices import Notice
from tracerules.runtime.sources.topics import infer_topic
from tracerules.runtime.store.store import Store
from tracerules.web.app import create_app

RULES = Path(__file__).parent / "data" / "service_rules"
ALERT = NOTICES / "lvk_json" / "02_MS181101ab-preliminary_displayexample.json"
DEEP = b'{"superevent_id": "S1", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
runner = CliRunner()


def hostile_alerts() -> dict[str, bytes]:
    text = ALERT.read_text()
    created = json.dumps(json.loads(text)["time_created"])
    return {
        "infinite": text.replace(created, "Infinity").encode(),
        "far": text.replace('"superevent_id"', '"far": ' + "9" * 5000 + ', "superevent_id"', 1)
        .replace("MS181101ab", "MS181101far")
        .encode(),
        "deep": DEEP,
        "nan": text.replace(created, "NaN").replace("MS181101ab", "MS181101nan").encode(),
    }


@pytest.mark.parametrize(
    "raw", [math.inf, -math.inf, math.nan, 10**400, "1e999", "9" * 5000, "NaN", "Infinity"]
)
@pytest.mark.parametrize("kind", ["float", "int", "time", "duration", "angle", "bool"])
def test_conversions_give_a_missing_value_with_a_reason(kind: str, raw: object) -> None:
    convert, _ = CONVERSIONS[kind]
    value = convert(raw)
    if kind == "bool" and not (isinstance(raw, float) and math.isnan(raw)):
        return  # any non-zero number is true, infinite ones included
    if kind == "int" and isinstance(raw, int):
        assert value == raw  # Python integers have no range to overflow
        return
    assert isinstance(value, Missing) and value.reason, (kind, raw, value)


def test_topic_inference_survives_a_notice_nested_100000_deep() -> None:
    assert sys.getrecursionlimit() < 100_000
    assert infer_topic(DEEP) is None


@pytest.fixture
def extreme_store(tmp_path: Path) -> Path:
    path = tmp_path / "store.sqlite"
    store = Store(path)
    engine = Engine(load_ruleset([RULES]), store, out_dir=tmp_path / "out", run_actions=False)
    statuses = {}
    for offset, (name, payload) in enumerate(hostile_alerts().items()):
        notice = Notice("igwn.gwalert", payload, offset=offset, created=1.7e9, received=1.7e9)
        statuses[name] = engine.process(notice).status
    assert statuses == {"infinite": "evaluated", "far": "dead", "deep": "dead", "nan": "evaluated"}
    times = [r[0] for r in sql_rows(store, "SELECT event_time FROM events")]
    assert times == [None, None]  # no infinite or NaN time reaches the store from now on
    # ... but a store written by an older tracerules holds them: readers must cope.
    sql_run(store, "UPDATE events SET event_time=?, first_seen=?", (math.inf, math.inf))
    sql_run(store, "UPDATE notices SET created=? WHERE id=1", (math.inf,))
    sql_run(store, "UPDATE decisions SET at=? WHERE id=1", (-math.inf,))
    store.close()
    return path


def test_events_list_and_show_answer_on_extreme_values(extreme_store: Path) -> None:
    listed = runner.invoke(app, ["events", "list", "--store", str(extreme_store)])
    assert listed.exit_code == 0, listed.output
    assert "MS181101ab" in listed.output and "not a time: inf" in listed.output
    as_json = runner.invoke(app, ["events", "list", "--store", str(extreme_store), "-f", "json"])
    assert as_json.exit_code == 0, as_json.output
    assert "Infinity" not in as_json.output and json.loads(as_json.output)
    shown = runner.invoke(
        app, ["events", "show", "lvk-alert", "MS181101ab", "--store", str(extreme_store)]
    )
    assert shown.exit_code == 0, shown.output
    assert "not a time" in shown.output


def test_a_dry_run_from_the_store_answers_on_extreme_values(extreme_store: Path) -> None:
    result = runner.invoke(app, ["dry-run", str(extreme_store), "-r", str(RULES), "-q"])
    assert result.exit_code == 0, result.output
    assert "4 notices" in result.output and "2 dead letters" in result.output


def test_a_dry_run_of_hostile_files_answers(tmp_path: Path) -> None:
    for name, payload in hostile_alerts().items():
        (tmp_path / f"{name}.json").write_bytes(payload)
    args = ["dry-run", str(tmp_path), "--topic", "igwn.gwalert", "-r", str(RULES), "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 dead letters" in result.output
    inferred = runner.invoke(app, ["dry-run", str(tmp_path), "-r", str(RULES), "-q"])
    assert inferred.exit_code == 0, inferred.output


def test_every_dashboard_page_answers_on_extreme_values(extreme_store: Path) -> None:
    server = Server(create_app(extreme_store, [RULES]))
    try:
        pages = ["/", "/triggers", "/triggers/lvk-alert", "/notices", "/log"]
        pages += [f"/notices/{n}" for n in range(1, 5)]
        for page in pages:
            code, _, body = get(server.url + page)
            assert code == 200, (page, body[-500:])
    finally:
        server.stop()
