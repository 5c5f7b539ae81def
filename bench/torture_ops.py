"""The operating torture (issue 11): secrets, a failing destination, kill -9 during actions.

Starts a Tansu broker on loopback and runs `tracerules run` as a child process:

1. secrets: eight secret shapes (newline, non-ASCII, quotes, %, long, base64-like, URL,
   short) used by webhooks (headers, query, body, against an API that echoes them back),
   commands and a plugin script printing their environment and reprs; then counts every
   spelling of them in the store dump (sqlite3 .dump), the logs, `events show`, the
   dashboard's pages, the dry-run report and the products. Target: all 0.
2. one failing destination: the same notices and rules twice, the second webhook healthy the
   first time and answering 500 then hanging `--hang` seconds the second; the other
   destinations' action delay (planned -> done) and the ingestion latency (Kafka create
   time -> decision), p50 and p99.
   Targets: delay p99 <= 1 s with the failing destination; ingestion p99 unchanged.
3. kill -9 during actions, `--trials` times: commands that leave start/end marks; then a
   last run to the end. Targets: 0 lost notices, 0 actions run while an earlier copy of
   them was alive (reruns after a kill are expected and counted).

    python bench/torture_ops.py [--trials 20] [--notices 40] [--pace 0.25] [--hang 60]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kafka_broker import TansuBroker  # noqa: E402
from tests.service_harness import Publisher, ServiceProcess, ensure_topics  # noqa: E402
from tests.torture_support import (  # noqa: E402
    SECRET_ENV,
    Endpoint,
    destination_run,
    kill_trials,
    leak_counts,
    secret_rules,
    swift_copies,
    wait_attempted,
)
from tracerules.rules.compile import load_ruleset  # noqa: E402
from tracerules.runtime.service.health import HEARTBEAT_TOPIC  # noqa: E402

SERVICE_RULES = ROOT / "tests" / "data" / "service_rules"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def secrets(work: Path, bootstrap: str) -> dict[str, int]:
    os.environ.update(SECRET_ENV)
    api = Endpoint("echo")
    try:
        rules = secret_rules(work / "rules", api.url)
        service = ServiceProcess(work, bootstrap, rules=rules)
        try:
            service.start("--start", "latest")
            service.wait_assigned()
            produced = Publisher(bootstrap).send(swift_copies(4, "secrets"))
            wait_attempted(service, produced)
            service.stop()
        finally:
            service.close()
        return leak_counts(work, service.store, service.out, rules)
    finally:
        api.close()


def destinations(work: Path, bootstrap: str, count: int, pace: float, hang: float) -> None:
    good, healthy = Endpoint("echo"), Endpoint("echo")
    bad = Endpoint("bad", fail=1, hang=hang)
    try:  # the same rules both times: only the second destination's behaviour differs
        alone = destination_run(work / "alone", bootstrap, healthy.url, good.url, count, pace)
        beside = destination_run(work / "beside", bootstrap, bad.url, good.url, count, pace)
    finally:
        for endpoint in (bad, healthy, good):
            endpoint.close()
    for name, run in (("second destination healthy", alone), ("500 then hanging", beside)):
        delays, ingestion = run["delays"], run["ingestion"]
        print(
            f"  {name:<32} action delay p50 {statistics.median(delays) * 1e3:7.1f} ms  "
            f"p99 {percentile(delays, 99) * 1e3:7.1f} ms  max {max(delays) * 1e3:7.1f} ms  "
            f"| ingestion p50 {statistics.median(ingestion) * 1e3:6.1f} ms  "
            f"p99 {percentile(ingestion, 99) * 1e3:6.1f} ms  ({len(delays)} actions)"
        )
    ratio = percentile(beside["ingestion"], 99) / max(percentile(alone["ingestion"], 99), 1e-6)
    worst = percentile(beside["delays"], 99)
    print(f"  delay p99 with a failing destination: {worst:.3f} s (target <= 1 s)")
    print(f"  ingestion p99 ratio with/without: {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="kill -9 trials")
    parser.add_argument("--notices", type=int, default=40, help="notices per destination run")
    parser.add_argument("--pace", type=float, default=0.25, help="seconds between notices")
    parser.add_argument("--hang", type=float, default=60.0, help="the failing API's hang, s")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tracerules-torture-ops-"))
    topics = load_ruleset([SERVICE_RULES]).subscribed_topics | {HEARTBEAT_TOPIC}
    with TansuBroker(log_path=work / "broker.log") as broker:
        ensure_topics(broker.bootstrap, topics)
        started = time.monotonic()
        counts = secrets(work / "secrets", broker.bootstrap)
        print("8 secret shapes -> occurrences (every spelling):")
        for place, n in counts.items():
            print(f"  {place:<12} {n}")
        print(
            f"one destination answering 500 then hanging {args.hang:g} s ({args.notices} notices):"
        )
        destinations(work / "dest", broker.bootstrap, args.notices, args.pace, args.hang)
        figures = kill_trials(work / "kills", broker.bootstrap, args.trials)
        print(f"kill -9 during actions, {figures['trials']} trials, {figures['notices']} notices:")
        print(
            f"  lost notices {figures['lost']}, actions run beside a live copy "
            f"{figures['overlapping']}, actions never run {figures['not run']}, "
            f"reruns after a kill {figures['reruns']}"
        )
        print(f"({time.monotonic() - started:.0f} s; work in {work})")


if __name__ == "__main__":
    main()
