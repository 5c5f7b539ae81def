"""Pytest plugin: a real, throwaway PostgreSQL server for the team-store tests.

The server is Debian's PostgreSQL (``initdb`` and ``pg_ctl`` under /usr/lib/postgresql/N/bin;
``.ci/run`` installs the package where it is missing). PostgreSQL refuses to run as root, and
CI runs as root, so the cluster is created and started as the ``postgres`` system user with
``runuser`` when we are root, and as ourselves otherwise. It listens on 127.0.0.1 only, on a
free port, with trust authentication for loopback (a throwaway cluster with no secrets), and
its data directory is removed at exit.

Fixtures:

* ``postgres_server`` (session): an object with ``.url`` (``postgresql://...``) and
  ``.fresh_database() -> url`` for a new, empty database per test.
  With ``TRACERULES_TEST_POSTGRES=postgresql://...`` an existing server is used instead.
  A missing PostgreSQL is a test *failure*, never a skip.

PYTEST_DONT_REWRITE: this module has no test assertions.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "find_bin", "postgres_server", "start_postgres"]

SYSTEM_USER = "postgres"
START_TIMEOUT_S = 60


def find_bin(name: str) -> Path:
    """The newest Debian PostgreSQL's program `name` (initdb, pg_ctl, ...), or a clear error."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_major_version)
    if found:
        return Path(found[-1])
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    raise RuntimeError(
        f"PostgreSQL's {name} was not found: install Debian's postgresql package "
        "(`apt-get install -y postgresql`, as .ci/run does)"
    )


def _major_version(path: str) -> int:
    part = path.split("/")[4]
    return int(part) if part.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user(argv: Sequence[str]) -> list[str]:
    # PostgreSQL will not run as root; as anyone else it runs as that user.
    if os.geteuid() == 0:
        return ["runuser", "-u", SYSTEM_USER, "--", *argv]
    return list(argv)


@dataclass
class PostgresServer:
    """A running PostgreSQL cluster (or an external one from $TRACERULES_TEST_POSTGRES)."""

    url: str
    data_dir: Path | None = None
    _databases: list[str] = field(default_factory=list)

    def fresh_database(self) -> str:
        """Create an empty database and return its URL: each test gets its own schema."""
        from tests.sql import create_database  # tracerules is imported only when used

        name = f"t_{uuid.uuid4().hex[:12]}"
        create_database(self.url, name)
        self._databases.append(name)
        return self.url.rsplit("/", 1)[0] + "/" + name

    def stop(self) -> None:
        if self.data_dir is None:
            return
        subprocess.run(
            _as_server_user(
                [str(find_bin("pg_ctl")), "-D", str(self.data_dir), "-m", "immediate", "stop"]
            ),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)
        self.data_dir = None


def start_postgres() -> PostgresServer:
    """Create a throwaway cluster on a free loopback port and start it."""
    root = Path(tempfile.mkdtemp(prefix="tracerules-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, SYSTEM_USER)
    os.chmod(root, 0o700)
    _run([str(find_bin("initdb")), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"])
    port = _free_port()
    # fsync off: a throwaway cluster for tests, where speed matters and durability does not.
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} "
        f"-c unix_socket_directories={root} -c fsync=off"
    )
    _run(
        [
            str(find_bin("pg_ctl")),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(root / "log"),
            "-w",
            "start",
        ]
    )
    server = PostgresServer(url=f"postgresql://postgres@127.0.0.1:{port}/postgres", data_dir=data)
    atexit.register(server.stop)
    _wait_ready(server.url)
    return server


def _run(argv: Sequence[str]) -> None:
    done = subprocess.run(_as_server_user(argv), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{Path(argv[0]).name} failed ({done.returncode}): {done.stderr.strip()}"
        )


def _wait_ready(url: str) -> None:
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    external = os.environ.get("TRACERULES_TEST_POSTGRES")
    if external:
        yield PostgresServer(url=external)
        return
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
