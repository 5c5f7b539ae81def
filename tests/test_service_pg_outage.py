"""A running `tracerules run` whose PostgreSQL goes away and comes back, against the real
broker and a real PostgreSQL halted as a crash would: nothing produced meanwhile is lost,
nothing is done twice, and the service says what happened."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import kafka_broker as kb
from tests.postgres_cluster import PostgresServer, start_postgres
from tests.service_harness import (
    LVK_JSON,
    LVK_VOEVENT,
    SWIFT,
    Produced,
    Publisher,
    ServiceProcess,
    check_exactly_once,
    iso_now,
    service_topics,
)

pytestmark = pytest.mark.kafka


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A server of this test's own: it is halted and started again under the service."""
    server = start_postgres()
    yield server
    server.stop()


def test_a_service_whose_postgresql_restarts_loses_nothing_and_resumes(
    tmp_path: Path, kafka_broker: kb.KafkaBroker, own_server: PostgresServer
) -> None:
    url = own_server.fresh_database()
    service = ServiceProcess(tmp_path / "a", service_topics(kafka_broker.bootstrap), store=url)
    service.start("--group-id", f"outage-{uuid.uuid4().hex[:8]}", "--start", iso_now())
    try:
        service.wait_assigned()
        stream = [*SWIFT, *LVK_VOEVENT, *LVK_JSON]
        publisher = Publisher(service.bootstrap)
        before = publisher.send_files(stream[: len(stream) // 2])
        service.wait_processed(before)

        own_server.halt()
        during = publisher.send_files(stream[len(stream) // 2 :])
        time.sleep(8)  # the service meets the outage: its store and its lock are gone
        service.check_alive()  # waiting for the server, not exited
        meanwhile = service.logs()
        assert any(e.get("event") == "store error; retrying" for e in meanwhile)
        assert not _logged_notices(meanwhile) & _keys(during)  # none stored nor committed
        own_server.resume()
        service.wait_processed(during, timeout=90)
        check_exactly_once(service, before + during)
        told = [e.get("event") for e in service.logs() if e.get("level") in ("warning", "error")]
        assert "store connection lost; waiting for the server to take the service lock back" in told
        assert "store error; retrying" in told
        assert any(
            e.get("event") == "store's service lock taken back; going on" for e in service.logs()
        )
        assert service.stop() == 0
    finally:
        service.close()


def _keys(produced: list[Produced]) -> set[tuple[str, int, int]]:
    return {(p.topic, p.partition, p.offset) for p in produced}


def _logged_notices(lines: list[dict[str, Any]]) -> set[tuple[str, int, int]]:
    return {(e["topic"], e["partition"], e["offset"]) for e in lines if e.get("event") == "notice"}
