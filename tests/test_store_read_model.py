"""The store's read-only mode, its deduplication across partitions, and the one stream-health
answer that `tracerules status` and the dashboard share."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import DATA, NOTICES
from tests.dashboard_server import Server, get_page
from tests.sql import old_store, sql_run
from tracerules.cli.main import app
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.engine.replay import replay
from tracerules.runtime.service.health import Recorder
from tracerules.runtime.sources.files import iter_notices
from tracerules.runtime.sources.notices import Notice
from tracerules.runtime.store.schema import SCHEMA_VERSION
from tracerules.runtime.store.store import ReadOnlyStoreError, Store
from tracerules.web.app import create_app

RULES = str(DATA / "rules")
runner = CliRunner()


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    """A store filled by a dry run of real notices: events, decisions, actions."""
    path = tmp_path / "store.sqlite"
    replay(load_ruleset([RULES]), iter_notices([NOTICES]), store_path=path).close()
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- deduplication -----------------------------------------------------------------------------


def test_two_partitions_with_the_same_offset_are_two_notices(store: Store) -> None:
    topic = "gcn.notices.swift.bat.guano"
    first = store.add_notice(Notice(topic, b'{"n": 1}', partition=0, offset=7, received=1.0))
    other = store.add_notice(Notice(topic, b'{"n": 2}', partition=1, offset=7, received=2.0))
    assert first.new and other.new and first.id != other.id
    assert (first.status, other.status) == ("new", "new")
    # The same bytes at the same offset of another partition: a re-send, kept as its own row.
    resent = store.add_notice(Notice(topic, b'{"n": 1}', partition=2, offset=7, received=3.0))
    assert resent.new and resent.status == "duplicate" and resent.duplicate_of == first.id
    # A redelivery of partition 1's offset 7 is found, not stored again.
    again = store.add_notice(Notice(topic, b'{"n": 2}', partition=1, offset=7, received=4.0))
    assert not again.new and again.id == other.id
    assert store.totals().notices == {"new": 2, "duplicate": 1}
    assert store.last_offset(topic, 1) == (7, hashlib.sha256(b'{"n": 2}').hexdigest())
    store.close()


# -- read-only mode ------------------------------------------------------------------------------


def test_a_read_only_store_refuses_writes_with_a_clear_error(filled: Path) -> None:
    before = digest(filled)
    store = Store(filled, read_only=True)
    assert store.read_only and store.totals().events > 0
    notice = Notice("gcn.notices.test", b"{}", received=1.0)
    for write in (
        lambda: store.add_notice(notice),
        lambda: store.set_notice_status(1, "dead"),
        lambda: store.dead_letter(1, "gcn.notices.test", "no"),
        lambda: store.put_service_state("service", {"state": "running"}, 1.0),
        lambda: store.retry_failed_actions([1], None, None, "again", 1.0),
    ):
        with pytest.raises(ReadOnlyStoreError, match="is open read-only"):
            write()
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        sql_run(store, "DELETE FROM notices")  # SQLite refuses it too, under the method
    store.close()
    assert digest(filled) == before
    with pytest.raises(FileNotFoundError, match="no store at"):
        Store(filled.parent / "missing.sqlite", read_only=True)
    assert not (filled.parent / "missing.sqlite").exists()


def test_status_and_events_never_migrate_or_write(tmp_path: Path) -> None:
    """A store another (older) tracerules service owns is read as it is, never upgraded: a
    writable open would migrate it, under the running service's feet."""
    path = tmp_path / "old.sqlite"
    old_store(path, SCHEMA_VERSION - 1, with_notice=False)
    before = digest(path)
    status = runner.invoke(app, ["status", "--store", str(path), "-f", "json"])
    assert status.exit_code == 1, status.output  # degraded: no service, no heartbeat
    assert json.loads(status.stdout)["stream"]["health"] == "FAILURE"
    events = runner.invoke(app, ["events", "list", "--store", str(path), "--format", "json"])
    assert events.exit_code == 0, events.output
    assert json.loads(events.stdout)["total"] == 0
    assert digest(path) == before
    assert Store(path, read_only=True).version() == SCHEMA_VERSION - 1


@pytest.fixture
def read_only_file(filled: Path) -> Iterator[Path]:
    """The filled store as a read-only file in a read-only folder (restored afterwards)."""
    folder = filled.parent
    filled.chmod(0o444)
    folder.chmod(0o555)
    yield filled
    folder.chmod(0o755)
    filled.chmod(0o644)


def test_status_events_and_actions_read_a_read_only_file(read_only_file: Path) -> None:
    before = digest(read_only_file)
    status = runner.invoke(app, ["status", "--store", str(read_only_file), "-f", "json"])
    assert status.exit_code == 1, status.output
    data = json.loads(status.stdout)
    assert data["counts"]["events"] > 0 and data["decisions"]
    events = runner.invoke(app, ["events", "list", "--store", str(read_only_file), "-f", "json"])
    assert events.exit_code == 0, events.output
    assert json.loads(events.stdout)["total"] == data["counts"]["events"]
    actions = runner.invoke(app, ["actions", "list", "--store", str(read_only_file), "-f", "json"])
    assert actions.exit_code == 0, actions.output
    assert len(json.loads(actions.stdout)) == sum(data["counts"]["actions"].values())
    assert digest(read_only_file) == before
    assert stat.S_IMODE(read_only_file.stat().st_mode) == 0o444
    if os.geteuid() != 0:  # root writes through permissions; others are refused by the OS
        with pytest.raises(sqlite3.OperationalError):
            Store(read_only_file).add_notice(Notice("t", b"{}", received=1.0))


def test_a_wal_store_without_its_shm_in_a_folder_not_writable(
    filled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite cannot open a WAL store read-only when its `-shm` is gone and the folder is
    not writable, unless told the file is immutable. Root writes through permissions, so the
    folder's refusal is what `os.access` answers here."""
    assert not filled.with_name(filled.name + "-shm").exists()  # the dry run closed cleanly
    folder = filled.parent
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if Path(p) == folder else real_access(p, mode)
    )
    store = Store(filled, read_only=True)
    assert store.totals().events > 0 and store.event_summaries(limit=3)
    store.close()
    assert not filled.with_name(filled.name + "-shm").exists()


# -- one stream health -----------------------------------------------------------------------------


def _heartbeat(path: str | Path, age: float | None) -> None:
    store = Store(path)
    if age is not None:
        made = time.time() - age
        Recorder(store).put("heartbeat", time=made, received=made, count=1)
    store.close()


@pytest.mark.parametrize(
    ("age", "expected"), [(None, "FAILURE"), (1.0, "OK"), (30.0, "DELAYED"), (600.0, "FAILURE")]
)
def test_status_and_the_dashboard_agree_on_stream_health(
    store_location: str | Path, age: float | None, expected: str
) -> None:
    path = store_location  # a SQLite file, or a PostgreSQL database
    _heartbeat(path, age)
    result = runner.invoke(app, ["status", "--store", str(path), "-f", "json"])
    told = json.loads(result.stdout)["stream"]
    server = Server(create_app(path, [RULES]))
    try:
        (shown,) = get_page(server, "/").xpath("//div[@id='stream']")
    finally:
        server.stop()
    assert told["health"] == shown.get("data-stream") == expected
    assert told["reason"].split(" ago")[0].rsplit(" ", 2)[0] in shown.text_content()
    if age is None:
        assert "no heartbeat was ever seen" in shown.text_content()


def test_sql_is_run_only_by_the_store_package_and_the_tests_helper() -> None:
    """tracerules reads through its read model; tests and benches that need a statement of
    their own run it through tests/sql.py, never a store method kept for them."""
    root = Path(__file__).resolve().parents[1]
    allowed = (root / "src/tracerules/runtime/store", root / "tests/sql.py")
    pattern = re.compile(r"execute\(|\.query\(|\.scalar\(")
    found = [
        f"{path.relative_to(root)}:{number}"
        for folder in ("src", "tests", "bench")
        for path in sorted((root / folder).rglob("*.py"))
        if not any(path == a or a in path.parents for a in allowed)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []
    assert not hasattr(Store, "query") and not hasattr(Store, "scalar")
