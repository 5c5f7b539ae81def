"""`tracerules serve`: every page over a store filled by a dry run of real notices.

A real uvicorn server on a loopback port, read with urllib and with headless Chromium through
Playwright (when installed): lights against the store, filters, the token gate, the stream
status header, and the products folder (LVK alerts replayed with their sky-map PNGs).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn
from lxml import html as lxml_html

from tests.browsing import PageLog, not_blank, screenshot, visit, watch
from tests.conftest import DATA, NOTICES
from tracerules.cli.serve import products_folder, run_serve
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.engine import Engine
from tracerules.runtime.health import recorded_products
from tracerules.runtime.replay import replay
from tracerules.runtime.sources import iter_notices, notice_from_bytes
from tracerules.runtime.store import Store
from tracerules.web.access import ReadOnlyStore
from tracerules.web.app import create_app
from tracerules.web.status import status

if TYPE_CHECKING:
    from playwright.sync_api import Page

RULES = DATA / "rules"
WEB_RULES = DATA / "web_rules"  # an LVK trigger writing gocart's folders, skymap.png included
BROKEN_ALERT = b'{"superevent_id": "S230101a", "alert_type": '  # cut short: a dead letter
TOKEN = "s3cret-dashboard-token"
PAGES = {
    "overview": "/",
    "triggers": "/triggers",
    "trigger": "/triggers/gbm-json",
    "notices": "/notices?topic=gcn.notices.fermi.gbm",
    "notice": "/notices/1",
    "log": "/log",
}


class Server:
    """uvicorn serving an app on an ephemeral loopback port, in a thread."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers=headers or {})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers), err.read().decode()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


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
def products_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """LVK alerts replayed with products: a store and the folder of gocart's files.

    A broken alert, received before the others, is a dead letter on igwn.gwalert.
    """
    folder = tmp_path_factory.mktemp("products")
    notices = [
        notice_from_bytes(BROKEN_ALERT, topic="igwn.gwalert", name="broken.json", received=1e9),
        *iter_notices([NOTICES / "lvk_json"]),
    ]
    path = folder / "store.sqlite"
    out = folder / "out"
    replay(load_ruleset([WEB_RULES]), notices, store_path=path, products_dir=out).close()
    return path, out


@pytest.fixture(scope="module")
def products_server(products_store: tuple[Path, Path]) -> Iterator[Server]:
    path, out = products_store
    running = Server(create_app(path, [WEB_RULES], products=out))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def guarded(store_file: Path) -> Iterator[Server]:
    running = Server(create_app(store_file, [RULES], token=TOKEN))
    yield running
    running.stop()


def get_page(server: Server, path: str) -> lxml_html.HtmlElement:
    code, headers, body = get(server.url + path)
    assert code == 200, body
    assert "default-src 'none'" in headers["content-security-policy"]
    return lxml_html.fromstring(body)


def test_every_page_loads_with_the_stream_status(server: Server) -> None:
    for path in PAGES.values():
        doc = get_page(server, path)
        (stream,) = doc.xpath("//div[@id='stream']")
        assert stream.get("data-stream") == "NONE"
        assert "no heartbeat seen" in stream.text_content()
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
            factors = db.query(
                "SELECT name, vote, inherited FROM factors WHERE decision=? ORDER BY position",
                (int(row.get("data-decision")),),
            )
            spans = row.xpath(".//span[@data-vote]")
            assert [(s.get("data-factor"), s.get("data-vote")) for s in spans] == [
                (f["name"], f["vote"]) for f in factors
            ]
            for span, factor in zip(spans, factors, strict=True):
                assert ("inherited" in span.get("class")) == bool(factor["inherited"])
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
    assert len(rows) == min(50, db.scalar("SELECT count(*) FROM actions"))
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
    assert status(ReadOnlyStore(path), time.time()).stream == "NONE"
    db = Store(path)
    db.db.execute(
        "CREATE TABLE IF NOT EXISTS service_state (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
        "at REAL NOT NULL)"
    )
    now = time.time()
    expected = {2.0: "OK", 30.0: "DELAYED", 300.0: "FAILURE"}
    for age, state in expected.items():
        for key, value in (
            ("heartbeat", {"time": now - age}),
            ("service", {"state": "running", "beat": now, "pid": 1, "host": "h"}),
        ):
            db.db.execute(
                "INSERT OR REPLACE INTO service_state VALUES (?, ?, ?)",
                (key, json.dumps(value), now),
            )
        seen = status(ReadOnlyStore(path), now)
        assert (seen.stream, seen.running) == (state, True)
    db.close()
    app = Server(create_app(path, [RULES], refresh=7))
    try:
        doc = get_page(app, "/")
        assert doc.xpath("//meta[@http-equiv='refresh']/@content") == ["7"]
        assert doc.xpath("//div[@id='stream']/@data-stream") == ["FAILURE"]
    finally:
        app.stop()


# -- the products folder ---------------------------------------------------------------------


def product_links(doc: lxml_html.HtmlElement) -> list[str]:
    return [str(a.get("href")) for a in doc.xpath("//a[@data-product]")]


def test_product_files_are_linked_and_served(
    products_server: Server, products_store: tuple[Path, Path]
) -> None:
    path, out = products_store
    doc = get_page(products_server, "/triggers/lvk-alerts")
    links = product_links(doc)
    db = Store(path)
    recorded = [f for (files,) in db.query("SELECT files FROM actions") for f in json.loads(files)]
    db.close()
    written = sorted(Path(f).relative_to(out).as_posix() for f in recorded)
    assert sorted({h.removeprefix("/products/") for h in links}) == written
    assert sum(name.endswith("skymap.png") for name in written) == 2
    for href in links:
        code, headers, _ = get(products_server.url + href)
        assert code == 200, href
        assert "sandbox" in headers["content-security-policy"]
    png = next(h for h in links if h.endswith("/skymap.png"))
    assert get(products_server.url + png)[1]["content-type"] == "image/png"
    fits = next(h for h in links if h.endswith(".fits"))
    assert get(products_server.url + fits)[1]["content-disposition"].startswith("attachment")
    xml_like = next(h for h in links if h.endswith("meta.yaml"))
    assert get(products_server.url + xml_like)[1]["content-type"].startswith("text/plain")
    shown = doc.xpath("//figure[@class='skymap']//img/@src")
    assert shown and set(shown) <= {h for h in links if h.endswith("/skymap.png")}


def test_products_outside_the_folder_are_refused(
    products_server: Server, products_store: tuple[Path, Path], tmp_path: Path
) -> None:
    _, out = products_store
    secret = tmp_path / "secret.txt"
    secret.write_text("not a product")
    (out / "escape.txt").symlink_to(secret)
    (out / "lvk" / "up").symlink_to(tmp_path, target_is_directory=True)
    store_name = "store.sqlite"  # beside the products folder, not in it
    for path in (
        "/products/",
        "/products/lvk",
        "/products/lvk/",
        "/products/%2e%2e/" + store_name,
        "/products/..%2f" + store_name,
        "/products/lvk/%2e%2e/%2e%2e/" + store_name,
        "/products/%2Fetc%2Fpasswd",
        "/products//etc/passwd",
        "/products/escape.txt",
        "/products/lvk/up/secret.txt",
        "/products/lvk%5c..%5c..%5c" + store_name,
    ):
        code, _, body = get(products_server.url + path)
        assert code == 404, path
        assert "not a product" not in body and "SQLite" not in body
    request = urllib.request.Request(products_server.url + "/products/lvk", data=b"x", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    refused.value.close()
    assert refused.value.code == 405


def test_serve_finds_the_products_folder(
    products_store: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, out = products_store
    reader = ReadOnlyStore(path)
    assert recorded_products(reader) == out.resolve()  # the dry run said where it wrote
    reader.close()
    monkeypatch.chdir(tmp_path)
    given = tmp_path / "elsewhere"
    assert products_folder(given, out) == given
    assert products_folder(None, out) == out
    assert products_folder(None, tmp_path / "gone") is None
    (tmp_path / "tracerules-out").mkdir()
    assert products_folder(None, None) == Path("tracerules-out")
    assert run_serve(path, [WEB_RULES], "127.0.0.1", 0, 10, tmp_path / "nope") == 2


def test_notices_can_show_only_dead_letters(products_server: Server) -> None:
    doc = get_page(products_server, "/notices?status=dead")
    rows = doc.xpath("//table[@id='notices']/tbody/tr[@data-notice]")
    assert len(rows) == 1
    assert rows[0].xpath("string(td[5]//span[contains(@class, 'chip')])") == "dead"
    assert "broken.json" in rows[0].text_content()
    assert rows[0].xpath("td[5]//div[contains(@class, 'reason')]")  # and why
    everything = get_page(products_server, "/notices")
    assert len(everything.xpath("//table[@id='notices']/tbody/tr[@data-notice]")) > 1
    overview = get_page(products_server, "/")
    assert overview.xpath("//div[@data-count='dead_letters']//a/@href") == ["/notices?status=dead"]
    bad = get_page(products_server, "/notices?status=lost")
    assert "status is one of" in bad.xpath("string(//div[@class='banner'])")


def test_current_conditions_are_replayed_once_per_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sky-map event is replayed when first shown and after a new decision, not per view."""
    path = tmp_path / "store.sqlite"
    rules = load_ruleset([WEB_RULES])
    replay(rules, iter_notices([NOTICES / "lvk_json"]), store_path=path).close()
    replayed: list[str] = []
    original = Engine.current_conditions

    def counted(self: Engine, trigger_id: str, event_id: str, now: float | None = None) -> Any:
        replayed.append(event_id)
        return original(self, trigger_id, event_id, now)

    monkeypatch.setattr(Engine, "current_conditions", counted)
    app = Server(create_app(path, [WEB_RULES]))
    try:
        first = get_page(app, "/triggers/lvk-alerts")
        events = first.xpath("//details/@data-event")
        assert sorted(replayed) == sorted(events) and len(events) == 3
        replayed.clear()
        again = get_page(app, "/triggers/lvk-alerts")
        assert replayed == []
        current = "//tr[@data-current]//span/@data-vote"
        assert again.xpath(current) == first.xpath(current)
        db = Store(path)
        Engine(rules, db, dry_run=True).retrigger("lvk-alerts", "S230528ay", "tester")
        db.close()
        replayed.clear()
        get_page(app, "/triggers/lvk-alerts")
        assert replayed == ["S230528ay"]  # the one event with a new decision
    finally:
        app.stop()


# -- in the browser ----------------------------------------------------------------------------


def open_page(page: Page, log: PageLog, url: str, name: str) -> bytes:
    visit(page, log, url)
    shot = screenshot(page, f"dashboard-{name}.png", full_page=True)
    assert log.console_errors == [], name
    assert not_blank(shot), name
    return shot


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


@pytest.mark.browser
def test_event_page_shows_the_sky_map_and_links_products(
    products_server: Server, page: Page
) -> None:
    log = watch(page)
    url = products_server.url + "/triggers/lvk-alerts"
    open_page(page, log, url, "products")
    images = page.locator("figure.skymap img")
    assert images.count() >= 2  # the two alerts with a real sky map
    for i in range(images.count()):
        images.nth(i).scroll_into_view_if_needed()
        page.wait_for_function("img => img.complete", arg=images.nth(i).element_handle())
        size = images.nth(i).evaluate("img => [img.naturalWidth, img.clientWidth]")
        assert size[0] > 600 and size[1] >= 400, size  # the PNG itself, shown large enough
    screenshot(page, "dashboard-products-skymap.png")
    pngs = [u for u in log.requests if u.endswith("/skymap.png")]
    assert pngs and all(log.statuses[u] == 200 for u in pngs)
    link = page.locator("a[data-product$='.json']").first
    with page.expect_response(lambda r: "/products/" in r.url) as response:
        link.click()
    assert response.value.status == 200
    assert page.evaluate("document.contentType") == "application/json"
    assert log.console_errors == []


@pytest.mark.browser
def test_the_actions_column_is_not_clipped(
    products_server: Server, server: Server, page: Page
) -> None:
    log = watch(page)
    for url in (products_server.url + "/triggers/lvk-alerts", server.url + "/triggers/gbm-json"):
        visit(page, log, url)
        page.evaluate("document.querySelectorAll('details.event').forEach(d => d.open = true)")
        overflowing = page.eval_on_selector_all(
            "details.event .event-body",
            "bodies => bodies.filter(b => b.scrollWidth > b.clientWidth + 1)"
            ".map(b => b.closest('details').dataset.event)",
        )
        assert overflowing == [], url
        cells = page.eval_on_selector_all(
            "td.actions",
            "cells => cells.map(c => [c.getBoundingClientRect().right,"
            " c.closest('details').getBoundingClientRect().right])",
        )
        assert cells and all(right <= card for right, card in cells), url
    screenshot(page, "dashboard-actions.png")


@pytest.mark.browser
def test_dead_letter_filter_in_the_browser(products_server: Server, page: Page) -> None:
    log = watch(page)
    visit(page, log, products_server.url + "/notices")
    assert page.locator("#notices tbody tr[data-notice]").count() > 1
    page.select_option("#status-filter", "dead")
    with page.expect_navigation():
        page.locator("form.filters button[type=submit]").click()
    assert "status=dead" in page.url
    rows = page.locator("#notices tbody tr[data-notice]")
    assert rows.count() == 1 and "dead" in rows.first.inner_text()
    screenshot(page, "dashboard-dead-letters.png")
    assert log.console_errors == []
