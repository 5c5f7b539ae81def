"""`tracerules run` against a real broker: real notices published as GCN would, the service as
a child process, and every test checks that nothing was lost and nothing acted twice.

Tests share the session broker, so each one uses its own store (hence its own consumer group)
and, where it does not test the default `latest`, starts at its own start time: records
other tests left on the same topics are older, and skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from tests import kafka_broker as kb
from tests.service_harness import (
    EXTRA,
    LVK_JSON,
    LVK_VOEVENT,
    SERVICE_RULES,
    SUBSCRIBED,
    SWIFT,
    Produced,
    Publisher,
    ServiceProcess,
    check_exactly_once,
    iso_now,
    service_topics,
    topic_of,
    variants,
    wait_until,
)
from tracerules.runtime.service.health import HEARTBEAT_TOPIC, snapshot
from tracerules.runtime.store.store import Store

pytestmark = pytest.mark.kafka

SECRET = "s3cr3t-never-logged"


@pytest.fixture
def service(tmp_path: Path, kafka_broker: kb.KafkaBroker) -> Iterator[ServiceProcess]:
    process = ServiceProcess(tmp_path, service_topics(kafka_broker.bootstrap))
    yield process
    process.close()


def conclusions(service: ServiceProcess) -> list[tuple[str, str]]:
    """(trigger, conclusion) of every decision, sorted."""
    return sorted(service.sql_rows("SELECT trigger, conclusion FROM decisions"))


def names_of(produced: list[Produced]) -> dict[tuple[str, int, int], str]:
    return {(p.topic, p.partition, p.offset): p.name for p in produced}


def test_end_to_end_swift_chain_and_lvk_sequence_act_exactly_once(
    service: ServiceProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GCN_KAFKA_CLIENT_SECRET", SECRET)
    began = time.time()
    service.start()  # a new group starts at `latest`: only what is published from now on
    service.wait_assigned()
    publisher = Publisher(service.bootstrap)
    produced = publisher.send_files([*SWIFT, *LVK_VOEVENT, *LVK_JSON])
    service.wait_processed(produced)

    rows = service.sql_rows(
        'SELECT topic, partition, "offset", status FROM notices ORDER BY topic, "offset"'
    )
    named = names_of(produced)
    evaluated = sorted(named[(t, p, o)] for t, p, o, s in rows if s == "evaluated")
    assert evaluated == sorted(p.name for p in produced if p.topic in SUBSCRIBED)
    assert len(evaluated) == 3 + 3 + 6  # BAT_GRB_Pos and two XRT_Pos; every LVK alert

    decided: dict[str, list[str]] = {}
    for trigger, conclusion in conclusions(service):
        decided.setdefault(trigger, []).append(conclusion)
    assert sorted(decided["swift-grb"]) == ["PASS"] * 3
    assert sorted(decided["lvk-voevent"]) == ["FAIL", "PASS", "PASS"]  # the retraction fails
    assert sorted(decided["lvk-alert"]) == ["FAIL"] + ["PASS"] * 5

    files = check_exactly_once(service, produced)
    expected = {
        f"{folder}/{event}/{p.topic}-{p.partition}-{p.offset}.{ext}": p.payload
        for p in produced
        for folder, event, ext, names in (
            ("swift", "1201696", "xml", ("02_BAT_GRB", "05_XRT_Pos", "15_XRT_Pos")),
            ("lvk", "S191110af", "xml", ("01_S191110af", "02_S191110af")),
            ("gwalert", "MS181101ab", "json", ("01_MS", "02_MS", "03_MS", "04_MS", "05_MS")),
        )
        if p.name.startswith(names) and p.topic in SUBSCRIBED
    }
    assert files == set(expected)
    for path, payload in expected.items():  # the notice, byte for byte
        assert (service.out / path).read_bytes() == payload

    logs = service.logs()
    notice_lines = [e for e in logs if e.get("event") == "notice"]
    decision_lines = [e for e in logs if e.get("event") == "decision"]
    assert len(notice_lines) == 12
    assert len(decision_lines) == 12
    assert {e["conclusion"] for e in decision_lines} == {"PASS", "FAIL"}
    assert service.stop() == 0

    # Relisten to everything since the test began, plus one notice published while stopped:
    # the stored notices are recognised and do not act again; the new one acts once.
    produced += publisher.send_files(EXTRA)
    assert service.echo(f"{time.time() - began + 1:.0f} s") == 0
    files = check_exactly_once(service, produced)
    assert len(files) == len(expected) + 1
    echo_log = service.logs(service.runs)
    echoed = [e for e in echo_log if e.get("event") == "notice"]
    assert sorted(e["status"] for e in echoed) == ["duplicate"] * 12 + ["evaluated"]
    assert any(e.get("event") == "service stopped" and e["reason"] == "caught up" for e in echo_log)

    everything = b"".join(p.read_bytes() for p in service.work.glob("service-*.log"))
    assert SECRET.encode() not in everything
    assert SECRET.encode() not in service.store.read_bytes()


def test_restart_mid_stream_resumes_from_committed_offsets(service: ServiceProcess) -> None:
    stream = [*SWIFT, *LVK_VOEVENT, *LVK_JSON]
    first, second = stream[: len(stream) // 2], stream[len(stream) // 2 :]
    service.start("--start", iso_now())
    service.wait_assigned()
    publisher = Publisher(service.bootstrap)
    produced = publisher.send_files(first)
    service.wait_processed(produced)
    assert service.stop() == 0
    group = service.state("group")["id"]

    later = publisher.send_files(second)  # published while the service is down
    service.start()  # no --start and no --group-id: the store remembers its group
    service.wait_processed(later)
    assert service.state("service")["group"] == group

    run2 = service.logs(2)
    assigned = next(e for e in run2 if e.get("event") == "partitions assigned")
    assert assigned["how"].startswith(f"{len(assigned['partitions'])} resumed")
    seen = [e for e in run2 if e.get("event") == "notice"]
    # Nothing of the first half came again: the committed offsets were where it stopped.
    assert [e["status"] for e in seen] == ["evaluated"] * len(seen)
    assert {(e["topic"], e["partition"], e["offset"]) for e in seen} == {
        (p.topic, p.partition, p.offset) for p in later if p.topic in SUBSCRIBED
    }
    check_exactly_once(service, produced + later)
    assert service.stop() == 0


def committed_offsets(bootstrap: str, group: str, topics: set[str]) -> dict[tuple[str, int], int]:
    consumer = Consumer(kb.fast_consumer_config(bootstrap, group))
    try:
        asked = [TopicPartition(t, p) for t in sorted(topics) for p in range(2)]
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in consumer.committed(asked, timeout=10)
            if tp.offset >= 0
        }
    finally:
        consumer.close()


def test_sigterm_mid_stream_finishes_the_notice_commits_and_exits_0(
    service: ServiceProcess,
) -> None:
    service.start("--start", iso_now())
    service.wait_assigned()
    publisher = Publisher(service.bootstrap)
    produced: list[Produced] = []
    sender = threading.Thread(
        target=lambda: produced.extend(publisher.send(variants(150), pause=0.004))
    )
    sender.start()
    wait_until(
        lambda: len([e for e in service.logs(1) if e.get("event") == "notice"]) >= 40,
        30,
        "40 notices",
    )
    assert service.stop(signal.SIGTERM) == 0
    stopped_at = time.time()
    sender.join(30)
    group = service.state("group")["id"]

    logged = [e for e in service.logs(1) if e.get("event") == "notice"]
    assert 40 <= len(logged) < len(produced), "stopped mid-stream"
    assert service.logs(1)[-1]["event"] == "service stopped"
    assert service.state("service")["state"] == "stopped"
    last: dict[tuple[str, int], int] = {}
    for e in logged:
        key = (e["topic"], e["partition"])
        last[key] = max(last.get(key, -1), e["offset"])
    committed = committed_offsets(service.bootstrap, group, SUBSCRIBED)
    for key, offset in last.items():  # everything handled is committed ...
        assert committed[key] == offset + 1
    handled = {(e["topic"], e["partition"], e["offset"]) for e in logged}
    for p in produced:  # ... and nothing that was not
        if (p.topic, p.partition, p.offset) not in handled:
            assert committed.get((p.topic, p.partition), 0) <= p.offset
    assert time.time() - stopped_at < 20

    service.start()
    service.wait_processed(produced, timeout=60)
    again = [e for e in service.logs(2) if e.get("event") == "notice"]
    assert all(e["status"] == "evaluated" for e in again)  # none of the first run's notices
    assert len(logged) + len(again) == len(produced)
    check_exactly_once(service, produced)
    assert service.stop(signal.SIGINT) == 0


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0" role="observation">&lol3;
</voe:VOEvent>"""


def test_malformed_payloads_become_dead_letters_and_the_service_carries_on(
    service: ServiceProcess,
) -> None:
    bat = SWIFT[1].read_bytes()  # 02_BAT_GRB_Pos
    xml_topic, json_topic = topic_of(SWIFT[1]), topic_of(LVK_JSON[0])
    big = b'{"superevent_id": "S1", "pad": "' + b"x" * (8 * 1024 * 1024) + b'"}'
    bad = [
        (xml_topic, bat[: len(bat) // 2], "truncated XML"),
        (xml_topic, BILLION_LAUGHS, "entity bomb"),
        (xml_topic, bat.replace(b"<Who>", b"<Who>\xff\xfe\xfd", 1), "invalid UTF-8 (XML)"),
        (xml_topic, LVK_JSON[0].read_bytes(), "JSON on an XML topic"),
        (json_topic, LVK_JSON[1].read_bytes().replace(b"MS181101ab", b"MS\xc3\x28"), "bad UTF-8"),
        (json_topic, big, "over the size limit"),
        (json_topic, LVK_VOEVENT[0].read_bytes(), "XML on a JSON topic"),
        (json_topic, b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
    ]
    service.start("--start", iso_now())
    service.wait_assigned()
    publisher = Publisher(service.bootstrap, message_max_bytes=16 * 1024 * 1024)
    produced = publisher.send(bad)
    produced += publisher.send([(xml_topic, bat, "a good notice after them")])
    service.wait_processed(produced)
    service.check_alive()

    reasons = {
        p.name: service.sql_rows(
            "SELECT d.reason FROM dead_letters d JOIN notices n ON n.id = d.notice_id "
            'WHERE n.topic=? AND n.partition=? AND n."offset"=?',
            (p.topic, p.partition, p.offset),
        )[0][0]
        for p in produced[:-1]
    }
    assert reasons["truncated XML"].startswith("malformed XML")
    assert "document type declaration" in reasons["entity bomb"]
    assert reasons["invalid UTF-8 (XML)"].startswith("malformed XML")
    assert reasons["JSON on an XML topic"] == "JSON payload on an XML topic"
    assert reasons["bad UTF-8"].startswith("invalid UTF-8")
    assert "over the 8388608-byte limit" in reasons["over the size limit"]
    assert reasons["XML on a JSON topic"] == "XML payload on a JSON topic"
    # The JSON parser's RecursionError escapes the engine; the service keeps the notice.
    assert re.search("RecursionError|JSON", reasons["nested too deeply"])
    stored = service.sql_rows(
        "SELECT size FROM notices WHERE topic=? ORDER BY size DESC", (json_topic,)
    )
    assert stored[0][0] == len(big)  # kept whole: never lost

    status = service.status()
    assert status["dead_letters"] == len(bad)
    by_topic = {t["topic"]: t for t in status["topics"]}
    xml_reasons = {reasons[p.name] for p in produced[:-1] if p.topic == xml_topic}
    assert by_topic[xml_topic]["last_error"] in xml_reasons  # partitions interleave
    assert by_topic[json_topic]["last_error_at"] is not None
    assert conclusions(service) == [("swift-grb", "PASS")]  # the good notice after them
    check_exactly_once(service, produced)
    assert service.stop() == 0


BROKEN = """schema_version: 1
triggers:
  - id: swift-grb
    topics: [gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK]
    event_id: trig_id
    event_time: t
    expiry: 1 d
    priority: 10
    fields:
      trig_id: {xpath: "//Param[@name='TrigID']/@value", as: int}
      t: {xpath: "//ISOTime", as: time}
    conditions:
      broken: trig_id >>> 3
"""

QUICKLOOK = """
  - id: swift-quicklook
    description: added while the service runs
    topics: [gcn.classic.voevent.SWIFT_BAT_QL_POS]
    event_id: trig_id
    event_time: burst_time
    expiry: 36500 d
    priority: 5
    fields:
      trig_id: {xpath: "//Param[@name='TrigID']/@value", as: int}
      burst_time: {xpath: "//ISOTime", as: time}
    actions:
      - type: notice
        path: "quicklook/{event_id}/{topic}-{partition}-{offset}.xml"
"""


def test_rules_reload_on_change_and_sighup_and_a_broken_file_keeps_the_old_rules(
    service: ServiceProcess,
) -> None:
    rules = service.work / "rules"
    shutil.copytree(SERVICE_RULES, rules)
    service.rules = rules
    rule_file = rules / "service.yaml"
    good_text = rule_file.read_text()
    service.start("--start", iso_now())
    service.wait_assigned()
    publisher = Publisher(service.bootstrap)
    produced = publisher.send_files([SWIFT[1]])
    service.wait_processed(produced)

    def logged(event: str) -> list[dict[str, object]]:
        return [e for e in service.logs(1) if e.get("event") == event]

    rule_file.write_text(BROKEN)
    refused = wait_until(
        lambda: logged("rules reload refused; the old rules stay in force"), 10, "a refusal"
    )
    problems = refused[0]["problems"]
    assert isinstance(problems, list) and any("service.yaml:13:" in p for p in problems)
    assert service.status()["rules"]["last_error"]
    produced += publisher.send_files([SWIFT[4]])  # an XRT position: the old rules take it
    service.wait_processed(produced)
    assert conclusions(service) == [("swift-grb", "PASS")] * 2

    rule_file.write_text(good_text + QUICKLOOK)
    reloaded = wait_until(lambda: logged("rules reloaded"), 10, "the reload")
    assert reloaded[0]["added_topics"] == ["gcn.classic.voevent.SWIFT_BAT_QL_POS"]
    wait_until(
        lambda: any("SWIFT_BAT_QL_POS" in a for a in service.state("service")["assignment"]),
        30,
        "the subscription to follow the new topic",
    )
    assert not service.status()["rules"]["last_error"]
    service.subscribed.add("gcn.classic.voevent.SWIFT_BAT_QL_POS")
    produced += publisher.send_files([SWIFT[0]])  # BAT QuickLook: only the new trigger reads it
    service.wait_processed(produced)
    assert ("swift-quicklook", "PASS") in conclusions(service)

    assert service.proc is not None
    service.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: len(logged("rules reloaded")) == 2, 10, "a reload on SIGHUP")
    check_exactly_once(service, produced)
    assert service.stop() == 0


def heartbeat(age_s: float) -> tuple[str, bytes, str]:
    made = iso_now(-age_s)
    doc = {
        "$schema": "https://gcn.nasa.gov/schema/main/gcn/notices/core/Alert.schema.json",
        "alert_datetime": made,
    }
    return HEARTBEAT_TOPIC, json.dumps(doc).encode(), f"heartbeat {made}"


def test_heartbeats_give_stream_health_and_are_not_notices(service: ServiceProcess) -> None:
    service.start("--start", iso_now())
    service.wait_assigned()
    wait_until(lambda: service.status()["kafka"].get("connected"), 10, "statistics")
    before = service.status()["stream"]
    assert before["health"] == "FAILURE"
    assert before["reason"] == "no heartbeat was ever seen"
    code, text = service.status_cli()
    assert code == 1 and "stream        FAILURE: no heartbeat was ever seen" in text

    publisher = Publisher(service.bootstrap)
    publisher.send([heartbeat(30)])
    stream = wait_until(
        lambda: (s := service.status()["stream"])["heartbeats"] == 1 and s, 10, "a heartbeat"
    )
    assert stream["health"] == "DELAYED"
    assert 29 < stream["age"] < 40

    publisher.send([heartbeat(0)])
    wait_until(lambda: service.status()["stream"]["heartbeats"] == 2, 10, "a second heartbeat")
    code, text = service.status_cli()
    assert code == 0, text
    assert re.search(r"stream +OK: last heartbeat \d\.\d s ago", text)
    code, raw = service.status_cli("--format", "json")
    data = json.loads(raw)
    assert code == 0 and data["healthy"] and data["stream"]["health"] == "OK"

    last = data["stream"]["last_heartbeat"]
    db = Store(service.store)
    try:
        assert snapshot(db, now=last + 59.9)["stream"]["health"] == "DELAYED"
        assert snapshot(db, now=last + 60)["stream"]["health"] == "FAILURE"
    finally:
        db.close()
    assert not service.sql_rows("SELECT 1 FROM notices")  # heartbeats are not notices
    (products,) = service.sql_rows("SELECT value FROM service_state WHERE key='products'")
    assert json.loads(products[0]) == {"dir": str(service.out.resolve())}  # for `serve`
    assert service.sql_rows("SELECT count FROM topic_stats WHERE topic=?", (HEARTBEAT_TOPIC,)) == [
        (2,)
    ]
    assert service.stop() == 0
    code, text = service.status_cli()
    assert code == 1 and "stopped at" in text and "signal SIGTERM" in text
    assert os.path.exists(service.store)
