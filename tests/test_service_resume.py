"""Offsets after a broker restart (issue 11, item 9): with no committed offset for the group,
the service resumes from what the store holds instead of skipping to `latest`.

A private Tansu broker (memory storage) so it can be restarted: a restarted one has lost its
records and offsets, and its new log reuses offsets 0, 1, ... for other notices.
"""

from __future__ import annotations

import socket
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
    notice_files,
    topic_of,
)
from tracerules.runtime.service.health import HEARTBEAT_TOPIC

pytestmark = pytest.mark.kafka

SWIFT = [p for p in notice_files("swift_chain") if topic_of(p) in SUBSCRIBED]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[kb.TansuBroker]:
    tansu = kb.TansuBroker(port=free_port(), log_path=tmp_path / "broker.log")
    tansu.start()
    ensure_topics(tansu.bootstrap, SUBSCRIBED | {HEARTBEAT_TOPIC})
    yield tansu
    tansu.close()


def copies(count: int, mark: str) -> list[tuple[str, bytes, str]]:
    """`count` distinct notices on the Swift topics (real ones, each with its own comment)."""
    out = []
    for i in range(count):
        path = SWIFT[i % len(SWIFT)]
        tail = f"\n<!-- {mark} {i} -->\n".encode()
        out.append((topic_of(path), path.read_bytes() + tail, f"{path.name}#{mark}{i}"))
    return out


def first_run(service: ServiceProcess, broker: kb.TansuBroker) -> list[Produced]:
    service.start()  # --start latest, the default
    service.wait_assigned()
    before = Publisher(broker.bootstrap).send(copies(8, "before"), partition=0)
    service.wait_processed(before)
    assert service.stop() == 0
    return before


def test_a_new_group_resumes_where_the_store_stopped(
    tmp_path: Path, broker: kb.TansuBroker
) -> None:
    service = ServiceProcess(tmp_path, broker.bootstrap)
    try:
        before = first_run(service, broker)
        # Expired group offsets look like a group that never committed: a new group id.
        missed = Publisher(broker.bootstrap).send(copies(40, "missed"), partition=0)
        service.start("--group-id", "another-group")
        service.wait_processed(missed, timeout=60)
        check_exactly_once(service, [*before, *missed])
        assert service.stop() == 0
    finally:
        service.close()


def test_a_restarted_broker_with_a_new_log_is_read_from_its_beginning(
    tmp_path: Path, broker: kb.TansuBroker
) -> None:
    service = ServiceProcess(tmp_path, broker.bootstrap)
    try:
        before = first_run(service, broker)
        broker.kill()
        broker.start()  # memory storage: no records, no committed offsets
        ensure_topics(broker.bootstrap, SUBSCRIBED | {HEARTBEAT_TOPIC})
        missed = Publisher(broker.bootstrap).send(copies(40, "missed"), partition=0)
        service.start()
        service.wait_processed(missed, timeout=60)
        # (the new log reuses offsets, so file names repeat: count the notices instead)
        rows = service.sql_rows("SELECT sha256, status FROM notices")
        assert len({sha for sha, _ in rows}) == len(rows) == len(before) + len(missed)
        logs = [
            e
            for e in service.logs(2)
            if str(e.get("event")).startswith("the broker's log was replaced")
        ]
        assert logs, service.tail(60)
        assert service.stop() == 0
    finally:
        service.close()
