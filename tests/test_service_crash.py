"""`kill -9` of `tracerules run` at random points: no notice lost, no action run twice.

Each trial starts the service, publishes a stream of real notices and kills the process at a
random moment while it consumes; the next trial starts it again on the same store and group.
At the end every notice is stored and evaluated once, and every passing decision's action
ran once: one row per idempotency key, one file per action, one "done" log line per key.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import kafka_broker as kb
from tests.service_harness import (
    Produced,
    Publisher,
    ServiceProcess,
    check_exactly_once,
    iso_now,
    service_topics,
    variants,
    wait_until,
)

pytestmark = pytest.mark.kafka

TRIALS = 3
PER_TRIAL = 60
SEED = 20231210


@pytest.fixture
def service(tmp_path: Path, kafka_broker: kb.KafkaBroker) -> Iterator[ServiceProcess]:
    process = ServiceProcess(tmp_path, service_topics(kafka_broker.bootstrap))
    yield process
    process.close()


def stored(service: ServiceProcess) -> int:
    return service.sql_rows("SELECT count(*) FROM notices")[0][0] if service.store.exists() else 0


def test_kill_9_at_random_points_loses_nothing_and_acts_once(service: ServiceProcess) -> None:
    rng = random.Random(SEED)
    # Static membership: a restarted member takes its partitions back without waiting for
    # the killed one's session to time out (about 6 s instead of 11 s on Tansu).
    args = ("--start", iso_now(), "-X", f"group.instance.id=crash-{uuid.uuid4().hex[:8]}")
    publisher = Publisher(service.bootstrap)
    items = variants(TRIALS * PER_TRIAL)
    produced: list[Produced] = []
    at_kill = []
    for trial in range(TRIALS):
        service.start(*args)
        service.wait_assigned()
        batch = items[trial * PER_TRIAL : (trial + 1) * PER_TRIAL]
        sender = threading.Thread(
            target=lambda batch=batch: produced.extend(publisher.send(batch, pause=0.005))
        )
        before = stored(service)
        target = before + rng.randrange(1, PER_TRIAL)  # a random point in the stream
        sender.start()
        wait_until(lambda target=target: stored(service) >= target, 30, "the kill point", 0.002)
        time.sleep(rng.uniform(0, 0.005))  # between notices, or inside one, or in an action
        service.kill()
        killed_at = stored(service)
        sender.join(30)
        at_kill.append((before, killed_at, len(produced)))
    service.start(*args)
    service.wait_processed(produced, timeout=60)

    assert len(produced) == TRIALS * PER_TRIAL
    assert all(b < k < n for b, k, n in at_kill), f"each kill was mid-stream: {at_kill}"
    check_exactly_once(service, produced)
    assert service.stop() == 0
