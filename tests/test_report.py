"""The HTML report of a dry run: structure checked with lxml, then rendered in Chromium."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from lxml import html as lxml_html

from tests.browsing import not_blank, screenshot, visit, watch
from tests.conftest import DATA, NOTICES
from tests.sql import sql_value, stored_factors
from tracerules.dsl.values import Vote
from tracerules.report import lights
from tracerules.report.html import render_report
from tracerules.rules.compile import RuleSet, load_ruleset
from tracerules.runtime.engine.decisions import Factor
from tracerules.runtime.engine.replay import Replay, replay
from tracerules.runtime.sources.files import iter_notices, notice_from_bytes
from tracerules.runtime.store.store import Store

if TYPE_CHECKING:
    from playwright.sync_api import Page

HOSTILE_ID = '<img src="https://example.org/x.png" onerror="alert(1)">'


def hostile_notices() -> list[object]:
    """A GBM notice whose event id is markup, and a broken VOEvent (a dead letter)."""
    gbm = json.loads((NOTICES / "fermi_gbm_json" / "2_trigger.flight1.example.json").read_text())
    gbm["id"] = [HOSTILE_ID]
    return [
        notice_from_bytes(json.dumps(gbm).encode(), topic="gcn.notices.fermi.gbm"),
        notice_from_bytes(
            b"<voe:VOEvent><unclosed>",
            topic="gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK",
            received=1.7e9,
        ),
    ]


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_ruleset([DATA / "rules"])


@pytest.fixture(scope="module")
def replayed(rules: RuleSet) -> Iterator[Replay]:
    notices = [*iter_notices([NOTICES]), *hostile_notices()]
    result = replay(rules, notices)
    yield result
    result.close()


@pytest.fixture(scope="module")
def report(replayed: Replay, rules: RuleSet) -> str:
    return render_report(replayed.store, rules, title="Report <test> & co")


@pytest.fixture(scope="module")
def doc(report: str) -> lxml_html.HtmlElement:
    return lxml_html.fromstring(report)


def card(doc: lxml_html.HtmlElement, name: str) -> int:
    (value,) = doc.xpath(f'//div[@data-count="{name}"]/div[@class="value"]/text()')
    return int(value.replace(",", ""))


def test_summary_counts_match_the_store(doc: lxml_html.HtmlElement, replayed: Replay) -> None:
    store = replayed.store
    assert card(doc, "notices") == sql_value(store, "SELECT count(*) FROM notices")
    assert card(doc, "events") == sql_value(store, "SELECT count(*) FROM events")
    for conclusion in ("PASS", "FAIL"):
        expected = sql_value(
            store, "SELECT count(*) FROM decisions WHERE conclusion=?", (conclusion,)
        )
        assert card(doc, conclusion.lower()) == expected
    assert card(doc, "actions") == sql_value(store, "SELECT count(*) FROM actions")
    assert card(doc, "dead_letters") == 1
    assert len(doc.xpath("//details[contains(@class, 'event')]")) == card(doc, "events")


def test_per_trigger_pass_counts(doc: lxml_html.HtmlElement, replayed: Replay) -> None:
    rows = doc.xpath('//table[@id="triggers"]/tbody/tr')
    assert [r.get("data-trigger") for r in rows] == [
        "swift-grb",
        "gbm-json",
        "lvk-voevent",
        "integral",
    ]
    for row in rows:
        trigger = row.get("data-trigger")
        passed = sql_value(
            replayed.store,
            "SELECT count(*) FROM decisions WHERE trigger=? AND conclusion='PASS'",
            (trigger,),
        )
        (cell,) = row.xpath('td[@data-count="pass"]/text()')
        assert int(cell) == passed
    sections = doc.xpath("//section[@class='trigger']/@data-trigger")
    assert sections == [r.get("data-trigger") for r in rows]  # priority order, all have events


def test_a_light_per_factor_with_inherited_ones_washed_out(
    doc: lxml_html.HtmlElement, replayed: Replay
) -> None:
    store = replayed.store
    rows = doc.xpath("//tr[contains(@class, 'decision')]")
    assert len(rows) == sql_value(store, "SELECT count(*) FROM decisions WHERE event IS NOT NULL")
    inherited_seen = 0
    for row in rows:
        factors = stored_factors(store, int(row.get("data-decision")))
        shown = row.xpath(".//span[contains(@class, 'light') and @data-vote]")
        assert [(s.get("data-factor"), s.get("data-vote")) for s in shown] == [
            (name, vote) for name, vote, _ in factors
        ]
        for span, factor in zip(shown, factors, strict=True):
            classes = span.get("class").split()
            assert f"vote-{factor[1].lower()}" in classes
            assert ("inherited" in classes) == factor[2]
            inherited_seen += factor[2]
    assert inherited_seen > 0, "the GBM and Swift chains must inherit some votes"


def test_hover_text_names_condition_vote_and_value(doc: lxml_html.HtmlElement) -> None:
    event = doc.xpath("//section[@data-trigger='gbm-json']//details[@data-event='745121685']")[0]
    first, second = event.xpath(".//tr[contains(@class, 'decision')]")[:2]
    (unknown,) = first.xpath(".//span[@data-factor='localised']")
    title = unknown.get("title")
    assert title.startswith("localised: UNKNOWN")
    assert "condition: error < 10 deg" in title
    assert "no match for $.ra_dec_error" in title
    (decided,) = second.xpath(".//span[@data-factor='localised']")
    assert decided.get("title").startswith("localised: PASS")
    assert re.search(r"values: error=\d", decided.get("title"))
    inherited = event.xpath(".//span[contains(@class, 'inherited')]")[0]
    assert "(inherited from an earlier notice)" in inherited.get("title")


def test_the_page_is_self_contained_and_escaped(doc: lxml_html.HtmlElement, report: str) -> None:
    for attr in ("src", "href", "action", "poster", "data"):
        for value in doc.xpath(f"//@{attr}"):
            assert value.startswith("#"), f"{attr}={value!r} leaves the page"
    assert not doc.xpath("//link | //img | //iframe | //object")
    assert "@import" not in report and "url(" not in report
    assert len(doc.xpath("//script")) == 1  # ours, the collapse/filter toggles
    assert doc.xpath("//title/text()") == ["Report <test> & co"]
    assert doc.xpath("//details[@data-event=$e]", e=HOSTILE_ID)  # text, not markup
    (dead,) = doc.xpath("//section[@id='problems']//td[contains(@class, 'mono')]/text()")
    assert dead


def test_actions_that_would_run_are_listed(doc: lxml_html.HtmlElement, replayed: Replay) -> None:
    chips = doc.xpath("//span[contains(@class, 'chip') and @data-action]")
    assert len(chips) == sql_value(replayed.store, "SELECT count(*) FROM actions")
    # A dry run arbitrates observations as the service would: a refused one is a clash.
    clashes = sql_value(replayed.store, "SELECT count(*) FROM actions WHERE status='clash'")
    assert sum("clash" in c.text_content() for c in chips) == clashes
    assert all(any(s in c.text_content() for s in ("dry-run", "clash")) for c in chips)


def test_one_trigger_only(replayed: Replay, rules: RuleSet) -> None:
    doc = lxml_html.fromstring(render_report(replayed.store, rules, trigger="gbm-json"))
    assert doc.xpath("//section[@class='trigger']/@data-trigger") == ["gbm-json"]
    assert card(doc, "events") == sql_value(replayed.store, "SELECT count(*) FROM events")


def test_empty_store(tmp_path: Path, rules: RuleSet) -> None:
    store = Store(tmp_path / "empty.sqlite")
    doc = lxml_html.fromstring(render_report(store, rules))
    store.close()
    assert card(doc, "notices") == 0
    assert "No events" in doc.text_content()


def test_lights_are_pure_escaped_snippets() -> None:
    factor = Factor("a<b", Vote.MAYBE, True, 'no "x"', "x=<1>")
    snippet = lights.light(factor, "x < 1 and\n  y")
    fragment = lxml_html.fragment_fromstring(str(snippet))
    assert fragment.get("class") == "light vote-maybe inherited"
    assert fragment.get("data-factor") == "a<b"
    assert fragment.get("title").splitlines() == [
        "a<b: MAYBE (inherited from an earlier notice)",
        "condition: x < 1 and y",
        "values: x=<1>",
        'this notice: no "x"',
    ]
    legend = lxml_html.fragment_fromstring(str(lights.legend()))
    assert len(legend.xpath(".//span[contains(@class, 'light')]")) == 5


@pytest.mark.browser
def test_report_in_headless_chromium(tmp_path: Path, report: str, page: Page) -> None:
    path = tmp_path / "report.html"
    path.write_text(report, encoding="utf-8")
    log = visit(page, watch(page), path.as_uri())
    shot = screenshot(page, "report.png")
    screenshot(page, "report-full.png", full_page=True)
    assert log.console_errors == []
    assert log.requests == [path.as_uri()]  # nothing else: no CDN, no fonts, no images
    assert not_blank(shot)
    events = page.locator("details.event")
    before = sum(events.nth(i).is_visible() for i in range(events.count()))
    page.locator("#passed-only").check()
    after = sum(events.nth(i).is_visible() for i in range(events.count()))
    assert 0 < after < before
    page.locator("#expand-all").click()
    assert page.evaluate("[...document.querySelectorAll('details.event')].every(d => d.open)")
    assert page.locator(".light[data-vote]").count() == len(
        lxml_html.fromstring(report).xpath("//span[@data-vote]")
    )
    assert log.console_errors == []
