"""The service loop: notices from Kafka through the engine, actions on workers, no notice lost.

For each message: store the notice, evaluate it and plan its actions (one engine call, durable
when it returns), log one line for the notice and one per decision, wake the action workers,
then mark the message done so its offset is committed. A crash anywhere means redelivery, and
the store's deduplication makes that harmless. Heartbeats are recorded for stream health, not
evaluated. Rules reload in the background and are swapped in between two notices; SIGTERM and
SIGINT finish the current notice, commit and exit 0; SIGHUP asks for a reload.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Protocol

from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_when_event_set,
)

from tracerules.errors import RuleError, exception_tail
from tracerules.rules.compile import RuleSet
from tracerules.rules.functions import warm_up
from tracerules.runtime.dispatch.retry import backoff
from tracerules.runtime.dispatch.workers import ActionWorkers, disk_full
from tracerules.runtime.engine.engine import Engine, Processed
from tracerules.runtime.secrets import rule_secrets
from tracerules.runtime.service.disk import DiskWatch
from tracerules.runtime.service.health import (
    HEARTBEAT_TOPIC,
    Recorder,
    last_death,
    remembered_group,
)
from tracerules.runtime.service.kafka import KafkaStats, NoticeSource, SourceHooks
from tracerules.runtime.service.kafka_settings import StartPosition
from tracerules.runtime.service.watch import RuleWatcher
from tracerules.runtime.sources.notices import Notice
from tracerules.runtime.store.checkpoint import BackgroundCheckpoints
from tracerules.runtime.store.dialect import (
    StoreLocation,
    display_location,
    store_errors,
    store_file,
)
from tracerules.runtime.store.store import Store

KAFKA_LOG = logging.getLogger("tracerules.kafka")
POLL_S = 0.2
FIRST_RETRY_S = 0.5  # the first wait after a store error; tenacity's backoff for the next ones
BEAT_S = 1.0
STOP_GRACE_S = 10.0  # how long running actions may take to finish at shutdown
ECHO_IDLE_S = 1.0  # echo stops this long after every partition reached its end
ECHO_NO_PARTITIONS_S = 60.0  # ... and gives up if none of the rules' topics exists
DEAD_MARGIN_S = 1.0  # after a dead teammate's session timeout, before joining the group
ERROR_MOST = 500  # characters of an error kept with a dead-lettered notice


class ServiceSource(NoticeSource, Protocol):
    def subscribe(self, topics: Iterable[str]) -> None: ...

    def caught_up(self) -> bool: ...


@dataclass
class ServiceOptions:
    rules_paths: Sequence[Path]
    store: StoreLocation  # a SQLite file or a postgresql:// URL
    out_dir: Path
    start: StartPosition
    group_id: str
    where: str = ""  # the Kafka address, for status
    workers: int = 2
    watch_interval: float | None = 1.0  # None: reload on SIGHUP only
    echo: bool = False  # relisten: no heartbeat or health records, stop when caught up
    secrets: list[str] = field(default_factory=list)  # Kafka secrets, for log redaction
    allow_empty: bool = False  # accept a rule set without a trigger (at start and on reload)
    session_timeout_s: float = 45.0  # the group's (librdkafka's default)


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
        self.checkpoints = BackgroundCheckpoints(self.store)  # syncs off the notices' commits
        self.engine = Engine(rules, self.store, out_dir=options.out_dir, run_actions=False)
        self._warm_up(rules)
        self.recorder = None if options.echo else Recorder(self.store)
        self.workers = ActionWorkers(
            str(options.store),
            lambda: self.engine.rules,
            options.out_dir,
            options.workers,
            on_error=self._action_error,
        )
        local = store_file(options.store)  # a PostgreSQL server's disk is not ours to watch
        self.disk = DiskWatch(
            (local.resolve().parent, options.out_dir) if local else (options.out_dir,)
        )
        self.watcher = RuleWatcher(
            options.rules_paths, options.watch_interval, allow_empty=options.allow_empty
        )
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
        configs = (a.config for t in self.engine.rules.triggers for a in t.actions)
        return sorted({*self.options.secrets, *rule_secrets(configs)})

    def topics(self) -> set[str]:
        topics = set(self.engine.rules.subscribed_topics)
        return topics if self.options.echo else topics | {HEARTBEAT_TOPIC}

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> int:
        """Consume until stopped; the exit status (0 after a clean stop)."""
        source = self._source_factory(self)  # raises on settings librdkafka refuses
        self._started()
        self.checkpoints.start()
        self.workers.start()
        self.watcher.start()
        try:
            self._after_the_dead()
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

    def _after_the_dead(self) -> None:
        """On a team's store, join the group only once a teammate that just died (a kill -9:
        no goodbye to Kafka) has been dropped by it, one session timeout after its last
        beat. Joining earlier starts a rebalance in which the dead member still holds its
        partitions, and the broker drops it in a second one: Tansu answers each join after
        half a session timeout, so the partitions would wait for both. The survivors take
        them over meanwhile; this service waits for nothing a dead member does not hold."""
        if self.recorder is None or self.recorder.member is None:
            return
        while not self._stop.is_set():  # another may die meanwhile
            try:
                beat = last_death(self.store, self.options.session_timeout_s, time.time())
            except store_errors():  # an optimisation: never a reason not to start
                return
            if beat is None:
                return
            wait = beat + self.options.session_timeout_s - time.time()
            if wait + DEAD_MARGIN_S <= 0:
                return
            fields = {"s": round(wait + DEAD_MARGIN_S, 1)}
            self.log.info("waiting for a dead service to leave the group", extra={"fields": fields})
            self._stop.wait(wait + DEAD_MARGIN_S)

    def _handle(self, source: ServiceSource, notice: Notice) -> None:
        """The one path of every message, heartbeats included: whatever the payload, it ends
        evaluated or as a dead letter with its reason, and its offset is committed."""
        started = time.perf_counter()
        processed = self._durably(notice, lambda: self._take(notice))
        if processed is None:  # stopping while the store fails: not committed, redelivered
            return
        if processed.status != "heartbeat":
            self._log_notice(notice, processed, started)
        if any(a.status == "pending" for d in processed.decisions for a in d.actions):
            self.workers.wake()
        source.done(notice)

    def _take(self, notice: Notice) -> Processed:
        if notice.topic == HEARTBEAT_TOPIC and self.recorder is not None:
            unusable = self.recorder.heartbeat(notice)
            if unusable is not None:
                return self._dead(notice, f"heartbeat refused: {unusable}")
            if HEARTBEAT_TOPIC not in self.engine.rules.by_topic:  # not a notice to evaluate
                return Processed(-1, "heartbeat")
        # One transaction for the notice and its decisions: a single commit per notice (each
        # costs 0.5-1 ms of WAL writes on a busy machine). Still durable before the offset is
        # committed; a crash in between rolls both back, and the redelivery (or `_dead`,
        # for a notice that crashes the engine) stores it again.
        return self.engine.process_atomically(notice)

    def _durably(self, notice: Notice, work: Callable[[], Processed]) -> Processed | None:
        """`work`, retried while the store fails (a full disk, a lock held too long) until
        stopping; any other failure becomes a dead letter."""
        try:  # the common case without tenacity's machinery (about 70 µs a notice)
            return self._or_dead_letter(notice, work)
        except store_errors() as err:
            self._store_failed(notice, err)
        self._pause(FIRST_RETRY_S)
        if self._stop.is_set():  # stopping while the store fails: not committed, redelivered
            self._exit_code = 1
            return None
        return self._retried(notice, work)

    def _store_failed(self, notice: Notice, err: BaseException) -> None:
        self._action_error(err)
        self.log.error("store error; retrying", extra={"fields": _where(notice, err)})

    def _retried(self, notice: Notice, work: Callable[[], Processed]) -> Processed | None:
        def store_failed(state: RetryCallState) -> None:
            err = state.outcome.exception() if state.outcome else None
            if isinstance(err, BaseException):
                self._store_failed(notice, err)

        policy = Retrying(
            retry=retry_if_exception_type(store_errors()),
            wait=backoff(FIRST_RETRY_S, 30.0),
            stop=stop_when_event_set(self._stop),
            sleep=self._pause,
            before_sleep=store_failed,
        )
        try:
            return policy(self._or_dead_letter, notice, work)
        except RetryError:  # stopping while the store fails: not committed, redelivered
            self._exit_code = 1
            return None
        except Exception as err:  # not even a dead letter could be written: say so, go on
            self.log.error("notice dropped", extra={"fields": _where(notice, err)})
            return Processed(-1, "dead", reason="dropped: " + exception_tail(err)[:ERROR_MOST])

    def _or_dead_letter(self, notice: Notice, work: Callable[[], Processed]) -> Processed:
        try:
            return work()
        except store_errors():
            raise
        except Exception as err:  # a payload the engine could not cope with: keep it
            self.log.error("notice crashed the engine", extra={"fields": _where(notice, err)})
            return self._dead(notice, "evaluation crashed: " + exception_tail(err)[:ERROR_MOST])

    def _dead(self, notice: Notice, reason: str) -> Processed:
        stored = self.store.add_notice(notice, "dead")
        if stored.status in ("new", "dead"):  # not one already evaluated, nor a re-send
            self.store.dead_letter(stored.id, notice.topic, reason)
        return Processed(stored.id, "dead", reason=reason)

    def _pause(self, seconds: float) -> None:
        self._stop.wait(seconds)  # a stop request ends the wait

    def _action_error(self, err: BaseException) -> None:
        """From any thread: a full disk becomes a degraded state in `status`."""
        if disk_full(err):
            self.disk.saw(err)

    def _housekeeping(self, source: ServiceSource) -> None:
        now = time.monotonic()
        if self.recorder is not None and now - self._last_beat >= BEAT_S:
            self._last_beat = now
            self.recorder.beat()
            self.disk.record(self.recorder.put)
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

    def _warm_up(self, rules: RuleSet) -> None:
        """The first-use work of the functions the rules call (numpy, erfa, the FITS reader:
        about 0.1 s each), done now on a side thread, so the first live alert does not pay it
        and neither does the loop, which goes on consuming meanwhile."""

        def warm() -> None:
            try:
                done = warm_up(rules.called_functions)
            except Exception:  # a warm-up is an optimisation: its failure is only logged
                self.log.exception("warm-up failed")
                return
            if done:
                self.log.info("warmed up", extra={"fields": {"modules": done}})

        threading.Thread(target=warm, name="warm-up", daemon=True).start()

    def _swap(self, source: ServiceSource, rules: RuleSet) -> None:
        before = self.topics()
        self.engine.reload(rules)
        self._warm_up(rules)
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
        pending = self.store.waiting_actions()  # not those failed and waiting for a retry
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
                    "store": display_location(self.options.store),
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
            store=display_location(self.options.store),
            out=str(self.options.out_dir.resolve()),
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

    def assigned(
        self, partitions: list[tuple[str, int, int]], how: str, held: list[tuple[str, int]]
    ) -> None:
        self._assigned_at = time.monotonic()
        shown = [f"{t}:{p}@{o}" for t, p, o in partitions]
        self.log.info("partitions assigned", extra={"fields": {"how": how, "partitions": shown}})
        if self.recorder is not None:
            self.recorder.assigned(shown, [f"{t}[{p}]" for t, p in held])

    def revoked(self, held: list[tuple[str, int]]) -> None:
        self.log.info("partitions revoked", extra={"fields": {"kept": len(held)}})
        if self.recorder is not None:
            self.recorder.assigned(None, [f"{t}[{p}]" for t, p in held])

    def stored_position(self, topic: str, partition: int) -> tuple[int, str] | None:
        return self.store.last_offset(topic, partition)

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
            self.checkpoints.stop()
            self.store.close()


def resolve_group(store: StoreLocation, chosen: str | None, echo: bool) -> str:
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


def _where(notice: Notice, err: BaseException) -> dict[str, object]:
    return {
        "topic": notice.topic,
        "partition": notice.partition,
        "offset": notice.offset,
        "error": exception_tail(err)[:ERROR_MOST],
    }
