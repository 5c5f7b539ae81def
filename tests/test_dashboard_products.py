"""`tracerules serve` and the products folder: LVK alerts replayed with their sky-map PNGs.

Product files linked from the event page and served read-only (nothing outside the folder),
skymap.png shown inline, the actions column within the page at 1400 px, dead letters
filtered on the notices page, and current conditions replayed once per change, not per view.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from lxml import html as lxml_html

from tests.browsing import open_page, screenshot, visit, watch
from tests.conftest import DATA, NOTICES
from tests.dashboard_server import Server, get, get_page
from tests.sql import sql_rows
from tracerules.cli.serve import products_folder, run_serve
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.engine.replay import replay
from tracerules.runtime.service.health import recorded_products
from tracerules.runtime.sources.files import iter_notices, notice_from_bytes
from tracerules.runtime.store.store import Store
from tracerules.web.app import create_app

if TYPE_CHECKING:
    from playwright.sync_api import Page

WEB_RULES = DATA / "web_rules"  # an LVK trigger writing gocart's folders, skymap.png included
BROKEN_ALERT = b'{"superevent_id": "S230101a", "alert_type": '  # cut short: a dead letter


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
    recorded = [
        f for (files,) in sql_rows(db, "SELECT files FROM actions") for f in json.loads(files)
    ]
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
    reader = Store(path, read_only=True)
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
def test_the_actions_column_is_not_clipped(products_server: Server, page: Page) -> None:
    """At 1400 px, long product file names wrap inside the column, within the event's card."""
    log = watch(page)
    visit(page, log, products_server.url + "/triggers/lvk-alerts")
    page.evaluate("document.querySelectorAll('details.event').forEach(d => d.open = true)")
    overflowing = page.eval_on_selector_all(
        "details.event .event-body",
        "bodies => bodies.filter(b => b.scrollWidth > b.clientWidth + 1)"
        ".map(b => b.closest('details').dataset.event)",
    )
    assert overflowing == []
    cells = page.eval_on_selector_all(
        "td.actions",
        "cells => cells.map(c => [c.getBoundingClientRect().right,"
        " c.closest('details').getBoundingClientRect().right])",
    )
    assert cells and all(right <= card for right, card in cells)
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
