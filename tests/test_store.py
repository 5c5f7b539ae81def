"""The store: SQLite in WAL mode, a versioned schema, readable by plain sqlite3."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import sequence
from tests.sql import rows_at, sql_rows, sql_run, sql_value
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.store.store import SCHEMA_VERSION, Store


def test_a_new_store_is_wal_and_versioned(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    assert sql_value(store, "PRAGMA journal_mode") == "wal"
    assert store.version() == SCHEMA_VERSION
    store.close()
    again = Store(tmp_path / "s.sqlite")  # reopening migrates nothing and keeps the data
    assert again.version() == SCHEMA_VERSION


def test_a_store_is_versioned_and_reopens_as_it_was(store_location: str | Path) -> None:
    store = Store(store_location)
    assert store.version() == SCHEMA_VERSION
    stored = store.add_notice(sequence("fermi_gbm_json")[0])
    store.close()
    again = Store(store_location)
    assert again.version() == SCHEMA_VERSION
    assert again.read_notice(stored.id) == sequence("fermi_gbm_json")[0]
    again.close()


def test_a_store_from_a_newer_tracerules_is_refused(store: Store) -> None:
    sql_run(store, "UPDATE meta SET value='999' WHERE key='schema_version'")
    with pytest.raises(RuntimeError, match="newer than this tracerules"):
        Store(store.path)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_plain_sqlite_reads_the_decisions(engine: Engine) -> None:
    for notice in sequence("fermi_gbm_json"):
        engine.process(notice)
    path = Path(engine.store.path)  # plain sqlite3, no tracerules
    rows = rows_at(
        path,
        "SELECT d.seq, d.conclusion, (SELECT group_concat((f.value ->> 0) || '=' || "
        "(f.value ->> 1), ' ') FROM json_each(d.factors) f) FROM decisions d "
        "WHERE d.trigger = 'gbm-json' ORDER BY d.id",
    )
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert rows[1][2].startswith("expiry=PASS bright=PASS")
    tables = {r[0] for r in rows_at(path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {
        "notices",
        "dead_letters",
        "events",
        "decisions",
        "actions",
        "observations",
        "topic_stats",
    } <= tables


@pytest.mark.parametrize("backend", ["postgresql"])
def test_plain_sql_reads_the_decisions_on_postgresql(engine: Engine) -> None:
    """A team audits decisions with SQL: psycopg alone, no tracerules, reads them."""
    for notice in sequence("fermi_gbm_json"):
        engine.process(notice)
    rows = rows_at(
        engine.store.path,
        "SELECT d.seq, d.conclusion, (SELECT string_agg((f.value ->> 0) || '=' || "
        "(f.value ->> 1), ' ' ORDER BY f.i) FROM json_array_elements(d.factors::json) "
        "WITH ORDINALITY f(value, i)) FROM decisions d WHERE d.trigger = 'gbm-json' "
        "ORDER BY d.id",
    )
    (payload,) = rows_at(engine.store.path, "SELECT payload FROM notices ORDER BY id LIMIT 1")
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert rows[1][2].startswith("expiry=PASS bright=PASS")
    assert isinstance(payload[0], bytes) and payload[0].lstrip().startswith(b"{")


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="the sqlite3 tool is not installed")
@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_sqlite3_tool_reads_the_schema(engine: Engine) -> None:
    engine.process(sequence("fermi_gbm_json")[1])
    out = subprocess.run(
        ["sqlite3", engine.store.path, ".schema decisions", "SELECT conclusion FROM decisions"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "CREATE TABLE decisions" in out.stdout
    assert "PASS" in out.stdout


def test_offsets_dedupe_redeliveries_but_not_other_bytes_at_a_reused_offset(
    store: Store,
) -> None:
    first, second = sequence("fermi_gbm_json")[:2]
    stored = store.add_notice(first)
    assert stored.new and stored.status == "new"
    again = store.add_notice(first)  # the same message delivered twice
    assert (again.id, again.new) == (stored.id, False)
    # A recreated topic numbers from 0 again: other bytes at the stored coordinates.
    reused = dataclasses.replace(second, partition=first.partition, offset=first.offset)
    kept = store.add_notice(reused)
    assert kept.new and kept.id != stored.id and kept.status == "new"
    (row,) = sql_rows(store, 'SELECT "offset", name FROM notices WHERE id=?', (kept.id,))
    assert row["offset"] == -1 and row["name"].endswith("(offset reused)")
    # Delivered again, it is recognised by its payload, and acts once.
    redelivered = store.add_notice(reused)
    assert (redelivered.status, redelivered.duplicate_of) == ("duplicate", kept.id)


def test_a_new_bulk_store_has_large_pages_and_an_old_one_keeps_its_own(tmp_path: Path) -> None:
    """Replays (bulk stores) write a month of notices at once: a new file gets 16 kB pages (a
    4-5 kB notice in one page, no overflow page) and a 32 MB cache. A store written by the
    service keeps SQLite's 4 kB pages, also when a replay opens it later."""
    bulk = Store(tmp_path / "replay.sqlite", bulk=True)
    assert sql_value(bulk, "PRAGMA page_size") == 16384
    assert sql_value(bulk, "PRAGMA cache_size") == -32768
    bulk.close()
    Store(tmp_path / "service.sqlite").close()
    reopened = Store(tmp_path / "service.sqlite", bulk=True)
    assert sql_value(reopened, "PRAGMA page_size") == 4096
    assert sql_value(reopened, "PRAGMA journal_mode") == "wal"
    reopened.close()
