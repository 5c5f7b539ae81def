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

from tests.conftest import gbm_rules, sequence
from tests.sql import CommitFailsOnce, sql_value
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
