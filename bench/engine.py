"""The engine on a month of real GCN traffic, against the bare-parse floor.

Feeds every notice of ../shared/corpus/archives/gcn-voevents-2023-11.tar.bz2 (about 30k)
through the example rules, in notice-time order, into a real SQLite store, as a replay does
(`Engine.process_many`, in a replay's transactions). The archive is read
into memory first, so only the engine is timed. The floor is parsing just the notices some
trigger subscribes to, with lxml or json and nothing else, plus writing every notice into
SQLite once (the engine must store each notice durably first), measured in the same run,
just before the engine and just after it (the mean of the two: the machine's pace drifts).

Prints notices per second, engine time / (parse + store floor) (target <= 2.0, median of
--runs) in wall time and in CPU time (this process only: steadier on a shared machine), and
the resident memory after each quarter of the month (it should stay flat).

With --postgresql it also runs the engine into a PostgreSQL store, against PostgreSQL's own
floor measured in the same run (the parse floor plus one bare INSERT per notice into a plain
table, in one transaction, on a connection of the store's pool), and prints that ratio beside
SQLite's. The server is a throwaway cluster started as the tests start theirs
(tests/postgres_cluster.py), or the one at --postgresql URL (a fresh database per run). CPU
time there is this process's plus, when the server runs on this machine, its backend's.

    python bench/engine.py [--runs 3] [--archive PATH] [--rules examples/rules]
                           [--postgresql [URL]]
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree
from shared_data import ARCHIVE, require, require_archive

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.sql: the floor's plain SQLite table

from tests.sql import backend_pid, plain_table_writer, postgres_table_writer  # noqa: E402
from tracerules.rules.compile import RuleSet, load_ruleset  # noqa: E402
from tracerules.rules.functions import warm_up  # noqa: E402
from tracerules.runtime.engine.engine import Engine  # noqa: E402
from tracerules.runtime.engine.replay import Batches  # noqa: E402
from tracerules.runtime.sources.files import iter_notices  # noqa: E402
from tracerules.runtime.sources.notices import Notice  # noqa: E402
from tracerules.runtime.store.store import Store  # noqa: E402


def read_archive(path: Path) -> list[Notice]:
    notices = list(iter_notices([path]))
    notices.sort(key=lambda n: n.received)
    # Number them as Kafka would, so dedup by offset and by payload both apply.
    return [
        Notice(n.topic, n.payload, 0, i, n.created, n.received, n.source, n.name, n.digest)
        for i, n in enumerate(notices)
    ]


class Timer:
    """Wall time and this process's CPU time: on a shared machine the CPU time is what the
    code costs, whatever else runs; the wall time is what a user waits. Also the bytes this
    process handed to write() meanwhile (the WAL and its copy into the database file): the
    same on a busy machine as on a quiet one."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu, self.written = time.perf_counter(), time.process_time(), written()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.written = written() - self.written


def written() -> int:
    """Bytes this process has written so far (`wchar` of /proc/self/io; 0 elsewhere)."""
    try:
        lines = Path("/proc/self/io").read_text().splitlines()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in lines if line.startswith("wchar:")), 0)


def floor(rules: RuleSet, notices: list[Notice]) -> Timer:
    """Parse the subscribed notices with lxml or json, and nothing else."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    with Timer() as timer:
        _parse_all(rules, notices, parser)
    return timer


def _parse_all(rules: RuleSet, notices: list[Notice], parser: etree.XMLParser) -> None:
    for notice in notices:
        triggers = rules.by_topic.get(notice.topic)
        if not triggers:
            continue
        try:
            if triggers[0].format == "xml":
                etree.fromstring(notice.payload, parser)
            else:
                json.loads(notice.payload)
        except (etree.XMLSyntaxError, ValueError):
            pass


def mean_of(a: Timer, b: Timer) -> Timer:
    """The mean of two measurements of the same work."""
    mean = Timer()
    mean.wall, mean.cpu = (a.wall + b.wall) / 2, (a.cpu + b.cpu) / 2
    mean.written = (a.written + b.written) // 2
    return mean


def rss_mb() -> float:
    """Resident memory now (not the peak), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def store_floor(notices: list[Notice], folder: Path, name: str = "floor") -> Timer:
    """Writing every notice into SQLite once, in one transaction: the least a durable store
    costs. The engine must do this too (behaviour.md: store the notice durably first)."""
    write = plain_table_writer(folder / f"{name}.sqlite")
    with Timer() as timer:
        write((x.topic, x.offset, x.received, x.payload) for x in notices)
    return timer


def engine_run(rules: RuleSet, notices: list[Notice], folder: Path) -> tuple[Timer, list[float]]:
    store = Store(folder / "bench.sqlite", bulk=True)
    engine = Engine(rules, store, out_dir=folder / "out", dry_run=True)
    quarter = max(1, len(notices) // 4)
    batches = Batches(store)  # a replay's transactions
    memory = []
    gc.collect()
    with Timer() as timer, store.batch():
        for i, (notice, _) in enumerate(zip(notices, engine.process_many(notices), strict=True), 1):
            batches.add(notice)
            if i % quarter == 0:
                memory.append(rss_mb())
    store.close()
    return timer, memory


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    parser.add_argument("--rules", type=Path, default=ROOT / "examples" / "rules")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--postgresql",
        nargs="?",
        const="",
        default=None,
        metavar="URL",
        help="also on PostgreSQL: a throwaway server, or the one at URL",
    )
    args = parser.parse_args()
    require_archive(args.archive)
    require(args.rules, "the rules folder", "--rules PATH")
    rules = load_ruleset([args.rules])
    # The imports the rules' functions need on first use (numpy, erfa: 0.1-0.5 s), done once
    # now as the service does at start, not inside the first run's timer.
    warm_up(rules.called_functions)
    notices = read_archive(args.archive)
    subscribed = sum(1 for n in notices if n.topic in rules.by_topic)
    print(
        f"{len(notices)} notices, {subscribed} on topics the {len(rules.triggers)} example "
        f"triggers read; RSS after loading the archive {rss_mb():.0f} MB"
    )
    ratios, durable, cpu, rates = [], [], [], []
    beside = None if args.postgresql is None else PostgresBeside.start(args.postgresql)
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            # The floor just before the engine and just after it, averaged: the machine's pace
            # drifts within a run, and a floor on one side alone takes the drift for the code.
            parse_before, store_before = floor(rules, notices), store_floor(notices, Path(tmp))
            engine, memory = engine_run(rules, notices, Path(tmp))
            bare = mean_of(parse_before, floor(rules, notices))
            stored = mean_of(store_before, store_floor(notices, Path(tmp), "after"))
        elapsed = engine.wall
        ratios.append(elapsed / bare.wall)
        durable.append(elapsed / (bare.wall + stored.wall))
        cpu.append(engine.cpu / (bare.cpu + stored.cpu))
        rates.append(len(notices) / elapsed)
        print(
            f"run {run + 1}: engine {elapsed:.2f} s ({len(notices) / elapsed:,.0f} notices/s, "
            f"CPU {engine.cpu:.2f} s); parse floor {bare.wall:.2f} s, ratio "
            f"{elapsed / bare.wall:.2f}; parse+store floor {bare.wall + stored.wall:.2f} s "
            f"(CPU {bare.cpu + stored.cpu:.2f} s), ratio {durable[-1]:.2f} (CPU {cpu[-1]:.2f}); "
            f"written {engine.written / 1e6:.0f} MB (floor {stored.written / 1e6:.0f} MB); "
            "RSS by quarter " + " ".join(f"{m:.0f}" for m in memory) + " MB"
        )
        if beside is not None:
            beside.run(run, rules, notices, bare, sqlite_wall=elapsed)
    print(
        f"median: {statistics.median(rates):,.0f} notices/s; engine / bare-parse floor "
        f"{statistics.median(ratios):.2f}; engine / (parse + store every notice once) "
        f"{statistics.median(durable):.2f} (target <= 2.0), in CPU time "
        f"{statistics.median(cpu):.2f}"
    )
    if beside is not None:
        beside.summary(len(notices))


# -- PostgreSQL beside SQLite (--postgresql) -------------------------------------------------


class ServerTimer(Timer):
    """A Timer that also takes the CPU time of one PostgreSQL backend (the server process
    that runs this connection's statements), read from /proc when the server runs here: the
    store's work is split between this process and that one. 0 when it cannot be read."""

    def __init__(self, backend_pid: int) -> None:
        self.backend_pid = backend_pid
        self.server = 0.0

    def __enter__(self) -> ServerTimer:
        self.server = process_cpu(self.backend_pid)
        super().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self.server = process_cpu(self.backend_pid) - self.server


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process `pid` (0 if it is not on this machine)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_store_floor(notices: list[Notice], url: str) -> ServerTimer:
    """One bare INSERT per notice into a plain PostgreSQL table, in one transaction, on a
    connection of the store's own pool: the least a PostgreSQL store costs (tests/sql.py's
    `postgres_table_writer` says how)."""
    pid, write = postgres_table_writer(url)
    with ServerTimer(pid) as timer:
        write((x.topic, x.offset, x.received, x.payload) for x in notices)
    return timer


def engine_timed(rules: RuleSet, notices: list[Notice], location: str | Path, out: Path) -> Timer:
    """The engine over every notice into the store at `location` (a SQLite file or a
    PostgreSQL URL), in a replay's transactions. On PostgreSQL a ServerTimer."""
    store = Store(location, bulk=True)
    batches = Batches(store)
    engine = Engine(rules, store, out_dir=out, dry_run=True)
    timer = ServerTimer(backend_pid(store)) if store.is_postgresql else Timer()
    gc.collect()
    with timer, store.batch():
        for notice, _ in zip(notices, engine.process_many(notices), strict=True):
            batches.add(notice)
    store.close()
    return timer


def postgres_databases(url: str) -> tuple[Callable[[], str], Callable[[], None]]:
    """A source of fresh databases on the server at `url` (empty: a throwaway one, stopped
    at exit), and how to stop it."""
    sys.path.insert(0, str(ROOT))
    from tests.postgres_cluster import PostgresServer, start_postgres

    server = PostgresServer(url=url) if url else start_postgres()
    return server.fresh_database, server.stop


@dataclass
class PostgresBeside:
    """The engine on PostgreSQL, each run against PostgreSQL's own floor of that run."""

    fresh: Callable[[], str]
    rates: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    slower: list[float] = field(default_factory=list)

    @classmethod
    def start(cls, url: str) -> PostgresBeside:
        fresh, stop = postgres_databases(url)
        atexit.register(stop)
        return cls(fresh)

    def run(
        self, run: int, rules: RuleSet, notices: list[Notice], bare: Timer, sqlite_wall: float
    ) -> None:
        from tracerules.runtime.store.postgres import close_pool

        url = self.fresh()
        stored = postgres_store_floor(notices, url)
        with tempfile.TemporaryDirectory() as tmp:
            engine = engine_timed(rules, notices, url, Path(tmp) / "out")
        close_pool(url)
        assert isinstance(engine, ServerTimer)
        wall_floor = bare.wall + stored.wall
        cpu_floor = bare.cpu + stored.cpu + stored.server
        self.rates.append(len(notices) / engine.wall)
        self.ratios.append(engine.wall / wall_floor)
        self.cpu.append((engine.cpu + engine.server) / cpu_floor)
        self.slower.append(engine.wall / sqlite_wall)
        print(
            f"run {run + 1} PostgreSQL: engine {engine.wall:.2f} s ({self.rates[-1]:,.0f} "
            f"notices/s, CPU {engine.cpu:.2f} s here + {engine.server:.2f} s in the server); "
            f"parse + PostgreSQL store floor {wall_floor:.2f} s (bare INSERTs {stored.wall:.2f} "
            f"s; CPU {bare.cpu + stored.cpu:.2f} s here + {stored.server:.2f} s in the server), "
            f"ratio {self.ratios[-1]:.2f} (CPU {self.cpu[-1]:.2f}); "
            f"{self.slower[-1]:.2f} times SQLite's engine time"
        )

    def summary(self, count: int) -> None:
        print(
            f"median PostgreSQL: {statistics.median(self.rates):,.0f} notices/s; engine / "
            f"(parse + INSERT every notice once into PostgreSQL) "
            f"{statistics.median(self.ratios):.2f}, in CPU time (here + server) "
            f"{statistics.median(self.cpu):.2f}; PostgreSQL / SQLite engine time "
            f"{statistics.median(self.slower):.2f} ({count} notices)"
        )


if __name__ == "__main__":
    main()
