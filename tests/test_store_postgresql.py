"""The team store: PostgreSQL behind the same store interface, and moving a SQLite store's
history into it. Every test here talks to a real PostgreSQL server (tests/postgres_server.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from tests.conftest import DATA, NOTICES
from tests.dashboard_server import Server, get_page
from tests.postgres_server import PostgresServer
from tests.service_harness import wait_until
from tests.sql import end_sessions, old_store, sql_rows, sql_run, sql_value
from tracerules.cli.main import app
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.dispatch.workers import UNOWNED_GRACE_S, recover
from tracerules.runtime.engine.replay import replay
from tracerules.runtime.service.health import member_key
from tracerules.runtime.sources.files import iter_notices
from tracerules.runtime.sources.notices import Notice
from tracerules.runtime.store import history, transfer
from tracerules.runtime.store.actions import PlannedRow
from tracerules.runtime.store.dialect import display_location
from tracerules.runtime.store.lock import DatabaseLock, session_name, wait_for_database_lock
from tracerules.runtime.store.postgres import close_pool, ddl, translate
from tracerules.runtime.store.schema import SCHEMA_VERSION
from tracerules.runtime.store.store import ReadOnlyStoreError, Store
from tracerules.web.app import create_app

RULES = str(DATA / "rules")
runner = CliRunner()


@pytest.fixture
def database(postgres_server: PostgresServer) -> Any:
    url = postgres_server.fresh_database()
    yield url
    close_pool(url)


@pytest.fixture
def filled_sqlite(tmp_path: Path) -> Path:
    """A SQLite store filled by a dry run of real notices: events, decisions, actions."""
    path = tmp_path / "team.sqlite"
    replay(load_ruleset([RULES]), iter_notices([NOTICES]), store_path=path).close()
    return path


def _cli(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    return result


def _everything(location: str | Path) -> list[Any]:
    """Events with notices, decisions, factors and actions, as the read model gives them."""
    store = Store(location, read_only=True)
    try:
        views = history.events(store)
        payloads = {n.id: bytes(store.notice(n.id)["payload"]) for v in views for n in v.notices}
        return [repr(v) for v in views] + [sorted(payloads.items())]
    finally:
        store.close()


# -- moving a team's SQLite store to PostgreSQL -------------------------------------------------


def test_an_export_of_a_sqlite_store_imports_into_postgresql_with_the_same_history(
    filled_sqlite: Path, database: str, tmp_path: Path
) -> None:
    exported = tmp_path / "export.ndjson"
    done = _cli("store", "export", "--store", str(filled_sqlite), "--out", str(exported))
    assert done.exit_code == 0, done.output
    header = json.loads(exported.read_text().splitlines()[0])
    assert header["format"] == "tracerules-store-export" and header["schema"] == SCHEMA_VERSION
    moved = _cli("store", "migrate", "--from", str(exported), "--store", database)
    assert moved.exit_code == 0, moved.output
    assert "notices" in moved.stdout and "decisions" in moved.stdout

    before, after = _everything(filled_sqlite), _everything(database)
    assert len(before) > 5 and after == before  # same events, decisions, actions, payloads
    event = json.loads(_cli("events", "list", "--store", database, "-f", "json").stdout)
    first = event["events"][0]
    for command in (
        ["events", "list"],
        ["events", "show", first["trigger"], first["event_id"], "--rules", RULES],
        ["actions", "list"],
        ["notices", "list"],
        ["notices", "show", "1"],
        ["topics", "--rules", RULES],
    ):
        old = _cli(*command, "--store", str(filled_sqlite), "-f", "json")
        new = _cli(*command, "--store", database, "-f", "json")
        assert old.exit_code == new.exit_code == 0, (old.output, new.output)
        assert json.loads(new.stdout) == json.loads(old.stdout), command

    # New rows continue after the imported ids instead of colliding with them.
    store = Store(database)
    highest = sql_value(store, "SELECT max(id) FROM notices")
    added = store.add_notice(Notice("gcn.notices.new", b'{"n": 1}', received=1.0e9))
    assert added.new and added.id > highest
    store.close()


def test_migrate_copies_straight_from_the_sqlite_file(
    filled_sqlite: Path, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    moved = _cli("store", "migrate", "--from", str(filled_sqlite), "--store", database)
    assert moved.exit_code == 0, moved.output
    assert _everything(database) == _everything(filled_sqlite)
    # Exported again from PostgreSQL, a few rows a page: the same rows as the original's.
    monkeypatch.setattr(transfer, "PAGE", 3)
    exports = [
        _cli("store", "export", "--store", str(where)).stdout.splitlines()[1:]
        for where in (filled_sqlite, database)
    ]
    assert len(exports[0]) > 3 * 10 and exports[1] == exports[0]


def test_migrate_into_a_store_with_history_refuses_and_changes_nothing(
    filled_sqlite: Path, database: str
) -> None:
    assert (
        _cli("store", "migrate", "--from", str(filled_sqlite), "--store", database).exit_code == 0
    )
    again = _cli("store", "migrate", "--from", str(filled_sqlite), "--store", database)
    assert again.exit_code == 2
    assert "already holds" in again.output
    assert _everything(database) == _everything(filled_sqlite)  # not doubled


def test_a_broken_export_imports_nothing(
    filled_sqlite: Path, database: str, tmp_path: Path
) -> None:
    exported = tmp_path / "export.ndjson"
    _cli("store", "export", "--store", str(filled_sqlite), "--out", str(exported))
    lines = exported.read_text().splitlines()
    broken = tmp_path / "broken.ndjson"
    broken.write_text("\n".join([*lines[:-3], lines[-3][:20], *lines[-2:]]) + "\n")
    moved = _cli("store", "migrate", "--from", str(broken), "--store", database)
    assert moved.exit_code == 2 and f"line {len(lines) - 2}: not JSON" in moved.output
    store = Store(database, read_only=True)
    assert store.totals().notices == {} and store.count_events() == 0  # all or nothing
    store.close()


# -- the same commands over PostgreSQL ------------------------------------------------------------


def test_status_events_and_the_dashboard_read_a_postgresql_store(
    filled_sqlite: Path, database: str
) -> None:
    replay(load_ruleset([RULES]), iter_notices([NOTICES]), store_path=database).close()
    status = _cli("status", "--store", database, "-f", "json")
    assert status.exit_code == 1, status.output  # degraded: no service is running
    data = json.loads(status.stdout)
    assert data["counts"]["events"] == Store(filled_sqlite, read_only=True).count_events() > 0
    shown = _cli("events", "list", "--store", database, "-f", "json")
    assert json.loads(shown.stdout)["total"] == data["counts"]["events"]
    server = Server(create_app(database, [RULES]))
    try:
        page = get_page(server, "/")
    finally:
        server.stop()
    assert page.xpath("//div[@id='stream']")


def test_a_read_only_postgresql_store_refuses_writes(database: str) -> None:
    Store(database).close()
    store = Store(database, read_only=True)
    with pytest.raises(ReadOnlyStoreError, match="is open read-only"):
        store.add_notice(Notice("t", b"{}", received=1.0))
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        sql_run(store, "DELETE FROM notices")  # the server refuses it too, under the method
    store.close()


def test_the_password_of_a_store_url_is_never_shown() -> None:
    url = "postgresql://team:s3cret@db.example.org:5432/tracerules"
    assert display_location(url) == "postgresql://team@db.example.org:5432/tracerules"
    assert display_location("/var/lib/tracerules.sqlite") == "/var/lib/tracerules.sqlite"
    missing = _cli("events", "list", "--store", "/nonexistent/t.sqlite")
    assert missing.exit_code == 2 and "no store at /nonexistent/t.sqlite" in missing.output


# -- one SQL, two dialects -------------------------------------------------------------------------


def test_the_stores_sql_is_rewritten_for_postgresql_once_and_exactly() -> None:
    # Placeholders become psycopg's, and a literal % is doubled so psycopg keeps it.
    assert translate("SELECT x FROM t WHERE a=? AND b LIKE 'z%'") == (
        "SELECT x FROM t WHERE a=%s AND b LIKE 'z%%'"
    )
    # SQLite's index hint (the store's notice-status read) is dropped, the rest kept as is.
    assert translate("SELECT id FROM notices INDEXED BY notices_by_status WHERE id IN (?, ?)") == (
        "SELECT id FROM notices WHERE id IN (%s, %s)"
    )
    # The portable conflict clause passes through untouched.
    portable = "INSERT INTO t (a) VALUES (?) ON CONFLICT (a) DO UPDATE SET a=excluded.a"
    assert translate(portable) == portable.replace("?", "%s")
    # SQLite's own conflict clauses are refused by name, never rewritten.
    for clause in ("IGNORE", "REPLACE", "ABORT"):
        with pytest.raises(ValueError, match=f"INSERT OR {clause} is SQLite's.*ON CONFLICT"):
            translate(f"insert or {clause.lower()} INTO t (a) VALUES (?) RETURNING id")
    assert "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY" in ddl("id INTEGER PRIMARY KEY")
    assert ddl("payload BLOB, at REAL, n INTEGER") == (
        "payload BYTEA, at DOUBLE PRECISION, n BIGINT"
    )


# -- upgrades in place -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, SCHEMA_VERSION - 1])
def test_a_store_of_an_older_schema_upgrades_in_place(
    store_location: str | Path, version: int
) -> None:
    old_store(store_location, version)
    done = _cli("store", "migrate", "--store", str(store_location))
    assert done.exit_code == 0, done.output
    assert f"schema {version} -> {SCHEMA_VERSION}" in done.stdout
    store = Store(store_location)
    assert store.version() == SCHEMA_VERSION
    assert store.read_notice(1) == Notice("t", b"{}", 0, 7, None, 1.0, "kafka", None)
    assert store.has_table("action_configs") and store.service_state("x") == {}
    store.close()


# -- two services on one PostgreSQL store ---------------------------------------------------------


def _pending_actions(store: Store, count: int) -> None:
    with store.transaction():
        sql_run(
            store,
            "INSERT INTO decisions (id, trigger, seq, source, at, mode, votes, conclusion, "
            "rule_file, rule_revision) VALUES (1, 'all', 1, 'notice', 1.0, 'live', 'PASS', "
            "'PASS', 'r.yaml', 'rev')",
        )
        for n in range(count):
            store.plan_action(
                PlannedRow(
                    1, "all", "E1", f"key-{n}", n, "webhook", f"hook {n}", "pending", "{}",
                    None, 1.0, "h", "{}", "rev", None, 3600.0,
                )
            )  # fmt: skip


@pytest.mark.parametrize("backend", ["postgresql"])
def test_workers_of_two_services_never_claim_the_same_action(store: Store) -> None:
    """Each service's workers have their own connection; the database hands each pending
    action to one of them (FOR UPDATE SKIP LOCKED), never to two."""
    _pending_actions(store, 60)
    claimed: list[int] = []
    lock = threading.Lock()

    def worker(owner: str) -> None:
        mine = Store(store.path)
        while (row := mine.claim_action(2.0, owner=owner)) is not None:
            with lock:
                claimed.append(int(row["id"]))
        mine.close()

    threads = [threading.Thread(target=worker, args=(f"service-{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 60
    assert sql_value(store, "SELECT count(*) FROM actions WHERE status='running'") == 60
    assert sql_value(store, "SELECT max(attempts) FROM actions") == 1


_HOLDER = (
    "import sys, time\n"
    "from tracerules.runtime.store.lock import DatabaseLock\n"
    "lock = DatabaseLock(sys.argv[1])\n"
    "print('held' if lock.try_acquire(shared=sys.argv[2] == 'shared') else 'refused', flush=True)\n"
    "time.sleep(120)\n"
)


def _holder(database: str, how: str) -> subprocess.Popen[str]:
    """Another process holding the store's service lock: as a service ("shared") or as a
    relisten ("alone"); it says whether it got it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, database, how], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_services_share_the_store_and_wait_only_for_a_relisten_killed_or_done(
    database: str,
) -> None:
    """Services hold the lock together; a relisten holds it alone, and a service waits for
    it. kill -9 of the relisten closes its connection; PostgreSQL frees its lock at once."""
    relisten = _holder(database, "alone")
    try:
        told: list[str] = []
        taken: list[DatabaseLock] = []
        service = threading.Thread(
            target=lambda: taken.append(
                wait_for_database_lock(database, told.append, 0.05, shared=True)
            )
        )
        service.start()
        time.sleep(1.0)
        assert service.is_alive() and not taken  # waiting, not running beside the relisten
        assert len(told) == 1 and "backend pid" in told[0]
        os.kill(relisten.pid, signal.SIGKILL)
        killed = time.monotonic()
        service.join(timeout=10)
        assert taken and time.monotonic() - killed < 5
    finally:
        relisten.kill()
        relisten.communicate()
    second = DatabaseLock(database)
    assert second.try_acquire(shared=True)  # a second service beside the first
    echo = DatabaseLock(database)
    assert not echo.try_acquire()  # a relisten is refused while services run
    taken[0].close()
    second.close()  # the server ends their sessions, and frees the lock, a moment later
    assert wait_until(echo.try_acquire, 10, "the lock freed")
    echo.close()


def test_status_shows_every_service_on_a_postgresql_store(database: str) -> None:
    """Every service of the team, as PostgreSQL sees their sessions: host, pid, and as each
    recorded them, the partitions it consumes (none: a standby in the group) and its beat."""
    host = socket.gethostname()
    store = Store(database)
    record = {"partitions": ["gcn.notices.swift.bat.guano[0]"], "beat": 7.0}
    store.put_service_state(member_key(host, os.getpid()), record, 1.0)
    store.close()
    active = DatabaseLock(database)
    assert active.try_acquire(shared=True)
    standby = _holder(database, "shared")
    try:
        shown = _cli("status", "--store", database, "-f", "json")
        services = json.loads(shown.stdout)["services"]
        assert [(s["role"], s["host"], s["pid"]) for s in services] == [
            ("active", host, os.getpid()),
            ("standby", host, standby.pid),
        ]
        assert services[0]["partitions"] == ["gcn.notices.swift.bat.guano[0]"]
        assert services[1]["partitions"] == []
        assert (services[0]["last_heartbeat"], services[1]["last_heartbeat"]) == (7.0, None)
        text = _cli("status", "--store", database).stdout
        assert f"active pid {os.getpid()} on {host}" in text
        assert f"standby pid {standby.pid} on {host}" in text
    finally:
        standby.kill()
        standby.communicate()
    active.close()

    def gone() -> bool:
        after = json.loads(_cli("status", "--store", database, "-f", "json").stdout)
        return after["services"] == []

    assert wait_until(gone, 10, "the sessions ended")


@dataclass(frozen=True)
class _Offsets:
    topic: str
    partition: int
    position: int | None = 5
    committed: int | None = 5
    high: int | None = 5
    lag: int | None = 0


@pytest.mark.parametrize("backend", ["postgresql"])
def test_an_action_claimed_by_a_service_on_another_machine_is_reclaimed_after_its_lease(
    store: Store,
) -> None:
    """Another host's process cannot be asked whether it lives: its running action is taken
    back once its lease (the action's run budget plus a grace) has passed, and only then."""
    _pending_actions(store, 2)
    rules = load_ruleset([RULES])
    claimed = store.claim_action(1000.0, owner="machine-b/4242/99")
    assert claimed is not None
    assert recover(store, rules, now=1000.0 + UNOWNED_GRACE_S - 1) == []  # lease still held
    assert recover(store, rules, now=1000.0 + UNOWNED_GRACE_S + 1) == [claimed["id"]]
    row = sql_rows(store, "SELECT status, owner, log FROM actions WHERE id=?", (claimed["id"],))[0]
    assert (row["status"], row["owner"]) == ("pending", None) and "no live owner" in row["log"]
    again = store.claim_action(2000.0, owner="machine-a/1/1")
    assert again is not None and again["id"] == claimed["id"]  # taken up by a live service


def test_a_service_that_loses_its_lock_connection_to_a_relisten_is_told_to_stop(
    database: str,
) -> None:
    """A server restart or a network cut ends the lock's session: if a relisten took the lock
    alone meanwhile, the service must stop rather than go on beside it."""
    lock = DatabaseLock(database)
    assert lock.try_acquire(shared=True)
    lost: list[str] = []
    watcher = lock.watch(lost.append, every_s=1.0)
    time.sleep(0.5)
    assert lost == []  # a healthy lock is left alone
    end_sessions(database, session_name())
    relisten = DatabaseLock(database)
    assert wait_until(relisten.try_acquire, 10, "the relisten's turn")  # before the service
    watcher.join(timeout=10)
    assert len(lost) == 1 and "lost the store's service lock to another process" in lost[0]
    relisten.close()
    lock.close()


def test_a_service_that_loses_its_lock_connection_takes_the_lock_back_if_free(
    database: str,
) -> None:
    """When no other service took it (the server restarted under the only one), the lock is
    taken back (shared, as it was) and the service goes on: no restart, no alert lost."""
    lock = DatabaseLock(database)
    assert lock.try_acquire(shared=True)
    lost: list[str] = []
    watcher = lock.watch(lost.append, every_s=0.1)
    end_sessions(database, session_name())

    def held_again() -> bool:
        other = DatabaseLock(database)
        try:
            return not other.try_acquire()
        finally:
            other.close()

    deadline = time.monotonic() + 10
    while not held_again():
        assert time.monotonic() < deadline, "the lock was not taken back"
        time.sleep(0.1)
    assert lost == [] and watcher.is_alive()
    lock.close()
    watcher.join(timeout=5)
    assert not watcher.is_alive()


def test_echo_is_refused_while_a_service_is_active_on_a_postgresql_store(database: str) -> None:
    """A relisten beside the active service would be a second engine on the store: refused
    at once (never left waiting as a standby), as on SQLite."""
    Store(database).close()
    active = DatabaseLock(database)
    assert active.try_acquire(shared=True)
    refused = _cli("echo", "1h", RULES, "--store", database, "--bootstrap-servers", "127.0.0.1:9")
    active.close()
    assert refused.exit_code == 1
    assert "another `tracerules run` or `echo` is using the store" in refused.output


# -- several services deciding at once: what the database serialises ----------------------------


def _blocked_while_held(
    database: str, hold: Any, wait: Any, release: Any
) -> tuple[bool, list[Any]]:
    """`hold(store)` in an open transaction; `wait(store)` in another store's transaction on a
    thread: whether it was still blocked 0.5 s later, and what it returned once `release`
    committed the first."""
    first, second = Store(database), Store(database)
    got: list[Any] = []
    try:
        with first.transaction():
            hold(first)

            def other() -> None:
                with second.transaction():
                    got.append(wait(second))

            thread = threading.Thread(target=other)
            thread.start()
            time.sleep(0.5)
            blocked = thread.is_alive()
            release(first)
        thread.join(timeout=10)
        return blocked, got
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("backend", ["postgresql"])
def test_an_event_being_decided_by_one_service_waits_for_the_other(store: Store) -> None:
    """The advisory lock of an event holds a second decision on it until the first commits,
    including an event not stored yet; another event is not held."""
    key = [("lvk", "S1")]
    blocked, got = _blocked_while_held(
        str(store.path),
        lambda s: s.lock_events(key),
        lambda s: (s.lock_events(key), sql_value(s, "SELECT count(*) FROM events"))[1],
        lambda s: sql_run(
            s,
            "INSERT INTO events (trigger, event_id, first_seen, last_seen) "
            "VALUES ('lvk', 'S1', 1, 1)",
        ),
    )
    assert blocked and got == [1]  # it read the state the first one committed
    free, _ = _blocked_while_held(
        str(store.path),
        lambda s: s.lock_events(key),
        lambda s: s.lock_events([("lvk", "S2")]),
        lambda s: None,
    )
    assert not free


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_notice_evaluated_meanwhile_by_another_service_is_not_evaluated_again(
    store: Store,
) -> None:
    stored = store.add_notice(Notice("t", b"<x/>", 0, 5, 1.0, 1.0))
    blocked, got = _blocked_while_held(
        str(store.path),
        lambda s: s.take_for_evaluation(stored.id),
        lambda s: s.take_for_evaluation(stored.id),
        lambda s: s.set_notice_status(stored.id, "evaluated"),
    )
    assert blocked and got == [False]


@pytest.mark.parametrize("backend", ["postgresql"])
def test_arbitration_of_one_observatory_by_two_services_is_serialised(store: Store) -> None:
    """A second service reading an observatory's current observation waits until the first
    has recorded its own, and then sees it (never both taking a free telescope)."""
    _pending_actions(store, 1)
    from tracerules.runtime.store.actions import ObservationRow

    row = ObservationRow("ATCA", False, 1, "all", "E1", 10, 1.0, 2.0, 5.0, 1e12)
    blocked, got = _blocked_while_held(
        str(store.path),
        lambda s: s.current_observation("ATCA", False, 10.0),
        lambda s: s.current_observation("ATCA", False, 10.0),
        lambda s: s.start_observation(row),
    )
    assert blocked and got[0] is not None and got[0]["event_id"] == "E1"
