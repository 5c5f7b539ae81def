"""Two services on one PostgreSQL store in one consumer group, with kill -9 of the active one.

Starts a Tansu broker and a throwaway PostgreSQL (or uses --url), a local HTTP server that
records every webhook, and two `tracerules run` processes (machines A and B) on the same
database and consumer group, with a catch-all trigger whose webhook fires for every notice.
Both are members of the group; topics have one partition, as GCN's do, so Kafka assigns each
to one of them (the active one) and the other is idle in the group (the standby).

1. latency, no kills: --probes real notices one every --pace s; produce -> stored decision;
2. failover: --count real notices of the month archive, one every --stream-pace s, while
   the active service is killed with SIGKILL at random moments --kills times, and restarted
   each time (it rejoins the group; the rebalance gives the partitions to either).

Prints notices produced vs stored (target: 0 lost); the webhooks as a receiver that honours
Idempotency-Key sees them: keys acted on (every planned action's, once: target 0 twice) and
the resends of a delivered key it dropped; the longest gap between a notice produced and its
decision stored (target: the group's session timeout + 5 s); the latency p50/p99 without
kills (target: p50 <= 20 ms); and the engine benchmark on both stores
(bench/store_backends.py).

    python bench/ha.py [--count 1000] [--kills 10] [--probes 200] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from confluent_kafka import Producer  # noqa: E402
from engine import PostgresBeside, engine_timed, floor, read_archive, store_floor  # noqa: E402
from latency import percentile, produce, when  # noqa: E402
from shared_data import ARCHIVE, require_archive  # noqa: E402

from tests import loopback  # noqa: E402
from tests.kafka_broker import TansuBroker  # noqa: E402
from tests.postgres_cluster import PostgresServer, start_postgres  # noqa: E402
from tests.service_harness import ServiceProcess, ensure_topics, wait_until  # noqa: E402
from tracerules.rules.compile import load_ruleset  # noqa: E402
from tracerules.runtime.store.postgres import close_pool  # noqa: E402

SESSION_MS = 6000
Item = tuple[str, bytes]


def catch_all(folder: Path, topics: list[str], hook: str) -> Path:
    """One trigger on every topic: each notice (its IVORN is the event) fires a webhook."""
    lines = [
        "schema_version: 1",
        "topics:",
        *(f"  - {{name: {t}, format: xml}}" for t in topics),
        "triggers:",
        "  - id: ha-catch-all",
        "    topics:",
        *(f"      - {t}" for t in topics),
        "    event_id: ivorn",
        "    event_time: made",
        "    expiry: 36500 d",
        "    priority: 10",
        "    fields:",
        '      ivorn: {xpath: "/*/@ivorn", as: string}',
        '      made: {xpath: "//Who/Date", as: time}',
        "    actions:",
        "      - type: webhook",
        f'        url: "{hook}/notice"',
        "        timeout: 5",
    ]
    folder.mkdir(parents=True)
    (folder / "ha.yaml").write_text("\n".join(lines) + "\n")
    load_ruleset([folder])  # fail here, not in the services
    return folder


def unique(items: list[Item], count: int, tag: str) -> list[Item]:
    """`count` distinct notices (a comment no selector sees makes each copy unique)."""
    copies = []
    for i in range(count):
        topic, payload = items[i % len(items)]
        copies.append((topic, payload + f"\n<!-- {tag} {i} -->\n".encode()))
    return copies


def notice_times(services: tuple[ServiceProcess, ...]) -> dict[tuple[str, int, int], float]:
    """When each notice's decisions were stored: its first `notice` log line, any service."""
    seen: dict[tuple[str, int, int], float] = {}
    for service in services:
        for entry in service.logs():
            if entry.get("event") == "notice" and entry.get("decisions"):
                key = (entry["topic"], entry["partition"], entry["offset"])
                seen[key] = min(seen.get(key, float("inf")), when(entry))
    return seen


def active_of(team: tuple[ServiceProcess, ServiceProcess]) -> ServiceProcess | None:
    """The service consuming now: the one whose run records partitions assigned to it."""
    for service in team:
        if service.proc is not None and service.proc.poll() is None and service.partitions():
            return service
    return None


def settled(team: tuple[ServiceProcess, ...], topics: list[str]) -> ServiceProcess | None:
    """After a failover: both services in the group again and every topic consumed; then one
    of those consuming, at random (the next to kill). Killing it earlier would be a double
    failure, the other service killed before it took over the first one's partitions."""
    held: dict[ServiceProcess, list[str]] = {}
    for service in team:
        alive = service.proc is not None and service.proc.poll() is None
        member = service.member() if alive else {}
        if not member.get("assigned_at"):
            return None  # still waiting for the dead to leave the group, or joining it
        held[service] = [str(p) for p in member.get("partitions") or []]
    if {f"{t}[0]" for t in topics} - {p for ps in held.values() for p in ps}:
        return None
    return random.choice([s for s, ps in held.items() if ps])


def kill_loop(
    team: tuple[ServiceProcess, ServiceProcess], topics: list[str], kills: int, done: list[float]
) -> None:
    for _ in range(kills):
        wait_until(lambda: settled(team, topics), 120, "every topic consumed")
        time.sleep(random.uniform(1.0, 4.0))
        active = wait_until(lambda: settled(team, topics), 120, "every topic consumed")
        active.kill()
        done.append(time.time())
        active.start("--group-id", GROUP[0], "--start", "earliest")  # back in the group


GROUP = [""]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--pace", type=float, default=0.05)
    parser.add_argument("--stream-pace", type=float, default=0.1)
    parser.add_argument("--engine-limit", type=int, default=5000)
    parser.add_argument("--url", default=None, help="an existing PostgreSQL server's URL")
    args = parser.parse_args()
    require_archive(args.archive)
    print(f"load average at start (1, 5, 15 min): {_load()}")
    archive = [(n.topic, n.payload) for n in read_archive(args.archive)]
    xml = [(t, p) for t, p in archive if p.lstrip()[:1] == b"<" and len(p) < 200_000]
    topics = sorted({t for t, _ in xml[: args.count]})
    server = PostgresServer(url=args.url) if args.url else start_postgres()
    broker = TansuBroker()
    broker.start()
    GROUP[0] = f"ha-{random.randrange(1 << 30):x}"
    try:
        with tempfile.TemporaryDirectory() as tmp, loopback.serve() as hook:
            work = Path(tmp)
            rules = catch_all(work / "rules", topics, hook.url)
            ensure_topics(broker.bootstrap, topics, partitions=1)
            url = server.fresh_database()
            team = tuple(
                ServiceProcess(work / name, broker.bootstrap, rules, store=url, out=work / "out")
                for name in ("a", "b")
            )
            assert len(team) == 2
            for service in team:
                service.start("--group-id", GROUP[0], "--start", "earliest")
            wait_until(lambda: active_of(team), 60, "an active service")
            probes = unique(xml, args.probes, "probe")
            probes = [(t, p) for t, p in probes if t in topics]
            latency(team, broker.bootstrap, probes, args.pace)
            failover(team, broker.bootstrap, unique(xml, args.count, "ha"), args, hook)
            for service in team:
                service.close()
            close_pool(url)
        engine_ratio(args, server)
        print(f"load average at end (1, 5, 15 min): {_load()}")
    finally:
        broker.close()
        server.stop()


def latency(
    team: tuple[ServiceProcess, ...], bootstrap: str, probes: list[Item], pace: float
) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    sent: dict[tuple[str, int, int], float] = {}
    produce(producer, probes, pace, sent)
    stored = wait_until(lambda: _all_seen(team, sent), 120, "the probes' decisions")
    gaps = [(stored[k] - s) * 1000 for k, s in sent.items()]
    print(
        f"latency without kills, produce -> decision stored on PostgreSQL ({len(gaps)} "
        f"notices, one every {pace * 1000:.0f} ms): p50 {percentile(gaps, 0.5):.1f} ms, "
        f"p99 {percentile(gaps, 0.99):.1f} ms (target p50 <= 20 ms)"
    )


def _all_seen(
    team: tuple[ServiceProcess, ...], sent: dict[tuple[str, int, int], float]
) -> dict[tuple[str, int, int], float] | None:
    seen = notice_times(team)
    return seen if all(k in seen for k in sent) else None


def failover(
    team: tuple[ServiceProcess, ServiceProcess],
    bootstrap: str,
    items: list[Item],
    args: argparse.Namespace,
    hook: Any,
) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    sent: dict[tuple[str, int, int], float] = {}
    kills: list[float] = []
    topics = sorted({t for t, _ in items})
    killer = threading.Thread(target=kill_loop, args=(team, topics, args.kills, kills))
    killer.start()
    produce(producer, items, args.stream_pace, sent)
    killer.join()
    wait_until(lambda: _all_seen(team, sent), 300, "every notice's decision")
    wait_until(team[0].actions_settled, 300, "every webhook")
    stored = {
        (t, p, o) for t, p, o in team[0].sql_rows('SELECT topic, partition, "offset" FROM notices')
    }
    lost = [k for k in sent if k not in stored]
    acted, dropped = honoured(hook.seen)
    planned = {k for (k,) in team[0].sql_rows("SELECT idempotency_key FROM actions")}
    seen = notice_times(team)
    gaps = {k: seen[k] - s for k, s in sent.items()}
    worst = max(gaps.values())
    print(
        f"failover: {len(sent)} notices produced, {len(sent) - len(lost)} stored, "
        f"{len(lost)} lost (target 0); {args.kills} kill -9 of the active service "
        f"({len(kills)} done)"
    )
    print(
        f"  webhooks: {len(hook.seen)} requests for {len(planned)} planned actions; the receiver "
        f"(honours Idempotency-Key) acted once on {len(acted)} keys, missed "
        f"{len(planned - set(acted))} (target 0), acted twice on 0 (target 0): it dropped "
        f"{dropped} resends of a key already delivered (a kill -9 between the request and its "
        f"stored outcome; a receiver that ignores the key would act on those twice)"
    )
    print(
        f"  longest produce -> decision stored: {worst:.1f} s (target <= session timeout "
        f"{SESSION_MS / 1000:.0f} s + 5 s = {SESSION_MS / 1000 + 5:.0f} s); "
        f"p50 {percentile(list(gaps.values()), 0.5) * 1000:.0f} ms"
    )


def _load() -> str:
    """The machine's load: the figures are wall times on a machine others may share."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


def honoured(seen: list[Any]) -> tuple[set[str], int]:
    """What a receiver that honours Idempotency-Key does with the requests, in arrival order:
    acts on the first of each key, drops the others; (the keys acted on, the drops)."""
    acted: set[str] = set()
    dropped = 0
    for request in seen:
        key = request.headers.get("Idempotency-Key") or f"no key {id(request)}"
        if key in acted:
            dropped += 1
        acted.add(key)
    return acted, dropped


def engine_ratio(args: argparse.Namespace, server: PostgresServer) -> None:
    """bench/engine.py's ratios on both stores, each against its own floor (fewer notices)."""
    rules = load_ruleset([ROOT / "examples" / "rules"])
    notices = read_archive(args.archive)[: args.engine_limit]
    bare = floor(rules, notices)
    with tempfile.TemporaryDirectory() as tmp:
        stored = store_floor(notices, Path(tmp))
        sqlite = engine_timed(rules, notices, Path(tmp) / "e.sqlite", Path(tmp) / "out").wall
    print(
        f"engine benchmark ({len(notices)} notices, example rules): SQLite engine "
        f"{sqlite:.2f} s, engine / (parse + store every notice once) "
        f"{sqlite / (bare.wall + stored.wall):.2f}"
    )
    beside = PostgresBeside(server.fresh_database)
    beside.run(0, rules, notices, bare, sqlite_wall=sqlite)


if __name__ == "__main__":
    main()
