"""WAL checkpoints off the service's commits: the store's own commits no longer copy the log
back (and sync) every 1000 pages; a side thread does, and the backstop still bounds the log."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

import pytest

from tests.sql import sql_value
from tracerules.runtime.sources.notices import Notice
from tracerules.runtime.store.checkpoint import (
    BACKSTOP_BYTES,
    DEFAULT_PAGES,
    BackgroundCheckpoints,
)
from tracerules.runtime.store.store import Store

PAGE = 4096
FRAME = PAGE + 24  # a WAL frame: a page and its header


def write_pages(store: Store, pages: int, first: int = 0) -> None:
    """Commits of notices whose payloads fill about `pages` pages of the log."""
    for offset in range(first, first + pages // 2):
        store.add_notice(Notice("bench.topic", os.urandom(2 * PAGE - 200), 0, offset))


def log_pages(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size // FRAME if wal.exists() else 0


def test_the_stores_own_commits_checkpoint_every_thousand_pages_by_default(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "s.sqlite")
    write_pages(store, 1600)
    assert log_pages(tmp_path / "s.sqlite") < DEFAULT_PAGES + 100  # restarted after a sync
    store.close()


def test_with_background_checkpoints_the_commits_leave_the_log_to_the_side_thread(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "s.sqlite")
    checkpoints = BackgroundCheckpoints(store, interval=3600)  # its thread stays idle here
    checkpoints.start()
    try:
        assert sql_value(store, "PRAGMA wal_autocheckpoint") == BACKSTOP_BYTES // PAGE
        write_pages(store, 1600)
        assert log_pages(tmp_path / "s.sqlite") > 1500  # no commit copied the log back
        with contextlib.closing(sqlite3.connect(tmp_path / "s.sqlite")) as side:
            busy, log, copied = checkpoints.checkpoint(side) or (1, 0, -1)
        assert busy == 0 and log > 1500 and copied == log  # the side thread's one call
        write_pages(store, 20, first=5000)  # the next commit finds it copied back: restarts
        with contextlib.closing(sqlite3.connect(tmp_path / "s.sqlite")) as side:
            busy, log, copied = checkpoints.checkpoint(side) or (1, 0, -1)
        assert busy == 0 and log < 200 and copied == log
    finally:
        checkpoints.stop()
    assert sql_value(store, "PRAGMA wal_autocheckpoint") == DEFAULT_PAGES
    store.close()


def test_the_side_thread_copies_the_log_back_while_commits_go_on(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = Store(path)
    checkpoints = BackgroundCheckpoints(store, interval=0.05)
    checkpoints.start()
    try:
        write_pages(store, 400)
        time.sleep(0.5)
        with contextlib.closing(sqlite3.connect(path)) as side:
            busy, log, copied = checkpoints.checkpoint(side) or (1, 0, -1)
        assert busy == 0 and copied == log  # nothing left for the commits to copy
        assert path.stat().st_size > 400 * PAGE  # the notices are in the database file
    finally:
        checkpoints.stop()
        store.close()


def test_a_failing_checkpoint_is_reported_once_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path / "s.sqlite")
    checkpoints = BackgroundCheckpoints(store)
    closed = sqlite3.connect(tmp_path / "s.sqlite")
    closed.close()
    assert checkpoints.checkpoint(closed) is None
    assert checkpoints.checkpoint(closed) is None
    assert [r.getMessage() for r in caplog.records] == ["background checkpoint failed"]
    with contextlib.closing(sqlite3.connect(tmp_path / "s.sqlite")) as side:
        assert checkpoints.checkpoint(side) is not None
    store.close()


def test_a_postgresql_or_memory_store_needs_no_checkpoints() -> None:
    store = Store(":memory:")
    checkpoints = BackgroundCheckpoints(store)
    assert not checkpoints.applies
    checkpoints.start()  # nothing started, nothing set
    assert sql_value(store, "PRAGMA wal_autocheckpoint") == DEFAULT_PAGES
    checkpoints.stop()
    store.close()


def test_a_bulk_batch_copies_its_log_back_on_the_side_and_keeps_it_bounded(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bulk.sqlite"
    store = Store(path, bulk=True)
    page = sql_value(store, "PRAGMA page_size")
    with store.batch():
        assert sql_value(store, "PRAGMA wal_autocheckpoint") == BACKSTOP_BYTES // page
        for offset in range(6000):  # 120 MB in batches of 1 MB: three times the backstop
            store.add_notice(Notice("bench.topic", os.urandom(20_000), 0, offset))
            if offset % 50 == 49:
                store.commit_batch()
            if offset == 499:
                time.sleep(0.5)  # the side thread's turn: the file holds the first 10 MB
                assert path.stat().st_size > 8_000_000
        # The log restarted from its beginning, again and again: its file, as long as the
        # log ever was, stays well under what was written.
        assert Path(f"{path}-wal").stat().st_size < 1.75 * BACKSTOP_BYTES
    assert sql_value(store, "PRAGMA wal_autocheckpoint") == 2500  # the bulk store's own again
    store.close()
