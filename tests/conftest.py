"""Shared fixtures: test rule sets, a real SQLite store in a temporary folder, notice loaders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tracerules.rules.compile import RuleSet, load_ruleset
from tracerules.runtime.engine import Engine
from tracerules.runtime.notices import Notice
from tracerules.runtime.sources import notice_from_file
from tracerules.runtime.store import Store

pytest_plugins = ["tests.kafka_broker"]

DATA = Path(__file__).parent / "data"
NOTICES = DATA / "notices"


@pytest.fixture(scope="session")
def engine_rules() -> RuleSet:
    return load_ruleset([DATA / "rules"])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store(tmp_path / "store.sqlite")
    yield db
    db.close()


@pytest.fixture
def engine(engine_rules: RuleSet, store: Store, tmp_path: Path) -> Engine:
    return Engine(engine_rules, store, out_dir=tmp_path / "out")


def sequence(folder: str, pattern: str = "*") -> list[Notice]:
    """The notices of a test-data folder in file-name order, as Kafka would number them."""
    paths = sorted(p for p in (NOTICES / folder).glob(pattern) if p.suffix in (".xml", ".json"))
    return [notice_from_file(p, offset=i) for i, p in enumerate(paths)]
