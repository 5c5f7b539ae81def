"""A replay into a store that already holds some of its notices: the run that meets them.

`Store.add_notices` adds a run of notices in one statement, and when the run meets a notice
the store holds already (a replay over an earlier one, a re-sent payload) it deletes the rows
it added and adds the run notice by notice. Each DELETE makes SQLite look for the rows that
point at the deleted notice (a duplicate's `duplicate_of`, decisions, events, actions); before
schema 7 indexed those columns it read every stored notice, payload and all, for each row.

Stores the first `--stored` notices of the month archive through the engine (decisions and
all), then times a run of 1000 new notices whose last one is stored already, against the
floor of the same run without that notice (nothing to undo), in fresh copies of the same store.

`--without-indexes` drops schema 7's indexes from the store first, to show what they save
(about 40 s a run for 20,000 stored notices: give it --runs 1).

    python bench/store_undo.py [--stored 20000] [--runs 3] [--without-indexes] [--archive PATH]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from engine import read_archive
from shared_data import ARCHIVE, require_archive

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.sql import sql_run  # noqa: E402
from tracerules.rules.compile import load_ruleset  # noqa: E402
from tracerules.runtime.engine.engine import Engine  # noqa: E402
from tracerules.runtime.sources.notices import Notice  # noqa: E402
from tracerules.runtime.store.store import Store  # noqa: E402

RUN = 1000
SCHEMA_7_INDEXES = (
    "notices_duplicates",
    "decisions_by_notice",
    "event_notices_by_notice",
    "actions_by_notice",
)


def timed_run(template: Path, run: list[Notice]) -> float:
    """Seconds to add the run to a fresh copy of the store at `template`, in one batch."""
    copy = template.with_name("copy.sqlite")
    shutil.copyfile(template, copy)
    store = Store(copy, bulk=True)
    items = [(notice, "unsubscribed") for notice in run]
    started = time.perf_counter()
    with store.batch():
        store.add_notices(items)
    elapsed = time.perf_counter() - started
    store.close()
    copy.unlink()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    parser.add_argument("--stored", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--without-indexes", action="store_true")
    args = parser.parse_args()
    require_archive(args.archive)
    rules = load_ruleset([ROOT / "examples" / "rules"])
    notices = read_archive(args.archive)
    stored, rest = notices[: args.stored], notices[args.stored :]
    fresh = [n for n in rest if n.topic not in rules.by_topic][: RUN - 1]
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "store.sqlite"
        store = Store(template, bulk=True)
        engine = Engine(rules, store, out_dir=Path(tmp) / "out", dry_run=True)
        with store.batch():
            for _ in engine.process_many(stored):
                pass
        for index in SCHEMA_7_INDEXES if args.without_indexes else ():
            sql_run(store, f"DROP INDEX {index}")
        store.close()
        without = " (schema 7's indexes dropped)" if args.without_indexes else ""
        print(f"store: {len(stored)} notices of the month, evaluated by the example rules{without}")
        undone, clean = [], []
        for _ in range(args.runs):
            clean.append(timed_run(template, fresh))
            undone.append(timed_run(template, [*fresh, stored[0]]))
    print(
        f"a run of {RUN} new notices: {statistics.median(clean) * 1000:.0f} ms; the same run "
        f"meeting one stored notice (added, undone, added one by one): "
        f"{statistics.median(undone) * 1000:.0f} ms, ratio "
        f"{statistics.median(undone) / statistics.median(clean):.1f} (medians of {args.runs})"
    )


if __name__ == "__main__":
    main()
