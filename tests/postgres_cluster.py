"""A real, throwaway PostgreSQL server: for the team-store tests (through the fixture in
tests/postgres_server.py) and for the benchmarks that compare the stores (bench/engine.py
--postgresql, bench/ha.py). It imports neither pytest nor anything of the tests.

The server is Debian's PostgreSQL (``initdb`` and ``pg_ctl`` under /usr/lib/postgresql/N/bin;
``.ci/run`` installs the package where it is missing). PostgreSQL refuses to run as root, and
CI runs as root, so the cluster is created and started as the ``postgres`` system user with
``runuser`` when we are root, and as ourselves otherwise. It listens on 127.0.0.1 only, on a
free port, with trust authentication for loopback (a throwaway cluster with no secrets), and
its data directory is removed at exit.

`start_postgres()` gives a `PostgresServer` with ``.url`` (``postgresql://...``) and
``.fresh_database() -> url`` for a new, empty database per test or benchmark run;
`PostgresServer(url=...)` wraps an existing server instead.

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PostgresServer", "find_bin", "start_postgres"]

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
    options: str = ""  # pg_ctl -o: the port and the rest, to start it again the same way
    _databases: list[str] = field(default_factory=list)

    def fresh_database(self) -> str:
        """Create an empty database and return its URL: each test gets its own schema."""
        from tests.sql import create_database  # tracerules is imported only when used

        name = f"t_{uuid.uuid4().hex[:12]}"
        create_database(self.url, name)
        self._databases.append(name)
        return self.url.rsplit("/", 1)[0] + "/" + name

    def halt(self) -> None:
        """Stop the server as a crash would (sessions cut at once), keeping its data."""
        self._pg_ctl("-m", "immediate", "stop", check=False)

    def resume(self) -> None:
        """Start the halted server again, on the same port, with the same data."""
        assert self.data_dir is not None, "only a server we started can be started again"
        self._pg_ctl("-o", self.options, "-l", str(self.data_dir.parent / "log"), "-w", "start")
        _wait_ready(self.url)

    def stop(self) -> None:
        if self.data_dir is None:
            return
        try:
            self.halt()
        finally:
            shutil.rmtree(self.data_dir.parent, ignore_errors=True)
            self.data_dir = None

    def _pg_ctl(self, *argv: str, check: bool = True) -> None:
        if self.data_dir is not None:
            _run([str(find_bin("pg_ctl")), "-D", str(self.data_dir), *argv], check=check)


def start_postgres(password: str | None = None) -> PostgresServer:
    """Create a throwaway cluster on a free loopback port and start it. With `password`,
    TCP logins need it (scram-sha-256; the superuser `postgres` has it), as a team's
    server would; without, loopback is trusted."""
    root = Path(tempfile.mkdtemp(prefix="tracerules-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, SYSTEM_USER)
    os.chmod(root, 0o700)
    auth = ["-A", "trust"]
    if password is not None:
        secret = root / "pw"
        secret.write_text(password + "\n")
        if os.geteuid() == 0:
            shutil.chown(secret, SYSTEM_USER)
        auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={secret}"]
    _run([str(find_bin("initdb")), "-D", str(data), *auth, "-U", "postgres", "-E", "UTF8"])
    port = _free_port()
    # fsync off: a throwaway cluster for tests, where speed matters and durability does not.
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} "
        f"-c unix_socket_directories={root} -c fsync=off"
    )
    user = "postgres" if password is None else f"postgres:{password}"
    server = PostgresServer(
        url=f"postgresql://{user}@127.0.0.1:{port}/postgres", data_dir=data, options=options
    )
    atexit.register(server.stop)
    server.resume()
    return server


def _run(argv: Sequence[str], *, check: bool = True) -> None:
    done = subprocess.run(_as_server_user(argv), capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
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
