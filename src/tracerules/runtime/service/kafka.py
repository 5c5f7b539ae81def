"""Kafka, kept thin: the consumer, its statistics, and a notice source with explicit start
positions that commits only what is stored.

GCN domains use `gcn_kafka.Consumer` (OIDC client credentials); a plain `bootstrap.servers`
reaches any other Kafka. Settings are in `kafka_settings`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
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

from tracerules.runtime.service.kafka_settings import KafkaSettings, StartPosition, consumer_config
from tracerules.runtime.sources.notices import Notice

COMMIT_EVERY_S: Final = 0.1  # commits are batched this much while messages keep coming


class NoticeSource(Protocol):
    """Where notices come from: files, archives or Kafka all feed the same engine."""

    def next(self, timeout: float) -> Notice | None:
        """The next notice, or None when none came within `timeout` seconds."""

    def done(self, notice: Notice) -> None:
        """The notice and its decisions are durably stored: it may be acknowledged."""

    def close(self) -> None: ...


Key = tuple[str, int]


class SourceHooks(Protocol):
    """What a Kafka source reports to the service, from inside `poll`."""

    def kafka_error(self, message: str, fatal: bool) -> None: ...

    def topic_error(self, topic: str, message: str) -> None: ...

    def kafka_stats(self, stats: KafkaStats) -> None: ...

    def assigned(self, partitions: list[tuple[str, int, int]], how: str, held: list[Key]) -> None:
        """`partitions` were assigned (with their start offsets); `held`: all this consumer
        has now (more than `partitions` in an incremental, cooperative rebalance)."""

    def revoked(self, held: list[Key]) -> None:
        """Partitions were taken away; `held`: those this consumer keeps."""

    def stored_position(self, topic: str, partition: int) -> tuple[int, str] | None:
        """The highest offset the store holds for a partition and its payload's sha256."""
        ...


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


class KafkaSource:
    """Notices from a consumer group, with explicit start positions and commits after storage.

    A partition the group has never committed starts at the chosen position. `latest` is
    resolved to an offset and committed at once, so a restart before the first notice still
    starts there. A time start seeks with `offsets_for_times`, then drops records older than
    the time until the first newer one (exact on Kafka; needed on brokers that answer 0).
    Whenever a partition is caught up, its position is committed too: a partition with no
    notice yet has a committed offset, and a restart never falls back on a start position.
    """

    def __init__(
        self,
        consumer: Consumer,
        start: StartPosition,
        hooks: SourceHooks,
        *,
        commit: bool = True,
        log: logging.Logger | None = None,
        cooperative: bool = False,
    ) -> None:
        self.consumer, self.start, self.hooks, self.commit = consumer, start, hooks, commit
        # The incremental rebalance protocol (cooperative-sticky): a rebalance adds or takes
        # away some partitions, and the others go on being consumed meanwhile.
        self.cooperative = cooperative
        self.log = log or logging.getLogger("tracerules.kafka")
        self._cutoff: dict[Key, float] = {}
        self._to_commit: dict[Key, int] = {}
        self._committed: dict[Key, int] = {}
        self._last_commit = 0.0
        self._verify: dict[Key, tuple[int, str]] = {}  # resumed from the store: check the log
        self.assignment: set[Key] = set()
        self.at_end: set[Key] = set()

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
        config = consumer_config(settings, group_id)
        config["error_cb"] = lambda err: hooks.kafka_error(str(err), err.fatal())
        config["stats_cb"] = lambda text: hooks.kafka_stats(parse_stats(text))
        config["logger"] = logger
        cooperative = "cooperative" in str(config.get("partition.assignment.strategy", ""))
        consumer = open_consumer(settings, config)
        return cls(consumer, start, hooks, commit=not echo, log=logger, cooperative=cooperative)

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
            self._message_error(error, key, message.offset())
            return None
        self.at_end.discard(key)
        notice = notice_of_message(message, time.time())
        if key in self._verify and not self._same_log(key, notice):
            return None
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
        self._committed.update(pending)
        self._last_commit = time.monotonic()

    def _message_error(self, error: KafkaError, key: Key, offset: int | None) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            self.at_end.add(key)
            self._commit_end(key, offset)
            return
        if error.fatal():
            self.hooks.kafka_error(f"{key[0]}: {error}", True)
        else:  # e.g. a subscribed topic that does not exist (yet)
            self.hooks.topic_error(key[0], error.str())

    def _commit_end(self, key: Key, end: int | None) -> None:
        """Caught up on a partition: everything before its end offset was handled."""
        if not self.commit or key in self._to_commit or end is None or end < 0:
            return
        if self._committed.get(key) != end:
            self._to_commit[key] = end

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            committed = consumer.committed(partitions, timeout=10)
        except KafkaException as err:
            self.log.warning("committed offsets unavailable", extra={"fields": {"error": str(err)}})
            committed = [TopicPartition(p.topic, p.partition, OFFSET_STORED) for p in partitions]
        resumed = [tp for tp in committed if tp.offset >= 0 or tp.offset == OFFSET_STORED]
        fresh = [tp for tp in committed if not (tp.offset >= 0 or tp.offset == OFFSET_STORED)]
        known = self._from_store(fresh)
        started = self._start_positions(consumer, [tp for tp in fresh if tp not in known])
        chosen = resumed + known + started
        keys = {(tp.topic, tp.partition) for tp in chosen}
        if self.cooperative:  # `partitions` are those added
            consumer.incremental_assign(chosen)
            self.assignment |= keys
            self.at_end -= keys
        else:  # eager: `partitions` are the whole new assignment
            consumer.assign(chosen)
            self.assignment = keys
            self.at_end.clear()
        report = [(tp.topic, tp.partition, tp.offset) for tp in chosen]
        how = f"{len(resumed)} resumed, {len(known)} from the store"
        self.hooks.assigned(report, f"{how}, {len(started)} from {self.start}", self.held())

    def held(self) -> list[Key]:
        """Every partition assigned to this consumer now, sorted."""
        return sorted(self.assignment)

    def _from_store(self, fresh: list[TopicPartition]) -> list[TopicPartition]:
        """Partitions the group has no offset for (a restarted broker, expired offsets) but the
        store has read: restart at the last stored record, to check it is the same log."""
        if not self.commit:  # a relisten reads from its own start position
            return []
        known = []
        for tp in fresh:
            stored = self.hooks.stored_position(tp.topic, tp.partition)
            if stored is not None:
                self._verify[(tp.topic, tp.partition)] = stored
                known.append(TopicPartition(tp.topic, tp.partition, stored[0]))
        return known

    def _same_log(self, key: Key, notice: Notice) -> bool:
        """The first record after a resume from the store: True to hand it on.

        The record at the last stored offset is already stored: skip it. A different payload
        there means the broker's log was replaced (a broker restarted without its data, whose
        offsets start again at 0): read the new log from its beginning; the store's
        deduplication by payload absorbs anything seen before.
        """
        offset, sha = self._verify.pop(key)
        if notice.offset != offset:  # the stored record is gone (retention): what follows is new
            return True
        if notice.digest == sha:
            self.done(notice)
            return False
        self.log.warning(
            "the broker's log was replaced; reading it from the beginning",
            extra={"fields": {"topic": key[0], "partition": key[1], "offset": offset}},
        )
        self.consumer.seek(TopicPartition(key[0], key[1], OFFSET_BEGINNING))
        return False

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
            else:
                self._committed.update({(tp.topic, tp.partition): tp.offset for tp in known})
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
        if keys & self.assignment:
            self.hooks.revoked(sorted(self.assignment - keys))
        self.assignment -= keys
        self.at_end -= keys
        for key in keys:
            self._verify.pop(key, None)
            self._cutoff.pop(key, None)
            self._to_commit.pop(key, None)
            self._committed.pop(key, None)
