"""A store written before actions were frozen (schema 3, by tracerules at commit 5368dc2)
upgrades in place, and its pending action runs as planned only under the rule revision it
was planned with; under edited rules it is superseded, never run as the new action."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import DATA
from tests.sql import sql_rows, sql_value
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.dispatch.dispatcher import Dispatcher
from tracerules.runtime.store.store import SCHEMA_VERSION, Store

V3 = DATA / "store_v3"


def _store(tmp_path: Path) -> Store:
    path = tmp_path / "store.sqlite"
    shutil.copy(V3 / "store.sqlite", path)
    return Store(path)


def _columns(store: Store, table: str) -> set[str]:
    return {r["name"] for r in sql_rows(store, f"PRAGMA table_info({table})")}


def test_a_schema_3_store_upgrades_in_place(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert store.version() == SCHEMA_VERSION >= 4  # 4: actions frozen
    assert {"config_hash", "rule_revision", "rule_commit", "expiry"} <= _columns(store, "actions")
    assert _columns(store, "action_configs") == {"hash", "config"}
    (row,) = sql_rows(store, "SELECT * FROM actions")
    assert row["status"] == "pending" and row["config_hash"] is None  # kept as it was
    assert sql_value(store, "SELECT count(*) FROM notices") == 1
    store.close()
    assert Store(tmp_path / "store.sqlite").version() == SCHEMA_VERSION  # opened again: same


def test_its_pending_action_runs_under_the_same_rule_revision(tmp_path: Path) -> None:
    store = _store(tmp_path)
    rules = load_ruleset([DATA / "rules" / "topics.yaml", V3 / "rules.yaml"])
    (result,) = Dispatcher(store, lambda: rules, tmp_path / "out").run_pending()
    assert result.status == "done", result.log
    # Its values were stored with "-" for a missing one, before values were typed.
    assert (tmp_path / "out" / "gbm-v3" / "745121685--.json").is_file()


def test_its_pending_action_is_superseded_under_edited_rules(tmp_path: Path) -> None:
    store = _store(tmp_path)
    edited = tmp_path / "rules.yaml"
    edited.write_text((V3 / "rules.yaml").read_text().replace("-{absent}", "-edited"))
    rules = load_ruleset([DATA / "rules" / "topics.yaml", edited])
    (result,) = Dispatcher(store, lambda: rules, tmp_path / "out").run_pending()
    assert result.status == "superseded"
    assert "planned before actions were frozen, under rule revision" in result.log
    assert not (tmp_path / "out").exists()
    assert sql_value(store, "SELECT status FROM actions") == "superseded"
