"""The broker unreachable at start, or going away mid-stream: `tracerules status` reports it,
the service retries, and it recovers when a broker is back at the same address.

These tests run their own Tansu broker (memory storage), so they can stop and restart it. A
restarted memory broker has lost its topics, records and committed offsets: the tests
create the topics again, and the new log reuses offsets the store has already seen.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import kafka_broker as kb
from tests.service_harness import (
    SUBSCRIBED,
    Produced,
    Publisher,
    ServiceProcess,
    check_exactly_once,
    ensure_topics,
    iso_now,
    notice_files,
    wait_until,
)
from tracerules.runtime.service.health import HEARTBEAT_TOPIC
from tracerules.runtime.sources.notices import Notice
from tracerules.runtime.store.store import Store

pytestmark = pytest.mark.kafka

SWIFT = notice_files("swift_chain")
LVK = notice_files("lvk_voevent", "0*")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[kb.TansuBroker]:
    """A private broker at a fixed port, not started yet."""
    tansu = kb.TansuBroker(port=free_port(), log_path=tmp_path / "broker.log")
    yield tansu
    tansu.close()


def broker_port(broker: kb.TansuBroker) -> int:
    return broker.port  # fixed at construction, so known before the first start


def create_topics(bootstrap: str) -> None:
    ensure_topics(bootstrap, SUBSCRIBED | {HEARTBEAT_TOPIC})


def disconnected(service: ServiceProcess) -> dict[str, object] | None:
    service.check_alive()
    kafka = service.status()["kafka"]
    return kafka if kafka.get("connected") is False and kafka.get("last_error") else None


def test_broker_unreachable_at_start_is_reported_then_the_service_recovers(
    tmp_path: Path, broker: kb.TansuBroker
) -> None:
    service = ServiceProcess(tmp_path, f"127.0.0.1:{broker_port(broker)}")
    try:
        service.start("--start", iso_now())
        kafka = wait_until(lambda: disconnected(service), 20, "the outage in status")
        assert re.search("Connection refused|brokers are down", str(kafka["last_error"]))
        code, text = service.status_cli()
        assert code == 1 and "kafka         DISCONNECTED since" in text
        assert service.status()["service"]["running"]  # it waits; it does not give up

        broker.start()
        create_topics(broker.bootstrap)
        service.wait_assigned()
        produced = Publisher(broker.bootstrap).send_files([*SWIFT, *LVK])
        service.wait_processed(produced)
        assert service.status()["kafka"]["connected"] is True
        check_exactly_once(service, produced)
        assert service.stop() == 0
    finally:
        service.close()


def test_broker_going_away_mid_stream_is_reported_then_the_service_recovers(
    tmp_path: Path, broker: kb.TansuBroker
) -> None:
    broker.start()
    create_topics(broker.bootstrap)
    service = ServiceProcess(tmp_path, broker.bootstrap)
    try:
        service.start("--start", iso_now())
        service.wait_assigned()
        # Partition 0 throughout: after the restart the new log reuses the same offsets.
        before = Publisher(broker.bootstrap).send_files(SWIFT[:8], partition=0)
        service.wait_processed(before)

        broker.kill()
        kafka = wait_until(lambda: disconnected(service), 20, "the outage in status")
        assert re.search(
            "Connection refused|brokers are down|Disconnected", str(kafka["last_error"])
        )
        code, text = service.status_cli()
        assert code == 1 and "DISCONNECTED" in text

        back = time.time()
        broker.start()
        create_topics(broker.bootstrap)  # memory storage: the topics are gone
        wait_until(lambda: service.status()["kafka"]["connected"], 20, "the reconnection")
        wait_until(
            lambda: service.state("service").get("assigned_at", 0) > back, 40, "a new assignment"
        )
        after = Publisher(broker.bootstrap).send_files([*SWIFT[8:], *LVK], partition=0)
        service.wait_processed(after)
        reused = service.sql_rows('SELECT name FROM notices WHERE "offset" = -1')
        assert reused and all(name.endswith("(offset reused)") for (name,) in reused)
        check_exactly_once(service, before + after)
        assert service.stop() == 0
    finally:
        service.close()


def test_a_reused_offset_is_processed_only_once_its_new_payload_is_stored(tmp_path: Path) -> None:
    """What the restart test waits on: after a memory broker restarts, its new log reuses
    offsets the store holds, so the old row at an offset must not pass for the new message
    (the restart test once found no "(offset reused)" row: it had stopped waiting early)."""
    topic = sorted(SUBSCRIBED)[0]
    old, new = SWIFT[0].read_bytes(), SWIFT[1].read_bytes()
    service = ServiceProcess(tmp_path, "127.0.0.1:9")  # never started: its store is read
    store = Store(service.store)
    try:
        first = store.add_notice(Notice(topic, old, 0, 3))
        store.set_notice_status(first.id, "evaluated")
        again = Produced(topic, 0, 3, new, SWIFT[1].name)  # the new log's record at offset 3
        assert not service.processed([again])
        second = store.add_notice(Notice(topic, new, 0, 3))
        assert not service.processed([again])  # stored, not yet evaluated
        store.set_notice_status(second.id, "evaluated")
        assert service.processed([again])
        assert service.processed([Produced(topic, 0, 3, old, SWIFT[0].name)])
    finally:
        store.close()
