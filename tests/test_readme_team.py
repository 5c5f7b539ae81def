"""The README's "Team deployment" commands, run as written against a real PostgreSQL (with a
password, from $PGPASSWORD) and the real Kafka broker: move a SQLite store, start two
services, read the store with status, events and serve, and fail over. Only the machine's
names change: the database host, the folders, and the broker instead of GCN's."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest

from tests import kafka_broker as kb
from tests.conftest import DATA, NOTICES
from tests.postgres_cluster import PostgresServer, start_postgres
from tests.service_harness import (
    FAST_SETTINGS,
    SERVICE_RULES,
    Publisher,
    service_topics,
    variants,
    wait_until,
)
from tests.sql import create_role, rows_at
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.engine.replay import replay
from tracerules.runtime.sources.files import iter_notices

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[1]
README_URL = "postgresql://tracerules@db.example.org/tracerules"
PASSWORD = "team-store-password"


def team_blocks() -> list[list[str]]:
    """The shell commands of each ```sh block of the section, continuations joined and
    comments dropped."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Team deployment\n", 1)[1].split("\n## ", 1)[0]
    blocks = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        lines = block.replace("\\\n", " ").splitlines()
        commands = [" ".join(re.sub(r"\s+#\s.*$", "", line).split()) for line in lines]
        blocks.append([c for c in commands if c])
    return blocks


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    server = start_postgres(password=PASSWORD)
    create_role(server.url, "tracerules", PASSWORD)
    yield server
    server.stop()


@dataclass
class Team:
    """The README's commands on this machine: its database, folders and broker."""

    url: str
    home: Path
    bootstrap: str
    env: dict[str, str] = field(default_factory=dict)
    services: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def local(self, command: str) -> str:
        command = command.replace(README_URL, self.url)
        here = f"{self.home}/\\1/tracerules/"
        return re.sub(r"(?<![\w.])/(var/lib|srv)/tracerules/", here, command)

    def shell(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", self.local(command)],
            capture_output=True,
            text=True,
            cwd=self.home,
            env={**self.env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
            timeout=120,
            check=False,
        )

    def export(self, command: str) -> None:
        name, value = command.removeprefix("export ").split("=", 1)
        value = value.strip("'")
        self.env[name] = PASSWORD if name == "PGPASSWORD" else self.local(value)

    def start(self, command: str, name: str, kafka: bool = True) -> subprocess.Popen[bytes]:
        """In the background; a service reaches the test broker instead of GCN's."""
        if kafka:
            settings = [x for s in FAST_SETTINGS for x in ("-X", s)]
            command += " " + " ".join(["--bootstrap-servers", self.bootstrap, *settings])
        log = (self.home / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            ["bash", "-c", "exec " + self.local(command)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.home,
            env={**self.env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
            start_new_session=True,
        )
        log.close()
        self.services.append(proc)
        return proc

    def wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        """`wait_until`, and on a timeout the end of each service's log beside the message."""
        try:
            return wait_until(check, timeout, what)
        except AssertionError as err:
            tails = [
                f"--- {log.name} (last lines)\n"
                + "\n".join(log.read_text(errors="replace").splitlines()[-25:])
                for log in sorted(self.home.glob("machine-*.log"))
            ]
            raise AssertionError("\n".join([str(err), *tails])) from None

    def status(self) -> dict[str, object]:
        done = self.shell("tracerules status --format json")
        assert done.returncode in (0, 1), done.stderr  # 1: degraded (no GCN heartbeat here)
        return dict(json.loads(done.stdout))

    def stored(self) -> int:
        """Notices stored and evaluated, as a team member's SQL client counts them."""
        url = self.url.replace("tracerules@", f"tracerules:{PASSWORD}@", 1)
        return int(rows_at(url, "SELECT count(*) FROM notices WHERE status <> 'new'")[0][0])

    def close(self) -> None:
        for proc in self.services:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.fixture
def team(server: PostgresServer, kafka_broker: kb.KafkaBroker, tmp_path: Path) -> Iterator[Team]:
    port = server.url.rsplit(":", 1)[1].split("/")[0]
    team = Team(
        f"postgresql://tracerules@127.0.0.1:{port}/tracerules",
        tmp_path,
        service_topics(kafka_broker.bootstrap),
        {k: v for k, v in os.environ.items() if not k.startswith(("PG", "TRACERULES_"))},
    )
    shutil.copytree(SERVICE_RULES, tmp_path / "rules")
    store = tmp_path / "var" / "lib" / "tracerules" / "store.sqlite"
    store.parent.mkdir(parents=True)
    replay(load_ruleset([DATA / "rules"]), iter_notices([NOTICES]), store_path=store).close()
    yield team
    team.close()


def test_the_readme_team_deployment_commands_work_as_written(team: Team) -> None:
    start, read, move = team_blocks()
    assert "pip install 'tracerules[postgresql]'" in start
    assert "postgresql = [" in (ROOT / "pyproject.toml").read_text()  # that extra exists

    # The store's URL and its password, in the environment (the README's first lines).
    for command in start[1:]:
        if command.startswith("export "):
            team.export(command)
    assert team.env["TRACERULES_STORE"] == team.url and team.env["PGPASSWORD"] == PASSWORD

    # Moving an existing SQLite store: a backup, then its whole history into PostgreSQL.
    for command in move:
        done = team.shell(command)
        assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
    assert (team.home / "history.ndjson").stat().st_size > 0
    moved = team.stored()
    assert moved > 0

    # Two services, one group, on the store the environment names.
    services = []
    for command in start[1:]:
        if not command.startswith("export "):
            assert command.startswith("tracerules run rules --group-id"), command
            services.append(team.start(command, f"machine-{len(services)}"))
    assert len(services) == 2

    def both_consuming() -> bool:
        # Both, not one: a new group starts at the end of each partition, so a notice sent
        # before the second service is assigned its partitions lies before its start.
        shown = team.status().get("services") or []
        listed = {s["pid"] for s in shown} >= {p.pid for p in services}
        return listed and all(s["partitions"] for s in shown)

    team.wait(both_consuming, 60, "both services in `status`, each consuming")
    publisher = Publisher(team.bootstrap)
    fresh = variants(4)  # real notices made unique: not already in the moved history
    publisher.send(fresh[:2])
    team.wait(lambda: team.stored() >= moved + 2, 60, "the first notices stored")

    # Reading the store: status, events and the dashboard, unchanged.
    for command in read:
        if command.startswith("tracerules serve"):
            _check_dashboard(team, command)
            continue
        done = team.shell(command)
        assert done.returncode in (0, 1), f"{command}: {done.stderr}"
        assert PASSWORD not in done.stdout + done.stderr
    listed = team.shell("tracerules events list --format json")
    assert listed.returncode == 0 and json.loads(listed.stdout), listed.stderr

    # Failover: kill -9 the one consuming; the other carries on from the committed offset.
    active = _consuming(team, services)
    os.killpg(active.pid, signal.SIGKILL)
    active.wait(10)
    publisher.send(fresh[2:])
    team.wait(lambda: team.stored() >= moved + 4, 60, "the notices after the failover")
    survivor = next(p for p in services if p is not active)
    assert survivor.poll() is None


def _consuming(team: Team, services: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    shown = team.status().get("services") or []
    busy = {s["pid"] for s in shown if s.get("partitions")}
    assert busy, shown  # each one-partition topic is consumed by one of them
    return next(p for p in services if p.pid in busy)


def _check_dashboard(team: Team, command: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = team.start(command.replace("--port 8765", f"--port {port}"), "dashboard", kafka=False)
    try:
        page = wait_until(lambda: _get(f"http://127.0.0.1:{port}/"), 30, "the dashboard")
        assert "swift" in page.lower(), page[:500]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def _get(url: str) -> str | None:
    try:
        with urlopen(url, timeout=5) as answer:
            return str(answer.read().decode())
    except OSError:
        return None
