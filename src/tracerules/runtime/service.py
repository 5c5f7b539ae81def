"""The service loop: notices from Kafka through the engine, actions on workers, no notice lost.

For each message: store the notice, evaluate it and plan its actions (one engine call, durable
when it returns), log one line for the notice and one per decision, wake the action workers,
then mark the message done so its offset is committed. A crash anywhere means redelivery, and
the store's deduplication makes that harmless. Heartbeats are recorded for stream health, not
evaluated. Rules reload in the background and are swapped in between two notices; SIGTERM and
SIGINT finish the current notice, commit and exit 0; SIGHUP asks for a reload.
"""

from __future__ import annotations

import fcntl
import logging
import signal
import socket
import sqlite3
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Protocol

from tracerules.errors import RuleError
from tracerules.rules.compile import RuleSet
from tracerules.runtime.actions import secrets_of
from tracerules.runtime.engine import Engine, Processed
from tracerules.runtime.health import HEARTBEAT_TOPIC, Recorder, remembered_group
from tracerules.runtime.kafka import KafkaStats, NoticeSource, SourceHooks
from tracerules.runtime.kafka_settings import StartPosition
from tracerules.runtime.notices import Notice
from tracerules.runtime.store import Store
from tracerules.runtime.watch import RuleWatcher
from tracerules.runtime.workers import ActionWorkers

KAFKA_LOG = logging.getLogger("tracerules.kafka")
POLL_S = 0.2
BEAT_S = 1.0
STOP_GRACE_S = 10.0  # how long running actions may take to finish at shutdown
ECHO_IDLE_S = 1.0  # echo stops this long after every partition reached its end
ECHO_NO_PARTITIONS_S = 60.0  # ... and gives up if none of the rules' topics exists


class ServiceSource(NoticeSource, Protocol):
    def subscribe(self, topics: Iterable[str]) -> None: ...

    def caught_up(self) -> bool: ...


@dataclass
class ServiceOptions:
    rules_paths: Sequence[Path]
    store: Path
    out_dir: Path
    start: StartPosition
    group_id: str
    where: str = ""  # the Kafka address, for status
    workers: int = 2
    watch_interval: float | None = 1.0  # None: reload on SIGHUP only
    echo: bool = False  # relisten: no heartbeat or health records, stop when caught up
    secrets: list[str] = field(default_factory=list)  # Kafka secrets, for log redaction


class Service:
    """One consumer loop, its action workers and its rule watcher."""

    def __init__(
        self,
        options: ServiceOptions,
        rules: RuleSet,
        source: Callable[[SourceHooks], ServiceSource],
        log: logging.Logger | None = None,
    ) -> None:
        self.options = options
        self.log = log or logging.getLogger("tracerules.service")
        self.store = Store(options.store)
        self.engine = Engine(rules, self.store, out_dir=options.out_dir, run_actions=False)
        self.recorder = None if options.echo else Recorder(self.store)
        self.workers = ActionWorkers(
            str(options.store), lambda: self.engine.rules, options.out_dir, options.workers
        )
        self.watcher = RuleWatcher(options.rules_paths, options.watch_interval)
        self._source_factory = source
        self._secrets = self._find_secrets()  # per rule set: the logs ask for every line
        self._stop = threading.Event()
        self._exit_code = 0
        self._stop_reason = "stopped"
        self._last_beat = 0.0
        self._began = time.monotonic()
        self._assigned_at: float | None = None
        self._idle_since: float | None = None

    # -- control (signal handlers may call these) ---------------------------------------------

    def request_stop(self, reason: str = "stop requested", code: int = 0) -> None:
        if not self._stop.is_set():
            self._exit_code = code
            self._stop_reason = reason
            self._stop.set()

    def request_reload(self) -> None:
        self.watcher.request()

    def secrets(self) -> list[str]:
        """Every value the logs must not show: Kafka secrets and the actions' ${env:...}."""
        return self._secrets

    def _find_secrets(self) -> list[str]:
        found = list(self.options.secrets)
        for trigger in self.engine.rules.triggers:
            for action in trigger.actions:
                found += secrets_of(action.config)
        return sorted(set(found))

    def topics(self) -> set[str]:
        topics = set(self.engine.rules.subscribed_topics)
        return topics if self.options.echo else topics | {HEARTBEAT_TOPIC}

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> int:
        """Consume until stopped; the exit status (0 after a clean stop)."""
        source = self._source_factory(self)  # raises on settings librdkafka refuses
        self._started()
        self.workers.start()
        self.watcher.start()
        try:
            source.subscribe(self.topics())
            while not self._stop.is_set():
                self._housekeeping(source)
                notice = source.next(POLL_S)
                if notice is not None:
                    self._idle_since = None
                    self._handle(source, notice)
                elif self.options.echo:
                    self._echo_progress(source)
        finally:
            self._shutdown(source)
        return self._exit_code

    def _handle(self, source: ServiceSource, notice: Notice) -> None:
        if notice.topic == HEARTBEAT_TOPIC and self.recorder is not None:
            self.recorder.heartbeat(notice)
            if HEARTBEAT_TOPIC not in self.engine.rules.by_topic:  # not a notice to evaluate
                source.done(notice)
                return
        started = time.perf_counter()
        processed = self._process(notice)
        if processed is None:  # stopping while the store fails: not committed, redelivered
            return
        self._log_notice(notice, processed, started)
        if any(a.status == "pending" for d in processed.decisions for a in d.actions):
            self.workers.wake()
        source.done(notice)

    def _process(self, notice: Notice) -> Processed | None:
        """The engine's work, retried while the store fails; a crash becomes a dead letter."""
        delay = 0.5
        while True:
            try:
                return self.engine.process(notice)
            except sqlite3.Error as err:
                self.log.error("store error; retrying", extra={"fields": _where(notice, err)})
                if self._stop.wait(delay):
                    self._exit_code = 1
                    return None
                delay = min(delay * 2, 30.0)
            except Exception as err:  # a payload the engine could not cope with: keep it
                reason = "evaluation crashed: " + _error_text(err)
                self.log.error("notice crashed the engine", extra={"fields": _where(notice, err)})
                stored = self.store.add_notice(notice)
                self.store.dead_letter(stored.id, notice.topic, reason)
                return Processed(stored.id, "dead", reason=reason)

    def _housekeeping(self, source: ServiceSource) -> None:
        now = time.monotonic()
        if self.recorder is not None and now - self._last_beat >= BEAT_S:
            self._last_beat = now
            self.recorder.beat()
        result = self.watcher.take()
        if isinstance(result, RuleSet):
            self._swap(source, result)
        elif isinstance(result, RuleError):
            problems = [f"{d.span}: {d.code} {d.message}" for d in result.diagnostics]
            self.log.error(
                "rules reload refused; the old rules stay in force",
                extra={"fields": {"problems": problems}},
            )
            if self.recorder is not None:
                self.recorder.put("rules", last_error=problems, last_error_at=time.time())

    def _swap(self, source: ServiceSource, rules: RuleSet) -> None:
        before = self.topics()
        self.engine.reload(rules)
        self._secrets = self._find_secrets()
        after = self.topics()
        fields = {
            "triggers": len(rules.triggers),
            "added_topics": sorted(after - before),
            "removed_topics": sorted(before - after),
        }
        self.log.info("rules reloaded", extra={"fields": fields})
        self._record_rules(last_error=None, last_error_at=None)
        if after != before:
            source.subscribe(after)

    def _echo_progress(self, source: ServiceSource) -> None:
        """Stop a relisten once every partition reached its end and the actions ran."""
        now = time.monotonic()
        if self._assigned_at is None and now - self._began > ECHO_NO_PARTITIONS_S:
            self.request_stop("nothing to relisten: no partition was assigned", code=1)
        if not source.caught_up():
            self._idle_since = None
            return
        self._idle_since = self._idle_since or now
        pending = self.store.scalar("SELECT count(*) FROM actions WHERE status='pending'")
        if now - self._idle_since >= ECHO_IDLE_S and not pending and not self.workers.busy():
            self.request_stop("caught up")

    # -- records and logs ---------------------------------------------------------------------

    def _started(self) -> None:
        self.log.info(
            "service started",
            extra={
                "fields": {
                    "group": self.options.group_id,
                    "kafka": self.options.where,
                    "start": str(self.options.start),
                    "topics": sorted(self.topics()),
                    "store": str(self.options.store),
                    "echo": self.options.echo,
                }
            },
        )
        if self.recorder is None:
            return
        self.recorder.started(
            group=self.options.group_id,
            kafka=self.options.where,
            start=str(self.options.start),
            store=str(self.options.store),
        )
        self.recorder.put("group", id=self.options.group_id)
        self.recorder.put("products", dir=str(Path(self.options.out_dir).resolve()))
        self._record_rules(last_error=None, last_error_at=None)

    def _record_rules(self, **extra: object) -> None:
        if self.recorder is None:
            return
        rules = self.engine.rules
        self.recorder.put(
            "rules",
            loaded_at=time.time(),
            paths=[str(p) for p in self.options.rules_paths],
            files=list(rules.files),
            triggers=[t.id for t in rules.triggers],
            topics=sorted(rules.subscribed_topics),
            git_commit=rules.git_commit,
            **extra,
        )

    def _log_notice(self, notice: Notice, processed: Processed, started: float) -> None:
        self.log.info(
            "notice",
            extra={
                "fields": {
                    "topic": notice.topic,
                    "partition": notice.partition,
                    "offset": notice.offset,
                    "notice_id": processed.notice_id,
                    "status": processed.status,
                    "bytes": len(notice.payload),
                    "decisions": len(processed.decisions),
                    "reason": processed.reason,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                }
            },
        )
        for d in processed.decisions:
            self.log.info(
                "decision",
                extra={
                    "fields": {
                        "decision_id": d.id,
                        "notice_id": d.notice_id,
                        "trigger": d.trigger,
                        "event_id": d.event_id,
                        "mode": d.mode,
                        "votes": d.votes.value,
                        "conclusion": d.conclusion.value,
                        "error": d.error,
                        "actions": [
                            {"key": a.idempotency_key, "type": a.type, "status": a.status}
                            for a in d.actions
                        ],
                    }
                },
            )

    # -- hooks from the Kafka source (called inside poll, on this thread) ---------------------

    def kafka_error(self, message: str, fatal: bool) -> None:
        KAFKA_LOG.warning("kafka error", extra={"fields": {"error": message, "fatal": fatal}})
        if self.recorder is not None:
            self.recorder.kafka_error(message)
        if fatal:  # the client cannot go on; a restart (systemd) starts a fresh one
            self.request_stop(f"fatal Kafka error: {message}", code=1)

    def topic_error(self, topic: str, message: str) -> None:
        KAFKA_LOG.warning("topic error", extra={"fields": {"topic": topic, "error": message}})
        if self.recorder is not None:
            self.recorder.topic_error(topic, message)

    def kafka_stats(self, stats: KafkaStats) -> None:
        if self.recorder is None:
            return
        self.recorder.kafka(stats.connected, stats.brokers)
        self.recorder.offsets(self.options.group_id, stats.partitions)

    def assigned(self, partitions: list[tuple[str, int, int]], how: str) -> None:
        self._assigned_at = time.monotonic()
        shown = [f"{t}:{p}@{o}" for t, p, o in partitions]
        self.log.info("partitions assigned", extra={"fields": {"how": how, "partitions": shown}})
        if self.recorder is not None:
            self.recorder.put("service", assignment=shown, assigned_at=time.time())

    # -- shutdown -----------------------------------------------------------------------------

    def _shutdown(self, source: ServiceSource) -> None:
        self.watcher.stop()
        try:
            source.close()  # commits what was stored, leaves the group
        finally:
            finished = self.workers.stop(STOP_GRACE_S)
            if not finished:
                self.log.warning("actions still running at exit; they will be taken up again")
            if self.recorder is not None:
                self.recorder.stopped(self._stop_reason)
            self.log.info(
                "service stopped",
                extra={"fields": {"reason": self._stop_reason, "exit": self._exit_code}},
            )
            self.store.close()


def lock_store(store: Path) -> IO[bytes] | None:
    """Hold `<store>.lock` for this process's life: one `run` or `echo` per store, since each
    engine caches the state of the events it touches. None if another process holds it."""
    store.parent.mkdir(parents=True, exist_ok=True)
    handle = (store.parent / f"{store.name}.lock").open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def resolve_group(store: Path, chosen: str | None, echo: bool) -> str:
    """The consumer group: the one chosen, else the one this store last ran with, else a new
    one. A relisten always gets a throwaway group."""
    if echo:
        return f"tracerules-echo-{uuid.uuid4().hex[:12]}"
    if chosen:
        return chosen
    db = Store(store)
    try:
        return remembered_group(db) or f"tracerules-{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    finally:
        db.close()


def install_signal_handlers(service: Service) -> None:
    """SIGTERM/SIGINT: finish the current notice, commit, exit 0. SIGHUP: reload the rules."""

    def stop(signum: int, frame: FrameType | None) -> None:
        service.request_stop(f"signal {signal.Signals(signum).name}")

    def reload(signum: int, frame: FrameType | None) -> None:
        service.request_reload()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)


def _error_text(err: BaseException) -> str:
    return traceback.format_exception_only(type(err), err)[-1].strip()[:500]


def _where(notice: Notice, err: BaseException) -> dict[str, object]:
    return {
        "topic": notice.topic,
        "partition": notice.partition,
        "offset": notice.offset,
        "error": _error_text(err),
    }
