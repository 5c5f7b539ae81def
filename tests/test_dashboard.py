"""`tracerules serve`: every page over a store filled by a dry run of real notices.

A real uvicorn server on a loopback port, read with urllib and with headless Chromium through
Playwright (when installed): lights against the store, filters, the token gate, the stream
status header. The products folder is in test_dashboard_products.py.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browsing import open_page, visit, watch
from tests.conftest import DATA, NOTICES
from tests.dashboard_server import Server, get, get_page
from tests.sql import sql_run, sql_value, stored_factors
from tracerules.cli.serve import run_serve
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.engine.replay import replay
from tracerules.runtime.sources.files import iter_notices
from tracerules.runtime.store.store import Store
from tracerules.web.app import create_app
from tracerules.web.status import status

if TYPE_CHECKING:
    from playwright.sync_api import Page

RULES = DATA / "rules"
TOKEN = "s3cret-dashboard-token"
PAGES = {
    "overview": "/",
    "triggers": "/triggers",
    "trigger": "/triggers/gbm-json",
    "notices": "/notices?topic=gcn.notices.fermi.gbm",
    "notice": "/notices/1",
    "log": "/log",
}


@pytest.fixture(scope="module")
def store_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dashboard") / "store.sqlite"
    replay(load_ruleset([RULES]), iter_notices([NOTICES]), store_path=path).close()
    return path


@pytest.fixture(scope="module")
def server(store_file: Path) -> Iterator[Server]:
    running = Server(create_app(store_file, [RULES]))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def guarded(store_file: Path) -> Iterator[Server]:
    running = Server(create_app(store_file, [RULES], token=TOKEN))
    yield running
    running.stop()


def test_every_page_loads_with_the_stream_status(server: Server) -> None:
    for path in PAGES.values():
        doc = get_page(server, path)
        (stream,) = doc.xpath("//div[@id='stream']")
        assert stream.get("data-stream") == "FAILURE"  # as `tracerules status` says
        assert "no heartbeat was ever seen" in stream.text_content()
        assert not doc.xpath("//meta[@http-equiv='refresh']")  # no service is running
        for attr in doc.xpath("//@src | //@href"):
            assert attr.startswith(("/", "#", "data:")), attr


def test_trigger_page_lights_match_the_store(server: Server, store_file: Path) -> None:
    doc = get_page(server, "/triggers/gbm-json")
    assert "rate_snr" in doc.xpath("string(//pre[@class='rule'])")  # the rule file's text
    (event,) = doc.xpath("//details[@data-event='745121685']")
    rows = event.xpath(".//tr[contains(@class, 'decision')]")
    db = Store(store_file)
    try:
        for row in rows:
            factors = stored_factors(db, int(row.get("data-decision")))
            spans = row.xpath(".//span[@data-vote]")
            assert [(s.get("data-factor"), s.get("data-vote")) for s in spans] == [
                (name, vote) for name, vote, _ in factors
            ]
            for span, factor in zip(spans, factors, strict=True):
                assert ("inherited" in span.get("class")) == factor[2]
    finally:
        db.close()
    assert len(rows) == 7
    (current,) = event.xpath(".//tr[@data-current]")
    assert [s.get("data-factor") for s in current.xpath(".//span[@data-vote]")] == [
        "expiry",
        "bright",
        "localised",
        "southern",
    ]
    title = event.xpath(".//span[@data-factor='localised']/@title")[1]
    assert "condition: error < 10 deg" in title and "values: error=" in title


def test_notice_filters_and_one_notice(server: Server) -> None:
    doc = get_page(server, "/notices?format=xml&event_id=1201696")
    rows = doc.xpath("//table[@id='notices']/tbody/tr[@data-notice]")
    assert rows and all("SWIFT" in r.xpath("string(td[3]/@title)") for r in rows)
    bad = get_page(server, "/notices?since=someday")
    assert "not an ISO 8601 time" in bad.xpath("string(//div[@class='banner'])")
    first = rows[0].get("data-notice")
    one = get_page(server, f"/notices/{first}")
    assert "voe:VOEvent" in one.xpath("string(//pre[@id='payload'])")
    assert one.xpath("//table[@id='envelope']//td[contains(., 'gcn.classic.voevent')]")
    assert get(server.url + "/notices/999999")[0] == 404


def test_log_and_read_only(server: Server, store_file: Path) -> None:
    doc = get_page(server, "/log")
    rows = doc.xpath("//table[@id='actions']/tbody/tr[@data-action-id]")
    db = Store(store_file)
    assert len(rows) == min(50, sql_value(db, "SELECT count(*) FROM actions"))
    db.close()
    request = urllib.request.Request(server.url + "/log", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    refused.value.close()
    assert refused.value.code == 405


def test_the_token_is_required_when_set(guarded: Server) -> None:
    code, headers, _ = get(guarded.url + "/triggers")
    assert code == 401 and headers["www-authenticate"] == "Bearer"
    assert get(guarded.url + "/", {"Authorization": "Bearer wrong"})[0] == 401
    assert get(guarded.url + "/", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    code, headers, _ = get(guarded.url + f"/notices?topic=x&token={TOKEN}")
    assert code == 303 and headers["location"] == "/notices?topic=x"
    cookie = headers["set-cookie"].split(";")[0]
    assert "HttpOnly" in headers["set-cookie"]
    assert get(guarded.url + "/notices?topic=x", {"Cookie": cookie})[0] == 200
    assert get(guarded.url + "/", {"Cookie": "tracerules_token=nope"})[0] == 401


def test_serve_refuses_remote_access_without_a_token(
    store_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRACERULES_DASHBOARD_TOKEN", raising=False)
    assert run_serve(store_file, [RULES], "0.0.0.0", 0, 10) == 2  # refused before binding


def test_stream_status_from_the_heartbeat(tmp_path: Path) -> None:
    path = tmp_path / "health.sqlite"
    Store(path).close()
    assert status(Store(path, read_only=True), time.time()).stream == "FAILURE"
    db = Store(path)
    sql_run(
        db,
        "CREATE TABLE IF NOT EXISTS service_state (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
        "at REAL NOT NULL)",
    )
    now = time.time()
    expected = {2.0: "OK", 30.0: "DELAYED", 300.0: "FAILURE"}
    for age, state in expected.items():
        for key, value in (
            ("heartbeat", {"time": now - age}),
            ("service", {"state": "running", "beat": now, "pid": 1, "host": "h"}),
        ):
            sql_run(
                db,
                "INSERT OR REPLACE INTO service_state VALUES (?, ?, ?)",
                (key, json.dumps(value), now),
            )
        seen = status(Store(path, read_only=True), now)
        assert (seen.stream, seen.running) == (state, True)
    db.close()
    app = Server(create_app(path, [RULES], refresh=7))
    try:
        doc = get_page(app, "/")
        assert doc.xpath("//meta[@http-equiv='refresh']/@content") == ["7"]
        assert doc.xpath("//div[@id='stream']/@data-stream") == ["FAILURE"]
    finally:
        app.stop()


@pytest.mark.browser
def test_pages_in_headless_chromium(server: Server, guarded: Server, page: Page) -> None:
    log = watch(page)
    for name, path in PAGES.items():
        open_page(page, log, server.url + path, name)
        assert all(url.startswith(server.url) for url in log.requests), log.requests
    visit(page, log, server.url + "/triggers/gbm-json")
    assert page.locator(".light[data-vote]").count() > 20
    washed = page.eval_on_selector_all(
        ".light.inherited", "els => els.map(e => getComputedStyle(e).opacity)"
    )
    assert washed and all(float(o) < 0.5 for o in washed)
    visit(page, log, guarded.url + "/triggers")
    assert log.statuses[guarded.url + "/triggers"] == 401
    visit(page, log, guarded.url + f"/triggers?token={TOKEN}")  # then kept as a cookie
    assert page.evaluate("location.search") == ""
    assert page.locator("#triggers tbody tr").count() == 4
