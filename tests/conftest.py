"""Shared fixtures: test rule sets, a real store, notice loaders.

The `store` fixture (and `engine`, over it) runs each test twice: on a SQLite file in a
temporary folder, and on its own database of a real, throwaway PostgreSQL server
(tests/postgres_server.py). A test about SQLite itself says
`@pytest.mark.parametrize("backend", ["sqlite"])`.

Browser tests take the `page` fixture: a Playwright page in Debian's Chromium (Playwright's
own browser builds are never downloaded); they skip when Chromium is not installed.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tracerules.rules.compile import RuleSet, load_ruleset
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.sources.files import notice_from_file
from tracerules.runtime.sources.notices import Notice
from tracerules.runtime.store.store import Store

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, ViewportSize

pytest_plugins = ["tests.kafka_broker", "tests.postgres_server"]
BACKENDS = ("sqlite", "postgresql")

DATA = Path(__file__).parent / "data"
NOTICES = DATA / "notices"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-extensions"]
VIEWPORT: ViewportSize = {"width": 1400, "height": 1000}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, driven by Playwright (which never downloads a browser of its own).

    One per test module: Playwright's event loop lives only as long as the module's tests.
    """
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page (its own cookies) at the width the dashboard issues were reported at."""
    context = browser.new_context(viewport=VIEWPORT)
    yield context.new_page()
    context.close()


@pytest.fixture(scope="session")
def engine_rules() -> RuleSet:
    return load_ruleset([DATA / "rules"])


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_location(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[str | Path]:
    """A new, empty store's location: a SQLite file, or a PostgreSQL database's URL."""
    if backend == "sqlite":
        yield tmp_path / "store.sqlite"
        return
    from tracerules.runtime.store.postgres import close_pool

    url = request.getfixturevalue("postgres_server").fresh_database()
    yield url
    close_pool(url)  # its connections, before the next test's database


@pytest.fixture
def store(store_location: str | Path) -> Iterator[Store]:
    db = Store(store_location)
    yield db
    db.close()


@pytest.fixture
def engine(engine_rules: RuleSet, store: Store, tmp_path: Path) -> Engine:
    return Engine(engine_rules, store, out_dir=tmp_path / "out")


def sequence(folder: str, pattern: str = "*") -> list[Notice]:
    """The notices of a test-data folder in file-name order, as Kafka would number them."""
    paths = sorted(p for p in (NOTICES / folder).glob(pattern) if p.suffix in (".xml", ".json"))
    return [notice_from_file(p, offset=i) for i, p in enumerate(paths)]


def gbm_rules(folder: Path, trigger: str, actions: str) -> RuleSet:
    """One trigger on Fermi GBM JSON notices that passes any located notice and runs
    `actions` (YAML list items, indented six spaces)."""
    path = folder / "rules.yaml"
    path.write_text(
        f"""schema_version: 1
triggers:
  - id: {trigger}
    topics: [gcn.notices.fermi.gbm]
    event_id: trigger_id
    event_time: trigger_time
    expiry: 1 d
    fields:
      trigger_id: {{jsonpath: "$.id[0]", as: string}}
      trigger_time: {{jsonpath: "$.trigger_time", as: time}}
      ra: {{jsonpath: "$.ra", as: angle}}
    conditions:
      located: exists(ra)
    actions:
{actions}"""
    )
    return load_ruleset([DATA / "rules" / "topics.yaml", path])


def webhook_rules(folder: Path, topic: str, url: str, option: str) -> RuleSet:
    """One trigger on an XML topic whose every notice (its IVORN is the event) fires a
    webhook to `url`/notice, with one more webhook `option` line (e.g. `timeout: 30`)."""
    folder.mkdir()
    (folder / "hook.yaml").write_text(
        "schema_version: 1\n"
        f"topics:\n  - {{name: {topic}, format: xml}}\n"
        "triggers:\n"
        "  - id: every-notice\n"
        f"    topics: [{topic}]\n"
        "    event_id: ivorn\n"
        "    event_time: made\n"
        "    expiry: 36500 d\n"
        "    priority: 10\n"
        "    fields:\n"
        '      ivorn: {xpath: "/*/@ivorn", as: string}\n'
        '      made: {xpath: "//Who/Date", as: time}\n'
        "    actions:\n"
        "      - type: webhook\n"
        f'        url: "{url}/notice"\n'
        f"        {option}\n"
    )
    return load_ruleset([folder])
