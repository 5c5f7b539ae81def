"""Poison pills against `tracerules run` on the real broker: a payload no parser or converter
can cope with, on any topic and on gcn.heartbeat, becomes a dead letter with its reason, its
offset is committed, and the service goes on (issue 11, item 1)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import kafka_broker as kb
from tests.poison import malformed
from tests.service_harness import (
    LVK_JSON,
    SUBSCRIBED,
    SWIFT,
    Publisher,
    ServiceProcess,
    iso_now,
    service_topics,
    topic_of,
    wait_until,
)
from tracerules.runtime.service.health import HEARTBEAT_TOPIC

pytestmark = pytest.mark.kafka


@pytest.fixture
def service(tmp_path: Path, kafka_broker: kb.KafkaBroker) -> Iterator[ServiceProcess]:
    process = ServiceProcess(tmp_path, service_topics(kafka_broker.bootstrap))
    yield process
    process.close()


def dead_letters(service: ServiceProcess) -> dict[str, list[str]]:
    rows = service.sql_rows(
        "SELECT n.topic, d.reason FROM dead_letters d JOIN notices n ON n.id = d.notice_id"
    )
    out: dict[str, list[str]] = {}
    for topic, reason in rows:
        out.setdefault(topic, []).append(reason)
    return out


def test_poison_pills_on_every_topic_and_the_heartbeat_are_dead_letters(
    service: ServiceProcess,
) -> None:
    xml_file = next(p for p in SWIFT if topic_of(p) in SUBSCRIBED)
    xml_topic, json_topic = topic_of(xml_file), topic_of(LVK_JSON[0])
    sent = {
        HEARTBEAT_TOPIC: malformed("heartbeat", 20),
        xml_topic: malformed("xml", 20),
        json_topic: malformed("json", 20),
    }
    service.start("--start", iso_now(-1))
    service.wait_assigned()
    publisher = Publisher(service.bootstrap)
    publisher.send([(t, p, f"{t}#{i}") for t, ps in sent.items() for i, p in enumerate(ps)])
    good = publisher.send_files([xml_file])  # a real notice after them is still evaluated

    def all_dead() -> bool:
        service.check_alive()
        found = dead_letters(service)
        return all(len(found.get(t, [])) == len(ps) for t, ps in sent.items())

    wait_until(all_dead, 60, "every poison pill as a dead letter")
    found = dead_letters(service)
    assert all(reason.strip() for reasons in found.values() for reason in reasons)
    assert any("heartbeat refused" in r and "too large" in r for r in found[HEARTBEAT_TOPIC])
    assert any("after it was published" in r for r in found[HEARTBEAT_TOPIC])
    assert any("not a finite" in r for r in found[HEARTBEAT_TOPIC])
    wait_until(lambda: service.processed(good), 20, "the good notice")
    stream = service.status()["stream"]
    assert stream["health"] == "FAILURE"  # no future or infinite time holds it at OK
    assert stream["heartbeats"] == 0

    assert service.stop() == 0
    before = service.sql_rows("SELECT count(*) FROM dead_letters")[0][0]
    service.start()  # the offsets were committed: nothing is read again, nothing crashes
    service.wait_assigned()
    time.sleep(3)
    service.check_alive()
    assert service.sql_rows("SELECT count(*) FROM dead_letters")[0][0] == before
    assert service.stop() == 0


def test_a_good_heartbeat_after_poison_gives_health_again(service: ServiceProcess) -> None:
    service.start("--start", iso_now(-1))
    service.wait_assigned()
    publisher = Publisher(service.bootstrap)
    poison = [(HEARTBEAT_TOPIC, p, "poison") for p in malformed("heartbeat", 18, seed=3)]
    beat = json.dumps({"alert_datetime": iso_now()}).encode()
    publisher.send([*poison, (HEARTBEAT_TOPIC, beat, "good")])
    stream = wait_until(
        lambda: (s := service.status()["stream"])["heartbeats"] == 1 and s, 30, "the good beat"
    )
    assert stream["health"] == "OK"
    # two partitions: the good beat may be read before poison on the other one
    wait_until(lambda: len(dead_letters(service).get(HEARTBEAT_TOPIC, [])) == 18, 30, "poison")
    assert service.status()["stream"]["heartbeats"] == 1
    assert service.stop() == 0
