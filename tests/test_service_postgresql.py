"""Two `tracerules run` on one PostgreSQL store, in one consumer group, against the real
broker (Tansu) and a real PostgreSQL: Kafka assigns the partitions between them and both
decide at once, the database serialising each event; kill -9 one and the group hands its
partitions to the other, which resumes from the committed offsets, losing nothing and
acting on nothing twice."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import kafka_broker as kb
from tests.postgres_server import PostgresServer
from tests.service_harness import (
    LVK_JSON,
    LVK_VOEVENT,
    SERVICE_RULES,
    SUBSCRIBED,
    SWIFT,
    Produced,
    Publisher,
    ServiceProcess,
    iso_now,
    service_topics,
    topic_of,
    wait_until,
)
from tests.sql import sql_rows, stored_factors
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.sources.notices import Notice
from tracerules.runtime.store.postgres import close_pool
from tracerules.runtime.store.store import Store

pytestmark = pytest.mark.kafka
SWIFT_TOPIC = topic_of(SWIFT[1])  # BAT_GRB_POS_ACK: a subscribed topic, 2 partitions


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[kb.TansuBroker]:
    """A broker for one test: the session's holds other tests' copies of the same notices,
    which a team reading a partition from its start time must not meet (see the note in
    issue 12's closing: a time start on Tansu can read records older than the start)."""
    tansu = kb.TansuBroker(log_path=tmp_path / "broker.log")
    tansu.start()
    yield tansu
    tansu.close()


@pytest.fixture
def team(
    tmp_path: Path, own_broker: kb.TansuBroker, postgres_server: PostgresServer
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """Two services (machines A and B) on one PostgreSQL database, sharing a products folder,
    on a broker of their own."""
    url = postgres_server.fresh_database()
    bootstrap = service_topics(own_broker.bootstrap)
    out = tmp_path / "out"
    first = ServiceProcess(tmp_path / "a", bootstrap, store=url, out=out)
    second = ServiceProcess(tmp_path / "b", bootstrap, store=url, out=out)
    yield first, second
    first.close()
    second.close()
    close_pool(url)


def _logged(service: ServiceProcess, text: str) -> bool:
    return any(text in e.get("raw", "") for e in service.logs())


def _both_assigned(
    team: tuple[ServiceProcess, ServiceProcess], *settings: str
) -> dict[str, ServiceProcess]:
    """Start both services in one new group (with `settings`, -X each); wait until Kafka gave
    each some partitions; the owner of each partition of the Swift topic, by number."""
    group = f"team-{uuid.uuid4().hex[:8]}"
    for name, service in zip("ab", team, strict=True):
        extra = [x for s in settings for x in ("-X", s.replace("{name}", f"{group}.{name}"))]
        service.start("--group-id", group, "--start", iso_now(), *extra)
    wait_until(lambda: all(s.partitions() for s in team), 60, "both services assigned")
    owners = {}
    for service in team:
        for shown in service.partitions():
            if shown.startswith(f"{SWIFT_TOPIC}["):
                owners[shown[len(SWIFT_TOPIC) + 1 : -1]] = service
    assert set(owners) == {"0", "1"}, owners
    return owners


# The range strategy gives each service one partition of every topic: each event's notices,
# alternating between the partitions, then go to both services. (The default for a team,
# cooperative-sticky, balances the partitions of all topics together.)
PER_TOPIC = "partition.assignment.strategy=range"


def test_two_services_share_the_partitions_and_hand_over_when_one_is_killed(
    team: tuple[ServiceProcess, ServiceProcess],
) -> None:
    """Both consume (the partitions of 2-partition topics shared between them). The owner of
    the partition the stream goes to is killed -9; the group hands its partitions to the other
    after the session timeout, which resumes from the committed offset: nothing lost, nothing
    done twice."""
    owners = _both_assigned(team)  # the team's default: cooperative-sticky
    first = owners["0"]
    other = team[1] if first is team[0] else team[0]
    stream = [*SWIFT, *LVK_VOEVENT, *LVK_JSON]
    publisher = Publisher(first.bootstrap)
    before = publisher.send_files(stream[: len(stream) // 2], partition=0)
    first.wait_processed(before)
    first.kill()  # kill -9: no goodbye to Kafka nor to PostgreSQL
    killed = time.monotonic()

    after = publisher.send_files(stream[len(stream) // 2 :], partition=0)
    wait_until(lambda: f"{SWIFT_TOPIC}[0]" in other.partitions(), 60, "the hand-over")
    other.wait_processed(after, timeout=60)
    took = time.monotonic() - killed
    assert took < 6 + 5, took  # within the session timeout + 5 s (issue 15)

    _check_once_across(first, other, before + after)
    decided_by = {
        name: {e["trigger"] for e in proc.logs() if e.get("event") == "decision"}
        for name, proc in (("first", first), ("other", other))
    }
    assert decided_by["first"] and decided_by["other"]  # each decided its part of the stream
    shown = json.loads(other.status_cli("-f", "json")[1])
    roles = [(s["role"], s["pid"]) for s in shown["services"]]
    assert roles == [("active", other.pid)]  # the killed one is gone from the list
    assert f"{SWIFT_TOPIC}[0]" in shown["services"][0]["partitions"]
    assert other.stop() == 0


@pytest.mark.xfail(
    strict=True,
    reason="Tansu 0.6.0 keeps a static member's (group.instance.id) partitions after it is "
    "killed -9, past its session timeout: the group rebalances but assigns the survivor only "
    "its own partitions (none handed over within 60 s, measured); Kafka evicts a static "
    "member after session.timeout.ms. Only the same instance id rejoining takes them back, "
    "so the services of a team are dynamic members.",
)
def test_static_members_hand_over_a_killed_members_partitions(
    team: tuple[ServiceProcess, ServiceProcess],
) -> None:
    owners = _both_assigned(team, "group.instance.id={name}", PER_TOPIC)
    assert owners["0"] is not owners["1"]
    owners["0"].kill()
    wait_until(lambda: f"{SWIFT_TOPIC}[0]" in owners["1"].partitions(), 20, "the hand-over")


def test_notices_of_one_event_on_both_partitions_decide_as_one_service_would(
    team: tuple[ServiceProcess, ServiceProcess], tmp_path: Path
) -> None:
    """Each event's notices alternate between the partitions, so the two services decide
    on the same events in turn: every decision is the one a single engine makes on the
    same notices in the same order (the state read under the event's lock, not a stale
    copy in either process's memory)."""
    owners = _both_assigned(team, PER_TOPIC)
    assert owners["0"] is not owners["1"]
    stream = [*SWIFT, *LVK_VOEVENT, *LVK_JSON]
    publisher = Publisher(team[0].bootstrap)
    produced = []
    for index, path in enumerate(stream):
        sent = publisher.send_files([path], partition=index % 2)
        owners[str(index % 2)].wait_processed(sent)
        produced += sent
    _check_once_across(*team, produced)
    got = _decisions(team[0].store)
    assert got == _decisions(_one_engine(produced, tmp_path / "one.sqlite"))
    by_partition = Counter(p for *_, p in team[0].sql_rows("SELECT 1, partition FROM notices"))
    assert by_partition[0] and by_partition[1]


def test_a_burst_of_one_events_notices_on_both_partitions_joins_it_once_each(
    team: tuple[ServiceProcess, ServiceProcess],
) -> None:
    """Both services decide on the same events at the same moment: each notice joins its
    event once, in a sequence without gaps or repeats, and is decided once."""
    owners = _both_assigned(team, PER_TOPIC)
    assert owners["0"] is not owners["1"]
    base = [p for p in [*LVK_JSON, *LVK_VOEVENT] if "S191110af" in p.name or "MS181101ab" in p.name]
    items = [
        (topic_of(path), path.read_bytes() + (b" " * (copy + 1) if path.suffix == ".json" else
         f"<!-- copy {copy} -->".encode()), f"{path.name}#{copy}")
        for copy in range(8)
        for path in base
    ]  # fmt: skip
    publisher = Publisher(team[0].bootstrap)
    produced = [
        *publisher.send(items[0::2], partition=0),
        *publisher.send(items[1::2], partition=1),
    ]
    wait_until(lambda: all(s.processed(produced) for s in team), 90, "the burst")
    wait_until(team[0].actions_settled, 60, "the burst's actions")
    _check_once_across(*team, produced)
    joined = team[0].sql_rows(
        "SELECT e.trigger, e.event_id, e.notices, count(*), min(en.seq), max(en.seq), "
        "count(DISTINCT en.seq) FROM events e JOIN event_notices en ON en.event = e.id "
        "GROUP BY e.id, e.trigger, e.event_id, e.notices"
    )
    assert {(t, e) for t, e, *_ in joined} == {
        ("lvk-voevent", "S191110af"),
        ("lvk-alert", "MS181101ab"),
    }
    for trigger, event_id, notices, rows, low, high, distinct in joined:
        assert notices == rows == distinct == high and low == 1, (trigger, event_id, rows)
        assert rows == 8 * len([p for p in base if event_id in p.name])


def _one_engine(produced: list[Produced], path: Path) -> Store:
    """The same notices, in the same order, through one engine on a SQLite store."""
    store = Store(path)
    engine = Engine(
        load_ruleset([SERVICE_RULES]), store, out_dir=path.parent / "one", run_actions=False
    )
    for p in produced:
        engine.process(Notice(p.topic, p.payload, p.partition, p.offset, time.time(), time.time()))
    return store


def _decisions(store: str | Store) -> list[tuple[Any, ...]]:
    """Every decision by its notice's payload: trigger, event, its place in the event, votes,
    conclusion, and each factor's name, vote and whether it was inherited."""
    db = store if isinstance(store, Store) else Store(store, read_only=True)
    rows = sql_rows(
        db,
        "SELECT d.id, n.sha256, d.trigger, d.event_id, d.seq, d.votes, d.conclusion "
        "FROM decisions d JOIN notices n ON n.id = d.notice_id",
    )
    out = []
    for row in rows:
        factors = stored_factors(db, row[0])
        out.append((*tuple(row)[1:], tuple(factors)))
    db.close()
    return sorted(out)


def _check_once_across(a: ServiceProcess, b: ServiceProcess, produced: list[Produced]) -> None:
    """Every produced notice stored once and evaluated; no notice decided twice; every action
    done, and done once across both services' logs."""
    rows = a.sql_rows(
        'SELECT topic, sha256, status, partition, "offset", created, received FROM notices '
        'WHERE "offset" >= 0'
    )
    copies = Counter((t, sha) for t, sha, *_ in rows)
    for p in produced:
        if p.topic in SUBSCRIBED:
            sha = hashlib.sha256(p.payload).hexdigest()
            # Where each copy came from (partition, offset, status, Kafka's time, arrival):
            # a copy at an offset this test did not produce is a record read from before
            # the services' --start.
            where = [(r[3], r[4], r[2], r[5], r[6]) for r in rows if r[:2] == (p.topic, sha)]
            assert copies[(p.topic, sha)] == 1, (p.name, p.partition, p.offset, where)
    assert not [r for r in rows if r[2] == "new"], "notices left unevaluated"
    twice = a.sql_rows(
        "SELECT notice_id, trigger, count(*) FROM decisions WHERE source='notice' "
        "GROUP BY notice_id, trigger HAVING count(*) > 1"
    )
    assert not twice, f"notices evaluated twice: {twice}"
    actions = a.sql_rows("SELECT idempotency_key, status FROM actions")
    assert actions and all(status == "done" for _, status in actions), actions
    done = Counter(
        e["key"]
        for e in a.logs() + b.logs()
        if e.get("event") == "action" and e.get("status") == "done"
    )
    assert set(done) == {key for key, _ in actions} and set(done.values()) == {1}, done
