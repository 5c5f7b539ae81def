"""Safe to leave unattended (issue 11) against the real service and broker: secrets, a failing
destination, SIGTERM and kill -9 during a command, a full disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import kafka_broker as kb
from tests.service_harness import Publisher, ServiceProcess, notice_files, service_topics
from tests.torture_support import SECRET_ENV, Endpoint, leak_counts, secret_rules

pytestmark = pytest.mark.kafka

SWIFT = notice_files("swift_chain", "0[25]_*")


@pytest.fixture
def echo_api() -> Iterator[Endpoint]:
    api = Endpoint("echo")
    yield api
    api.close()


def test_eight_secret_shapes_leak_nowhere(
    tmp_path: Path,
    kafka_broker: kb.KafkaBroker,
    echo_api: Endpoint,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    rules = secret_rules(tmp_path / "rules", echo_api.url)
    service = ServiceProcess(tmp_path, service_topics(kafka_broker.bootstrap), rules=rules)
    try:
        service.start("--start", "latest")
        service.wait_assigned()
        produced = Publisher(service.bootstrap).send_files(SWIFT)
        service.wait_processed(produced, timeout=60)
        assert service.stop() == 0
    finally:
        service.close()
    statuses = dict(service.query("SELECT type || position, count(*) FROM actions GROUP BY 1"))
    assert statuses, "the actions ran"
    assert any("/hook" in path for _, path in echo_api.arrivals), "the API saw the secrets"
    counts = leak_counts(tmp_path, service.store, service.out, rules)
    assert counts == dict.fromkeys(counts, 0)
