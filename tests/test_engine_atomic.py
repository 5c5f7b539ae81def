"""The service's one transaction per notice: a failed COMMIT leaves nothing behind.

`Engine.process_atomically` stores a notice and its decisions in one transaction. When the
COMMIT itself fails (an I/O error, a full disk), the notice and its decisions are rolled
back, and the engine's cache of event states, which already holds the state the decision
wrote, must be emptied: else the redelivered notice is decided against an event state the
store never kept.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA, gbm_rules, sequence
from tests.sql import CommitFailsOnce, sql_value
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.store.store import Store

ACTION = """      - type: command
        argv: ["true"]
"""  # planned, not run: a dry run


def _decided(engine: Engine, notices: list[Any]) -> list[tuple[Any, ...]]:
    """What each notice's decisions said: conclusion, sequence in the event, actions."""
    return [
        tuple(
            (d.conclusion, d.seq, d.votes, [a.status for a in d.actions])
            for d in engine.process_atomically(n).decisions
        )
        for n in notices
    ]


def test_a_failed_commit_rolls_back_the_notice_and_the_event_cache(tmp_path: Path) -> None:
    notices = sequence("fermi_gbm_json")[:3]
    rules = gbm_rules(tmp_path, "gbm-atomic", ACTION)
    clean = Engine(rules, Store(tmp_path / "clean.sqlite"), out_dir=tmp_path / "o1", dry_run=True)
    expected = _decided(clean, notices)

    store = Store(tmp_path / "store.sqlite")
    engine = Engine(rules, store, out_dir=tmp_path / "o2", dry_run=True)
    got = _decided(engine, notices[:1])
    real = store.db
    store.db = CommitFailsOnce(real)  # type: ignore[assignment]
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        engine.process_atomically(notices[1])
    store.db = real
    assert sql_value(store, "SELECT count(*) FROM notices") == 1  # rolled back
    assert sql_value(store, "SELECT count(*) FROM decisions") == len(got[0])
    # Redelivered, the notice is decided as if the failure never happened.
    got += _decided(engine, notices[1:])
    assert got == expected
    assert sql_value(store, "SELECT count(*) FROM notices") == 3


def test_process_alone_persists_an_evaluation_whole_or_not_at_all(tmp_path: Path) -> None:
    """Without the service's outer transaction, `process` stores the notice, then persists
    its evaluation in one transaction of its own: a failure at the second trigger's decision
    leaves the first's unstored too, and the notice waits to be evaluated again."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        gbm_rules(tmp_path / name, f"gbm-{name}", ACTION)
    rules = load_ruleset([DATA / "rules" / "topics.yaml", *tmp_path.glob("*/rules.yaml")])
    notice = sequence("fermi_gbm_json")[1]
    clean = Engine(rules, Store(tmp_path / "clean.sqlite"), out_dir=tmp_path / "o1", dry_run=True)
    expected = _decided(clean, [notice])
    assert len(expected[0]) == 2

    store = Store(tmp_path / "store.sqlite")
    engine = Engine(rules, store, out_dir=tmp_path / "o2", dry_run=True)
    persist = engine._persist
    calls: list[str] = []

    def fails_second(verdict: Any, notice_id: int | None) -> Any:
        calls.append(verdict.decision.trigger)
        if len(calls) == 2:
            raise sqlite3.OperationalError("database or disk is full")
        return persist(verdict, notice_id)

    engine._persist = fails_second  # type: ignore[method-assign]
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        engine.process(notice)
    assert calls == ["gbm-a", "gbm-b"]
    for table in ("decisions", "events", "actions"):
        assert sql_value(store, f"SELECT count(*) FROM {table}") == 0, table
    assert sql_value(store, "SELECT status FROM notices") == "new"
    engine._persist = persist  # type: ignore[method-assign]
    assert _decided(engine, [notice]) == expected  # delivered again: decided afresh
    assert sql_value(store, "SELECT count(*) FROM notices") == 1
