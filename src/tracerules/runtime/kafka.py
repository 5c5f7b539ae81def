"""Kafka, kept thin: consumer settings, explicit start positions, and a notice source.

Settings come from a properties file, the environment and the command line, and our defaults
are applied with `setdefault`, so a key the user set is never overridden. The one exception is
`enable.auto.commit`, which is always false: an offset is committed only after its notice and
decisions are durably stored. GCN domains use `gcn_kafka.Consumer` (OIDC client credentials);
a plain `bootstrap.servers` reaches any other Kafka.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    OFFSET_STORED,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from tracerules.dsl.convert import to_time
from tracerules.runtime.notices import Notice

GCN_DOMAINS: Final = ("gcn.nasa.gov", "test.gcn.nasa.gov", "dev.gcn.nasa.gov")
COMMIT_EVERY_S: Final = 0.1  # commits are batched this much while messages keep coming
_SECRET_KEY_WORDS: Final = ("secret", "password", "token", "key.pem")


class KafkaSetupError(ValueError):
    """Settings that cannot work (no credentials for GCN, an unreadable config file)."""


class NoticeSource(Protocol):
    """Where notices come from: files, archives or Kafka all feed the same engine."""

    def next(self, timeout: float) -> Notice | None:
        """The next notice, or None when none came within `timeout` seconds."""

    def done(self, notice: Notice) -> None:
        """The notice and its decisions are durably stored: it may be acknowledged."""

    def close(self) -> None: ...


class SourceHooks(Protocol):
    """What a Kafka source reports to the service, from inside `poll`."""

    def kafka_error(self, message: str, fatal: bool) -> None: ...

    def kafka_stats(self, stats: KafkaStats) -> None: ...

    def assigned(self, partitions: list[tuple[str, int, int]], how: str) -> None: ...


@dataclass(frozen=True)
class StartPosition:
    """Where a consumer group that never committed starts: latest, earliest or a time."""

    kind: str  # latest, earliest, time
    at: float | None = None  # POSIX seconds, for kind == "time"

    @classmethod
    def parse(cls, text: str) -> StartPosition:
        word = text.strip().lower()
        if word in ("latest", "earliest"):
            return cls(word)
        when = to_time(text.strip())
        if isinstance(when, float):
            return cls("time", when)
        raise ValueError(f"expected latest, earliest or an ISO 8601 time, not {text!r}")

    def __str__(self) -> str:
        if self.at is None:
            return self.kind
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at))


@dataclass(frozen=True)
class KafkaSettings:
    """How to reach Kafka. `config` holds the librdkafka settings the user chose."""

    domain: str = "gcn.nasa.gov"
    bootstrap_servers: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    config: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def where(self) -> str:
        return self.bootstrap_servers or f"kafka.{self.domain}"

    def secrets(self) -> list[str]:
        """Values that must never be logged or stored."""
        found = [v for k, v in self.config.items() if any(w in k for w in _SECRET_KEY_WORDS)]
        return [s for s in (self.client_secret, *found) if s]


def read_properties(path: Path) -> dict[str, str]:
    """`key = value` lines, as librdkafka tools read them; `#` starts a comment line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise KafkaSetupError(f"cannot read the Kafka config file {path}: {err}") from None
    out: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise KafkaSetupError(f"{path}:{number}: expected key = value")
        out[key.strip()] = value.strip()
    return out


def load_settings(
    *,
    domain: str | None = None,
    bootstrap_servers: str | None = None,
    config_file: Path | None = None,
    overrides: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> KafkaSettings:
    """Merge, lowest precedence first: config file, `KAFKA_*` environment, command line.

    Client credentials come from `GCN_KAFKA_CLIENT_ID`/`GCN_KAFKA_CLIENT_SECRET`, or from
    `client_id`/`client_secret` in the config file; never from rule files.
    """
    from gcn_kafka import config_from_env

    env = os.environ if env is None else env
    config = read_properties(config_file) if config_file else {}
    config.update(config_from_env(env))
    config.update(overrides or {})
    client_id = env.get("GCN_KAFKA_CLIENT_ID") or config.pop("client_id", None)
    client_secret = env.get("GCN_KAFKA_CLIENT_SECRET") or config.pop("client_secret", None)
    config.pop("client_id", None)
    config.pop("client_secret", None)
    chosen_domain = domain or config.pop("domain", None) or "gcn.nasa.gov"
    config.pop("domain", None)
    if chosen_domain not in GCN_DOMAINS:
        raise KafkaSetupError(f"unknown GCN domain {chosen_domain!r}: one of {GCN_DOMAINS}")
    servers = bootstrap_servers or config.pop("bootstrap.servers", None)
    if servers is None and not client_id:
        raise KafkaSetupError(
            f"GCN Kafka ({chosen_domain}) needs client credentials: set GCN_KAFKA_CLIENT_ID "
            "and GCN_KAFKA_CLIENT_SECRET, or client_id/client_secret in --kafka-config; "
            "or give --bootstrap-servers for another Kafka"
        )
    return KafkaSettings(chosen_domain, servers, client_id, client_secret, config)


def consumer_config(settings: KafkaSettings, group_id: str, *, eof: bool = False) -> dict[str, Any]:
    """librdkafka consumer settings: the user's, then our defaults where they chose nothing."""
    config: dict[str, Any] = dict(settings.config)
    config.setdefault("group.id", group_id)
    config.setdefault("client.id", "tracerules")
    # Only used when a committed offset is out of range: never jump back over the whole topic.
    config.setdefault("auto.offset.reset", "latest")
    config.setdefault("statistics.interval.ms", 2000)  # broker states and lag for `status`
    config.setdefault("queued.max.messages.kbytes", 16384)  # prefetch buffer: bounded memory
    config["enable.auto.commit"] = False  # commit only after durable storage
    config["enable.auto.offset.store"] = False
    if eof:
        config["enable.partition.eof"] = True
    if settings.bootstrap_servers:
        config["bootstrap.servers"] = settings.bootstrap_servers
    return config


def open_consumer(settings: KafkaSettings, config: Mapping[str, Any]) -> Consumer:
    if settings.bootstrap_servers:
        return Consumer(dict(config))
    from gcn_kafka import Consumer as GcnConsumer

    return GcnConsumer(
        dict(config),
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        domain=cast(Any, settings.domain),  # one of GCN_DOMAINS, checked by load_settings
    )


# -- statistics ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    position: int | None  # the next offset the consumer will hand out
    committed: int | None
    high: int | None  # high watermark
    lag: int | None  # messages not yet committed; never negative


@dataclass(frozen=True)
class KafkaStats:
    connected: bool  # some broker connection is up
    brokers: dict[str, str]  # name -> librdkafka state (UP, DOWN, CONNECT, ...)
    partitions: list[PartitionLag]


def _offset(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and value >= 0 else None


def parse_stats(text: str) -> KafkaStats:
    """librdkafka's statistics JSON, reduced to what `tracerules status` shows."""
    data = json.loads(text)
    brokers = {name: str(b.get("state")) for name, b in data.get("brokers", {}).items()}
    partitions = []
    for topic, info in data.get("topics", {}).items():
        for key, p in info.get("partitions", {}).items():
            if int(key) < 0 or not p.get("desired"):
                continue
            position, committed = _offset(p.get("app_offset")), _offset(p.get("committed_offset"))
            high = _offset(p.get("hi_offset"))
            done = committed if committed is not None else position
            # Tansu's high watermark can trail the real end of the log: lag is never negative.
            lag = max(0, high - done) if high is not None and done is not None else None
            partitions.append(PartitionLag(topic, int(key), position, committed, high, lag))
    connected = any(state == "UP" for state in brokers.values())
    return KafkaStats(connected, brokers, sorted(partitions, key=lambda p: (p.topic, p.partition)))


# -- the source -----------------------------------------------------------------------------


def notice_of_message(message: Message, received: float) -> Notice:
    kind, stamp = message.timestamp()
    created = stamp / 1000.0 if kind != TIMESTAMP_NOT_AVAILABLE and stamp >= 0 else None
    return Notice(
        message.topic() or "",
        message.value() or b"",
        message.partition() or 0,
        message.offset() or 0,
        created,
        received,
        "kafka",
    )


Key = tuple[str, int]


class KafkaSource:
    """Notices from a consumer group, with explicit start positions and commits after storage.

    A partition the group has never committed starts at the chosen position. `latest` is
    resolved to an offset and committed at once, so a restart before the first notice still
    starts there. A time start seeks with `offsets_for_times`, then drops records older than
    the time until the first newer one (exact on Kafka; needed on brokers that answer 0).
    """

    def __init__(
        self,
        consumer: Consumer,
        start: StartPosition,
        hooks: SourceHooks,
        *,
        commit: bool = True,
        log: logging.Logger | None = None,
    ) -> None:
        self.consumer, self.start, self.hooks, self.commit = consumer, start, hooks, commit
        self.log = log or logging.getLogger("tracerules.kafka")
        self._cutoff: dict[Key, float] = {}
        self._to_commit: dict[Key, int] = {}
        self._last_commit = 0.0
        self.assignment: set[Key] = set()
        self.at_end: set[Key] = set()
        self._warned: set[str] = set()

    @classmethod
    def open(
        cls,
        settings: KafkaSettings,
        group_id: str,
        start: StartPosition,
        hooks: SourceHooks,
        *,
        echo: bool = False,
        log: logging.Logger | None = None,
    ) -> KafkaSource:
        logger = log or logging.getLogger("tracerules.kafka")
        config = consumer_config(settings, group_id, eof=echo)
        config["error_cb"] = lambda err: hooks.kafka_error(str(err), err.fatal())
        config["stats_cb"] = lambda text: hooks.kafka_stats(parse_stats(text))
        config["logger"] = logger
        return cls(open_consumer(settings, config), start, hooks, commit=not echo, log=logger)

    def subscribe(self, topics: Iterable[str]) -> None:
        self.consumer.subscribe(
            sorted(topics), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._lost
        )

    def next(self, timeout: float) -> Notice | None:
        message = self.consumer.poll(timeout)
        if message is None:
            self._flush()
            return None
        error = message.error()
        key = (message.topic() or "", message.partition() or 0)
        if error is not None:
            self._message_error(error, key)
            return None
        self.at_end.discard(key)
        notice = notice_of_message(message, time.time())
        cutoff = self._cutoff.get(key)
        if cutoff is not None:
            if notice.created is not None and notice.created < cutoff:
                self.done(notice)  # before the start time: skipped on purpose
                return None
            del self._cutoff[key]
        return notice

    def done(self, notice: Notice) -> None:
        if self.commit:
            self._to_commit[(notice.topic, notice.partition)] = notice.offset + 1
            if time.monotonic() - self._last_commit >= COMMIT_EVERY_S:
                self._flush()

    def caught_up(self) -> bool:
        """Every assigned partition has reached its end (needs `enable.partition.eof`)."""
        return bool(self.assignment) and self.assignment <= self.at_end

    def close(self) -> None:
        self._flush(sync=True)
        self.consumer.close()

    # -- internals ---------------------------------------------------------------------------

    def _flush(self, sync: bool = False, keys: Collection[Key] | None = None) -> None:
        pending = {k: v for k, v in self._to_commit.items() if keys is None or k in keys}
        if not pending:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in pending.items()]
        try:
            if sync:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as err:  # redelivery is harmless: notices are deduplicated
            self.log.warning("commit failed", extra={"fields": {"error": str(err)}})
            return
        for key in pending:
            self._to_commit.pop(key, None)
        self._last_commit = time.monotonic()

    def _message_error(self, error: KafkaError, key: Key) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            self.at_end.add(key)
            return
        text = str(error)
        if text not in self._warned:  # e.g. a subscribed topic that does not exist (yet)
            self._warned.add(text)
            self.hooks.kafka_error(f"{key[0]}: {text}", error.fatal())

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            committed = consumer.committed(partitions, timeout=10)
        except KafkaException as err:
            self.log.warning("committed offsets unavailable", extra={"fields": {"error": str(err)}})
            committed = [TopicPartition(p.topic, p.partition, OFFSET_STORED) for p in partitions]
        resumed = [tp for tp in committed if tp.offset >= 0 or tp.offset == OFFSET_STORED]
        fresh = [tp for tp in committed if not (tp.offset >= 0 or tp.offset == OFFSET_STORED)]
        started = self._start_positions(consumer, fresh)
        consumer.assign(resumed + started)
        self.assignment = {(tp.topic, tp.partition) for tp in resumed + started}
        self.at_end.clear()
        report = [(tp.topic, tp.partition, tp.offset) for tp in resumed + started]
        self.hooks.assigned(report, f"{len(resumed)} resumed, {len(started)} from {self.start}")

    def _start_positions(
        self, consumer: Consumer, fresh: list[TopicPartition]
    ) -> list[TopicPartition]:
        if not fresh:
            return []
        if self.start.kind == "earliest":
            return [TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in fresh]
        if self.start.kind == "time" and self.start.at is not None:
            return self._seek_time(consumer, fresh, self.start.at)
        latest = [self._latest(consumer, tp) for tp in fresh]
        known = [tp for tp in latest if tp.offset >= 0]
        if known and self.commit:  # remember the start, so a restart does not skip ahead
            try:
                consumer.commit(offsets=known, asynchronous=False)
            except KafkaException as err:
                self.log.warning("start commit failed", extra={"fields": {"error": str(err)}})
        return latest

    @staticmethod
    def _latest(consumer: Consumer, tp: TopicPartition) -> TopicPartition:
        try:
            _, high = consumer.get_watermark_offsets(tp, timeout=5, cached=False)
        except KafkaException:
            return TopicPartition(tp.topic, tp.partition, OFFSET_END)
        return TopicPartition(tp.topic, tp.partition, high if high >= 0 else OFFSET_END)

    def _seek_time(
        self, consumer: Consumer, fresh: list[TopicPartition], at: float
    ) -> list[TopicPartition]:
        query = [TopicPartition(tp.topic, tp.partition, int(at * 1000)) for tp in fresh]
        try:
            found = consumer.offsets_for_times(query, timeout=10)
        except KafkaException:  # the filter below still gives the right result from the start
            found = [TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in fresh]
        for tp in found:
            self._cutoff[(tp.topic, tp.partition)] = at
            if tp.offset < 0 and tp.offset != OFFSET_BEGINNING:
                tp.offset = OFFSET_END  # no record at or after the time yet
        return list(found)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        self._flush(sync=True, keys=keys)
        self._forget(keys)

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget({(tp.topic, tp.partition) for tp in partitions})

    def _forget(self, keys: set[Key]) -> None:
        self.assignment -= keys
        self.at_end -= keys
        for key in keys:
            self._cutoff.pop(key, None)
            self._to_commit.pop(key, None)
