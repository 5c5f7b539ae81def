"""A PostgreSQL store that cannot be had: every command says which server and why, in one
line, within seconds, with exit status 2 (as for an unreadable SQLite file), and never
shows the password. The servers are real: a closed port, a PostgreSQL that wants another
password or has no such database, a local HTTP server, and a socket that accepts and never
answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest

from tests.conftest import DATA
from tests.postgres_cluster import PostgresServer, start_postgres
from tests.sql import end_backend
from tracerules.runtime.store.postgres import close_pool
from tracerules.runtime.store.reach import CONNECT_TIMEOUT_S, StoreUnreachable
from tracerules.runtime.store.store import Store

PASSWORD = "right-horse-battery"
SECRET = "s3cret-in-url"  # the password of every URL below: it must never be printed
BOUND_S = CONNECT_TIMEOUT_S + 8  # the connect timeout, plus starting Python twice over
RULES = str(DATA / "rules")


@pytest.fixture(scope="module")
def guarded() -> Iterator[PostgresServer]:
    """A PostgreSQL whose TCP logins need a password, as a team's server does."""
    server = start_postgres(password=PASSWORD)
    yield server
    server.stop()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again: connecting is refused


@pytest.fixture
def http_port() -> Iterator[int]:
    """A web server where the store's URL points. It waits for a request line that
    PostgreSQL's client never sends, so to the client it is a server that does not answer."""

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def banner_port() -> Iterator[int]:
    """A server that speaks first, as SSH or SMTP do: it greets, whatever it is sent."""
    listener = socket.create_server(("127.0.0.1", 0))

    def greet() -> None:
        while True:
            try:
                conn = listener.accept()[0]
            except OSError:
                return
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
                conn.recv(100)

    threading.Thread(target=greet, daemon=True).start()
    yield int(listener.getsockname()[1])
    listener.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A server that accepts the connection and then never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def _tracerules(*args: str, cwd: Path, **env: str) -> tuple[int, str, float]:
    """Run the CLI as a user would, with no PG* setting but those given."""
    began = time.monotonic()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    done = subprocess.run(
        [sys.executable, "-m", "tracerules.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**clean, **env},
        check=False,
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - began


COMMANDS = {
    "status": ["status"],
    "events": ["events", "list"],
    "store migrate": ["store", "migrate"],
    "serve": ["serve", "--port", "0"],
    "run": ["run", RULES, "--bootstrap-servers", "127.0.0.1:9"],
    "echo": ["echo", "1h", RULES, "--bootstrap-servers", "127.0.0.1:9"],
}


def _refused_in_one_line(output: str, address: str, *reasons: str) -> None:
    lines = output.strip().splitlines()
    assert len(lines) == 1, output  # one line: no traceback, no pool warnings
    line = lines[0]
    assert line.startswith("error: cannot open the store postgresql://"), line
    assert f"PostgreSQL at {address}" in line, line
    assert all(r in line for r in reasons), line
    assert SECRET not in output and PASSWORD not in output


@pytest.mark.parametrize("command", list(COMMANDS), ids=list(COMMANDS))
def test_every_command_on_a_refused_port_fails_at_once_naming_the_server(
    command: str, closed_port: int, tmp_path: Path
) -> None:
    url = f"postgresql://team:{SECRET}@127.0.0.1:{closed_port}/tracerules"
    code, output, took = _tracerules(*COMMANDS[command], "--store", url, cwd=tmp_path)
    assert code == 2, output
    _refused_in_one_line(output, f"127.0.0.1:{closed_port}", "Connection refused")
    assert took < BOUND_S, took  # the pool used to retry for 30 s first


def test_a_wrong_password_is_named_with_where_the_password_comes_from(
    guarded: PostgresServer, tmp_path: Path
) -> None:
    port = guarded.url.rsplit(":", 1)[1].split("/")[0]
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:{port}/postgres"
    for command in ("status", "run"):
        code, output, took = _tracerules(*COMMANDS[command], "--store", url, cwd=tmp_path)
        assert code == 2, output
        _refused_in_one_line(
            output, f"127.0.0.1:{port}", 'password authentication failed for user "postgres"'
        )
        assert "$PGPASSWORD" in output
        assert took < BOUND_S, took


def test_the_right_password_from_the_environment_opens_the_store(
    guarded: PostgresServer, tmp_path: Path
) -> None:
    """The same URL without a password works once $PGPASSWORD holds it (the README's way)."""
    port = guarded.url.rsplit(":", 1)[1].split("/")[0]
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    code, output, _ = _tracerules("store", "migrate", "--store", url, cwd=tmp_path)
    assert code == 2 and "no password supplied" in output, output
    code, output, _ = _tracerules(
        "store", "migrate", "--store", url, cwd=tmp_path, PGPASSWORD=PASSWORD
    )
    assert code == 0, output
    assert PASSWORD not in output


def test_a_missing_database_is_named(guarded: PostgresServer, tmp_path: Path) -> None:
    port = guarded.url.rsplit(":", 1)[1].split("/")[0]
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/no_such_db"
    code, output, took = _tracerules("status", "--store", url, cwd=tmp_path)
    assert code == 2, output
    _refused_in_one_line(output, f"127.0.0.1:{port}", 'database "no_such_db" does not exist')
    assert took < BOUND_S, took


def test_a_server_that_is_not_postgresql_is_told_apart(banner_port: int, tmp_path: Path) -> None:
    url = f"postgresql://team:{SECRET}@127.0.0.1:{banner_port}/tracerules"
    for query in ("", "?sslmode=disable"):  # refused at SSL negotiation, or at login
        code, output, took = _tracerules("status", "--store", url + query, cwd=tmp_path)
        assert code == 2, output
        _refused_in_one_line(
            output, f"127.0.0.1:{banner_port}", "does not answer as PostgreSQL does"
        )
        assert took < BOUND_S, took


def test_a_web_server_on_the_port_is_given_up_on_and_suspected(
    http_port: int, tmp_path: Path
) -> None:
    url = f"postgresql://team:{SECRET}@127.0.0.1:{http_port}/tracerules"
    code, output, took = _tracerules("status", "--store", url, cwd=tmp_path)
    assert code == 2, output
    _refused_in_one_line(output, f"127.0.0.1:{http_port}", "timeout", "is it PostgreSQL?")
    assert took < BOUND_S, took


@pytest.mark.parametrize("command", ["status", "run"])
def test_a_server_that_never_answers_is_given_up_on_after_the_connect_timeout(
    command: str, silent_port: int, tmp_path: Path
) -> None:
    url = f"postgresql://team:{SECRET}@127.0.0.1:{silent_port}/tracerules"
    code, output, took = _tracerules(*COMMANDS[command], "--store", url, cwd=tmp_path)
    assert code == 2, output
    _refused_in_one_line(output, f"127.0.0.1:{silent_port}", "timeout expired")
    assert CONNECT_TIMEOUT_S - 1 < took < BOUND_S, took  # libpq alone waits forever


# -- a store outlives its server's restarts ---------------------------------------------------


@pytest.fixture
def store_url(guarded: PostgresServer) -> Iterator[str]:
    url = guarded.fresh_database()
    yield url
    close_pool(url)


def test_a_store_whose_session_ends_fails_once_then_works_again(store_url: str) -> None:
    store = Store(store_url)
    store.put_service_state("probe", {"n": 1}, time.time())
    end_backend(store, store_url)
    with pytest.raises(psycopg.OperationalError):  # the statement in flight fails...
        store.put_service_state("probe", {"n": 2}, time.time())
    store.put_service_state("probe", {"n": 3}, time.time())  # ...the next has a new session
    assert store.service_state("probe") == {"n": 3}
    store.close()


def test_a_session_lost_inside_a_transaction_loses_the_transaction_not_the_store(
    store_url: str,
) -> None:
    store = Store(store_url)
    with pytest.raises(psycopg.OperationalError), store.transaction():
        store.put_service_state("half", {"written": True}, time.time())
        end_backend(store, store_url)
        store.put_service_state("other", {"written": True}, time.time())
    # never carried on in a new session mid-transaction: nothing of it was committed
    assert store.service_state("half") == {} and store.service_state("other") == {}
    store.put_service_state("after", {"ok": True}, time.time())
    assert store.service_state("after") == {"ok": True}
    store.close()


def test_a_session_lost_at_commit_leaves_the_store_usable(store_url: str) -> None:
    store = Store(store_url)
    with pytest.raises(psycopg.OperationalError), store.transaction():
        store.put_service_state("at-commit", {"written": True}, time.time())
        end_backend(store, store_url)  # the COMMIT at the end of the block meets the cut
    store.put_service_state("after", {"ok": True}, time.time())
    assert store.service_state("after") == {"ok": True}
    store.close()


def test_a_store_waits_out_a_server_restart(guarded: PostgresServer, store_url: str) -> None:
    store = Store(store_url)
    guarded.halt()
    try:
        with pytest.raises(psycopg.OperationalError):  # the session ends under it
            store.put_service_state("down", {}, time.time())
        began = time.monotonic()
        with pytest.raises(StoreUnreachable, match=r"PostgreSQL at 127\.0\.0\.1:\d+"):
            store.put_service_state("down", {}, time.time())  # no new one: said, in time
        assert time.monotonic() - began < CONNECT_TIMEOUT_S + 3
    finally:
        guarded.resume()
    store.put_service_state("up", {"ok": True}, time.time())
    assert store.service_state("up") == {"ok": True}
    store.close()
