"""The floor of bench/latency.py: what Tansu and librdkafka alone take on this machine now.

A plain consumer, with the service's librdkafka settings and no tracerules code after its
`poll`, on a broker of its own with the same topics, gets the same notices at the same pace;
the time from `produce()` to its `poll` returning each one is the least the service's
latency can be. It moves with the machine's load: on the shared 2-core machine it was
7.3 to 9.2 ms at p50 within half an hour, and it grows with the topics in each fetch (Tansu
reads every partition of a fetch request, and answers once it has read them all: 1 topic
3.3 ms, 10 topics 3.8 ms, 35 topics 6.3 ms, 70 topics 7.7 ms). Printed beside the service's
figures, it tells a slower service from a slower machine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, Producer

from tests.kafka_broker import TansuBroker, create_topic
from tracerules.runtime.service.kafka_settings import KafkaSettings, consumer_config

Item = tuple[str, bytes]  # (topic, payload)
Key = tuple[str, int, int]  # (topic, partition, offset)
Produce = Callable[[Producer, list[Item], float, dict[Key, float]], None]


def floor_latencies(
    topics: Iterable[str],
    probes: list[Item],
    pace: float,
    settings: dict[str, str],
    produce: Produce,
) -> list[float]:
    """produce() -> poll() milliseconds of a bare consumer, one per probe, on a fresh broker."""
    with TansuBroker() as broker:
        subscribed = sorted(set(topics))
        for topic in subscribed:
            create_topic(broker.bootstrap, topic, 1)
        consumer = _consumer(broker.bootstrap, subscribed, settings)
        received: dict[Key, float] = {}
        stop = threading.Event()
        reader = threading.Thread(target=_read, args=(consumer, received, stop), daemon=True)
        reader.start()
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
        for topic in sorted({topic for topic, _ in probes}):
            producer.list_topics(topic, timeout=10)
        sent: dict[Key, float] = {}
        produce(producer, probes, pace, sent)
        del producer  # gone before its broker: no "connection closed" line from librdkafka
        deadline = time.monotonic() + 30
        while not set(sent) <= set(received) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        reader.join(10)
        consumer.close()
    return [(received[key] - started) * 1000 for key, started in sent.items() if key in received]


def _consumer(bootstrap: str, topics: list[str], settings: dict[str, str]) -> Consumer:
    """Subscribed and assigned: the clock starts with every partition being fetched."""
    config: dict[str, Any] = consumer_config(
        KafkaSettings(bootstrap_servers=bootstrap, config=settings), "latency-floor"
    )
    config["auto.offset.reset"] = "earliest"
    assigned = threading.Event()
    consumer = Consumer(config)
    consumer.subscribe(topics, on_assign=lambda _consumer, _partitions: assigned.set())
    deadline = time.monotonic() + 60
    while not assigned.is_set():
        if time.monotonic() > deadline:
            raise TimeoutError("the floor's consumer got no partitions in 60 s")
        consumer.poll(0.1)
    for _ in range(10):  # the first fetches of each partition, before the clock starts
        consumer.poll(0.05)
    return consumer


def _read(consumer: Consumer, received: dict[Key, float], stop: threading.Event) -> None:
    while not stop.is_set():
        message = consumer.poll(0.2)
        if message is None or message.error() is not None:
            continue
        when = time.time()
        received[(message.topic() or "", message.partition() or 0, message.offset() or 0)] = when
