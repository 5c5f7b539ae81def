"""Helpers for the service tests: publish real notices, run `tracerules run` as a process,
read its JSON logs and its store, and check that nothing was lost and nothing acted twice.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined, unused-ignore]

from tests.sql import rows_at
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.service.health import HEARTBEAT_TOPIC, member_key, snapshot
from tracerules.runtime.sources.files import guess_topic
from tracerules.runtime.store.store import Store

ROOT = Path(__file__).resolve().parents[1]
NOTICES = ROOT / "tests" / "data" / "notices"
SERVICE_RULES = ROOT / "tests" / "data" / "service_rules"
# atomic_write's temporary name for a file (products/actions/io.py)
TEMPORARY = re.compile(r"\.(.+)\.[^.]+\.tmp")
# The service reads only these: GCN publishes every topic, and the others are never fetched.
SUBSCRIBED = load_ruleset([SERVICE_RULES]).subscribed_topics

# Group joins in ~3 s on Tansu with these (see docs/dev/kafka-test-broker.md); Tansu holds a
# fetch for the whole fetch.wait.max.ms, so a short one keeps the tests quick.
FAST_SETTINGS = (
    "session.timeout.ms=6000",
    "heartbeat.interval.ms=500",
    "fetch.wait.max.ms=50",
    "reconnect.backoff.ms=100",
    "reconnect.backoff.max.ms=1000",
    "statistics.interval.ms=500",
    "topic.metadata.refresh.interval.ms=1000",
)


def iso_now(offset_s: float = 0.0) -> str:
    when = time.time() + offset_s
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + f".{int(when % 1 * 1e3):03d}Z"


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def notice_files(folder: str, pattern: str = "*") -> list[Path]:
    return sorted(p for p in (NOTICES / folder).glob(pattern) if p.suffix in (".xml", ".json"))


def topic_of(path: Path) -> str:
    topic = guess_topic(path.read_bytes())
    assert topic is not None, path
    return topic


def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int = 2) -> None:
    """Create the topics that do not exist yet (a shared broker may have them already)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wanted = sorted(set(topics))
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in wanted],
        operation_timeout=10,
    )
    for future in futures.values():
        try:
            future.result(timeout=10)
        except KafkaException as err:
            if err.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise

    def ready() -> bool:
        found = admin.list_topics(timeout=5).topics
        return all(t in found and not found[t].error for t in wanted)

    wait_until(ready, 10, f"topics {wanted}")


SWIFT = notice_files("swift_chain")
LVK_VOEVENT = notice_files("lvk_voevent", "0*")  # S191110af: preliminary, initial, retraction
LVK_JSON = notice_files("lvk_json", "0*")  # MS181101ab: early warning ... retraction
EXTRA = notice_files("lvk_voevent", "S190425z*")
_CREATED: set[str] = set()


def service_topics(bootstrap: str) -> str:
    """Every topic the service tests use, created once per broker (2 partitions each)."""
    if bootstrap not in _CREATED:
        names = {topic_of(p) for p in [*SWIFT, *LVK_VOEVENT, *LVK_JSON, *EXTRA]}
        ensure_topics(bootstrap, names | SUBSCRIBED | {HEARTBEAT_TOPIC})
        _CREATED.add(bootstrap)
    return bootstrap


def variants(count: int) -> list[tuple[str, bytes, str]]:
    """`count` distinct real notices on subscribed topics: the Swift and LVK ones, each copy
    made unique by a trailing comment (XML) or whitespace (JSON), which no selector sees."""
    base = [p for p in [*SWIFT, *LVK_VOEVENT, *LVK_JSON] if topic_of(p) in SUBSCRIBED]
    out = []
    for i in range(count):
        path = base[i % len(base)]
        tail = f"\n<!-- copy {i} -->\n" if path.suffix == ".xml" else " " * (i + 1)
        out.append((topic_of(path), path.read_bytes() + tail.encode(), f"{path.name}#{i}"))
    return out


@dataclass(frozen=True)
class Produced:
    topic: str
    partition: int
    offset: int
    payload: bytes
    name: str


class Publisher:
    """Produces like GCN does: one record per batch, in order, CreateTime = now."""

    def __init__(self, bootstrap: str, **config: Any) -> None:
        settings = {"bootstrap.servers": bootstrap, "linger.ms": 0, "batch.num.messages": 1}
        settings.update({k.replace("_", "."): v for k, v in config.items()})
        self.producer = Producer(settings)

    def send(
        self,
        items: Sequence[tuple[str, bytes, str]],
        pause: float = 0.0,
        partition: int | None = None,
    ) -> list[Produced]:
        """Publish (topic, payload, name) items; their delivered coordinates, in order."""
        done: list[Produced | None] = [None] * len(items)
        errors: list[str] = []

        def callback(index: int) -> Callable[[Any, Any], None]:
            def on_delivery(error: Any, message: Any) -> None:
                if error is not None:
                    errors.append(str(error))
                    return
                topic, payload, name = items[index]
                done[index] = Produced(topic, message.partition(), message.offset(), payload, name)

            return on_delivery

        where = {} if partition is None else {"partition": partition}
        for index, (topic, payload, _) in enumerate(items):
            self.producer.produce(topic, payload, on_delivery=callback(index), **where)
            self.producer.poll(0)
            if pause:
                self.producer.flush(10)
                time.sleep(pause)
        assert self.producer.flush(20) == 0, "undelivered messages"
        assert not errors and all(done), f"delivery failed: {errors[:3]}"
        return [d for d in done if d is not None]

    def send_files(
        self, paths: Iterable[Path], pause: float = 0.0, partition: int | None = None
    ) -> list[Produced]:
        items = [(topic_of(p), p.read_bytes(), p.name) for p in paths]
        return self.send(items, pause, partition)


class ServiceProcess:
    """`tracerules run` (or `echo`) as a child process, with its store, output and logs."""

    def __init__(
        self,
        work: Path,
        bootstrap: str,
        rules: Path = SERVICE_RULES,
        store: str | None = None,
        out: Path | None = None,
    ) -> None:
        """`store`: a PostgreSQL URL (several services may share it); else a SQLite file in
        `work`. `out`: where products go (two services of a team may share a folder)."""
        self.work, self.bootstrap, self.rules = work, bootstrap, rules
        work.mkdir(parents=True, exist_ok=True)
        self.store: Path | str = store or work / "store.sqlite"
        self.out = out or work / "out"
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.started_at = 0.0
        self.subscribed = set(SUBSCRIBED)  # what the service reads (a test may add topics)

    def command(self, verb: str, *args: str) -> list[str]:
        settings = [x for s in FAST_SETTINGS for x in ("-X", s)]
        return [
            sys.executable,
            "-m",
            "tracerules.cli",
            verb,
            *args,
            str(self.rules),
            "--store",
            str(self.store),
            "--out",
            str(self.out),
            "--bootstrap-servers",
            self.bootstrap,
            *settings,
        ]

    def start(self, *args: str, verb: str = "run") -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.runs += 1
        log = (self.work / f"service-{self.runs}.log").open("wb")
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            self.command(verb, *args), stdout=log, stderr=subprocess.STDOUT, cwd=self.work
        )
        log.close()

    def echo(self, duration: str, timeout: float = 60) -> int:
        self.start(duration, verb="echo")
        assert self.proc is not None
        return self.proc.wait(timeout)

    def _exists(self) -> bool:
        return isinstance(self.store, str) or self.store.exists()

    def state(self, key: str) -> dict[str, Any]:
        if not self._exists():
            return {}
        try:
            rows = self.sql_rows("SELECT value FROM service_state WHERE key=?", (key,))
        except (sqlite3.OperationalError, psycopg.errors.UndefinedTable):
            return {}  # not created yet
        return json.loads(rows[0][0]) if rows else {}

    def member(self) -> dict[str, Any]:
        """This run's own record on a team's PostgreSQL store (the shared `service` key is
        written by every service of the team)."""
        return self.state(member_key(socket.gethostname(), self.pid or 0))

    def wait_assigned(self, timeout: float = 40) -> list[str]:
        """Wait until this run of the service has its partitions."""

        def assigned() -> list[str] | None:
            self.check_alive()
            if isinstance(self.store, str):
                return self.partitions() or None
            service = self.state("service")
            if service.get("pid") != self.pid or not service.get("assigned_at"):
                return None
            return list(service.get("assignment") or []) or None

        return list(wait_until(assigned, timeout, "the partition assignment"))

    def partitions(self) -> list[str]:
        """The partitions this run of a team's service consumes now, as it recorded them."""
        return list(self.member().get("partitions") or [])

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"the service exited with {self.proc.returncode}:\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def status(self) -> dict[str, Any]:
        db = Store(self.store)
        try:
            return snapshot(db, decisions=50)
        finally:
            db.close()

    def status_cli(self, *args: str) -> tuple[int, str]:
        done = subprocess.run(
            [sys.executable, "-m", "tracerules.cli", "status", "--store", str(self.store), *args],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.returncode, done.stdout + done.stderr

    def logs(self, run: int | None = None) -> list[dict[str, Any]]:
        """The JSON log lines of one run (or all runs); other lines come back as {'raw': ...}."""
        runs = [run] if run is not None else range(1, self.runs + 1)
        out: list[dict[str, Any]] = []
        for number in runs:
            path = self.work / f"service-{number}.log"
            for line in path.read_text(errors="replace").splitlines():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    out.append({"raw": line})
        return out

    def tail(self, lines: int = 40) -> str:
        path = self.work / f"service-{self.runs}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def sql_rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of the service's store, read as a team member would (tests/sql.py)."""
        return rows_at(self.store, sql, params)

    def processed(self, produced: Iterable[Produced]) -> bool:
        """Every produced message is in the store and no longer waiting for evaluation.

        A message is matched by its payload too, not by its offset alone: after a memory
        broker restarts, its new log reuses offsets the store already holds, and the old row
        there must not count as the new message (the new one is stored without its offset,
        named "... (offset reused)")."""
        wanted = {
            (p.topic, p.partition, p.offset, hashlib.sha256(p.payload).hexdigest())
            for p in produced
            if p.topic in self.subscribed
        }
        if not self._exists():
            return False
        rows = self.sql_rows('SELECT topic, partition, "offset", sha256, status, name FROM notices')
        evaluated = [row for row in rows if row[4] != "new"]
        done = {(t, p, o, sha) for t, p, o, sha, _, _ in evaluated}
        reused = {(t, sha, name) for t, _, o, sha, _, name in evaluated if o < 0}
        return all(
            (t, p, o, sha) in done or (t, sha, f"{t}[{p}]@{o} (offset reused)") in reused
            for t, p, o, sha in wanted
        )

    def wait_processed(self, produced: Iterable[Produced], timeout: float = 30) -> None:
        items = list(produced)

        def ready() -> bool:
            self.check_alive()
            return self.processed(items) and self.actions_settled()

        wait_until(ready, timeout, f"{len(items)} notices and their actions")

    def actions_settled(self) -> bool:
        return not self.sql_rows("SELECT 1 FROM actions WHERE status IN ('pending', 'running')")


def check_exactly_once(service: ServiceProcess, produced: Sequence[Produced]) -> set[str]:
    """Nothing lost, nothing evaluated or acted on twice; the files written, relative to out."""
    rows = service.sql_rows('SELECT topic, partition, "offset", sha256, status, name FROM notices')
    at = {(t, p, o): sha for t, p, o, sha, _, _ in rows if o >= 0}
    copies = Counter((t, sha) for t, _, _, sha, _, _ in rows)
    for p in produced:
        if p.topic not in service.subscribed:
            continue
        digest = hashlib.sha256(p.payload).hexdigest()
        assert copies[(p.topic, digest)] == 1, f"lost or stored twice: {p.name} at {p}"
        if at.get((p.topic, p.partition, p.offset)) != digest:  # the broker reused the offset
            reused = f"{p.topic}[{p.partition}]@{p.offset} (offset reused)"
            assert (p.topic, -1, digest, reused) in {(t, o, s, n) for t, _, o, s, _, n in rows}
    assert not [r for r in rows if r[4] == "new"], "notices left unevaluated"
    twice = service.sql_rows(
        "SELECT notice_id, trigger, count(*) FROM decisions WHERE source='notice' "
        "GROUP BY notice_id, trigger HAVING count(*) > 1"
    )
    assert not twice, f"notices evaluated twice: {twice}"
    actions = service.sql_rows("SELECT idempotency_key, status, files, attempts, log FROM actions")
    assert all(status == "done" for _, status, *_ in actions), actions
    passed = service.sql_rows(
        "SELECT count(*) FROM decisions WHERE conclusion='PASS' AND mode='live' AND source='notice'"
    )[0][0]
    assert len(actions) == passed, "one notice action per passing decision"
    for key, _, _, attempts, log in actions:
        # A second claim happens only when a crash cut the first run off (recorded in the log).
        assert attempts == 1 or "requeued" in log, (key, attempts, log)
    done_lines = Counter(
        entry["key"]
        for entry in service.logs()
        if entry.get("event") == "action" and entry.get("status") == "done"
    )
    assert all(n == 1 for n in done_lines.values()), f"actions done twice: {done_lines}"
    files = {
        str(Path(f).relative_to(service.out)) for _, _, fs, _, _ in actions for f in json.loads(fs)
    }
    assert len(files) == len(actions), "each action wrote its own file"
    on_disk = {str(p.relative_to(service.out)) for p in service.out.rglob("*") if p.is_file()}
    # A kill -9 inside a write leaves its temporary file (never seen under the real name).
    partial = {f for f in on_disk if TEMPORARY.fullmatch(Path(f).name)}
    assert on_disk - partial == files, f"unexpected files: {(on_disk - partial) ^ files}"
    for name in partial:
        real = Path(name).parent / TEMPORARY.fullmatch(Path(name).name)[1]  # type: ignore[index]
        assert str(real) in files, f"a partial write of an unknown file: {name}"
    return files
