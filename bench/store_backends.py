"""The engine benchmark on both stores: SQLite beside PostgreSQL, against the same floor.

Feeds the month archive (as bench/engine.py does, in notice-time order, numbered as Kafka
would) through the example rules into a SQLite file and into a PostgreSQL database, and
prints, per backend, notices per second and the ratio engine time / bare-parse floor
(measured in the same run), medians of --runs; then PostgreSQL's time over SQLite's.

PostgreSQL is a throwaway cluster started like the tests' (tests/postgres_server.py: initdb
and pg_ctl, as the postgres user under root), or the server at --url. Its fsync is off, as
SQLite's is in a bulk store: both measure the store's statements, not the disk.

    python bench/store_backends.py [--runs 3] [--limit N] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from engine import floor, read_archive
from shared_data import ARCHIVE, require, require_archive

from tracerules.rules.compile import RuleSet, load_ruleset
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.sources.notices import Notice
from tracerules.runtime.store.postgres import close_pool
from tracerules.runtime.store.store import Store

ROOT = Path(__file__).resolve().parents[1]


def engine_seconds(rules: RuleSet, notices: list[Notice], location: str | Path, out: Path) -> float:
    """The engine over every notice, committing every 500 as a replay does."""
    store = Store(location, bulk=True)
    engine = Engine(rules, store, out_dir=out, dry_run=True)
    start = time.perf_counter()
    with store.batch():
        for i, notice in enumerate(notices, 1):
            engine.process(notice)
            if i % 500 == 0:
                store.commit_batch()
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed


def postgres_databases(url: str | None) -> tuple[Callable[[], str], Callable[[], None]]:
    """A source of fresh databases, and how to stop the server when we started it."""
    sys.path.insert(0, str(ROOT))
    from tests.postgres_server import PostgresServer, start_postgres

    server = PostgresServer(url=url) if url else start_postgres()
    return server.fresh_database, server.stop


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    parser.add_argument("--rules", type=Path, default=ROOT / "examples" / "rules")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="only the first N notices")
    parser.add_argument("--url", default=None, help="an existing PostgreSQL server's URL")
    args = parser.parse_args()
    require_archive(args.archive)
    require(args.rules, "the rules folder", "--rules PATH")
    rules = load_ruleset([args.rules])
    notices = read_archive(args.archive)[: args.limit]
    fresh, stop = postgres_databases(args.url)
    times: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
    ratios: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
    print(f"{len(notices)} notices, {len(rules.triggers)} example triggers")
    try:
        for run in range(args.runs):
            bare = floor(rules, notices).wall  # wall time: PostgreSQL works in its own process
            with tempfile.TemporaryDirectory() as tmp:
                url = fresh()
                for backend, location in (("sqlite", Path(tmp) / "b.sqlite"), ("postgresql", url)):
                    elapsed = engine_seconds(rules, notices, location, Path(tmp) / "out")
                    times[backend].append(elapsed)
                    ratios[backend].append(elapsed / bare)
                    print(
                        f"run {run + 1} {backend:10}: {elapsed:6.2f} s "
                        f"({len(notices) / elapsed:,.0f} notices/s), ratio to the parse floor "
                        f"({bare:.2f} s) {elapsed / bare:.2f}"
                    )
                close_pool(url)
    finally:
        stop()
    for backend, seconds in times.items():
        median = statistics.median(seconds)
        print(
            f"median {backend:10}: {len(notices) / median:,.0f} notices/s; engine / bare-parse "
            f"floor {statistics.median(ratios[backend]):.2f}"
        )
    slower = statistics.median(times["postgresql"]) / statistics.median(times["sqlite"])
    print(f"PostgreSQL / SQLite engine time: {slower:.2f}")


if __name__ == "__main__":
    main()
