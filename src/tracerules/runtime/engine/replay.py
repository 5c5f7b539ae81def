"""Replaying notices through the rules without acting: what dry-run, test and diff share.

Notices are replayed in notice order (`runtime.order`: the notice's own time, then what the
notice says of its place among others of that time, then its hash), each one's own time
standing in for "now"; how they were packed (folder, tar, NDJSON export, store) does not
change it. Live actions never run; with `products_dir`, file products (notice copies, sky
maps, requests written as files) are rendered there and nowhere else.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Final

from tracerules.rules.compile import RuleSet
from tracerules.runtime.engine.engine import Engine, Processed, stored_runs
from tracerules.runtime.service.health import record_products
from tracerules.runtime.sources.files import Skipped
from tracerules.runtime.sources.notices import Notice
from tracerules.runtime.sources.order import in_notice_order
from tracerules.runtime.store.store import Store

# A replay's transactions: bulk speed, bounded rollback. Each commit writes out every page
# its batch dirtied, and a notice's entry in the payload-hash index lands at a random place:
# batches of 500 rewrote most of that index each time, and a month's replay wrote 600 MB for
# 300 MB of notices; batches of 5000 write 390 MB (bench/engine.py). A batch also ends at
# BATCH_BYTES of payload, so that a run of LVK alerts (1-2 MB each) keeps it as small.
BATCH: Final = 5000
BATCH_BYTES: Final = 32 << 20


class Batches:
    """Commits a bulk store's batch (`Store.batch`) every BATCH notices or BATCH_BYTES of
    payload, whichever comes first."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.notices = self.bytes = 0

    def add(self, notice: Notice) -> None:
        self.notices += 1
        self.bytes += len(notice.payload)
        if self.notices >= BATCH or self.bytes >= BATCH_BYTES:
            self.store.commit_batch()
            self.notices = self.bytes = 0


@dataclass
class Replay:
    store: Store
    processed: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    tmp: tempfile.TemporaryDirectory[str] | None = None
    products: bool = False  # file products were rendered (the other actions never run)
    skipped: Skipped = field(default_factory=Skipped)  # files read that were not notices

    def count(self, status: str) -> None:
        self.processed += status != "duplicate"
        self.by_status[status] = self.by_status.get(status, 0) + 1

    def close(self) -> None:
        self.store.close()
        if self.tmp is not None:
            self.tmp.cleanup()


def replay(
    rules: RuleSet,
    notices: Iterable[Notice],
    *,
    store_path: Path | str | None = None,
    products_dir: Path | None = None,
    since: float | None = None,
    until: float | None = None,
    on_notice: Callable[[Notice, Processed], None] | None = None,
) -> Replay:
    """Evaluate `notices` in notice-time order in a fresh store (temporary unless given).

    Notices are first stored as they come, then evaluated in time order straight from the
    store, so memory stays flat however long the archive.
    """
    tmp = None
    if store_path is None:
        tmp = tempfile.TemporaryDirectory(prefix="tracerules-replay-")
        store_path = Path(tmp.name) / "replay.sqlite"
    store = Store(store_path, bulk=True)
    engine = Engine(
        rules,
        store,
        out_dir=products_dir or Path("."),
        dry_run=True,
        products=products_dir is not None,
    )
    result = Replay(store, tmp=tmp, products=products_dir is not None)
    if products_dir is not None:
        record_products(store, products_dir)
    try:
        with store.batch():
            _store_all(rules, store, notices, result)
            _evaluate_pending(engine, store, since, until, result, on_notice)
    except BaseException:
        result.close()  # a source that fails half-way leaves no store or folder behind
        raise
    return result


def _store_all(rules: RuleSet, store: Store, notices: Iterable[Notice], result: Replay) -> None:
    """Every notice stored first, as it comes, so that evaluation can go in time order; a few
    hundred at a time, in one statement (`Store.add_notices`)."""
    batches = Batches(store)
    for run in stored_runs(store, rules, notices):
        for notice, stored in run:
            if stored.status == "duplicate" or not stored.new:
                result.count("duplicate")
            elif stored.status == "unsubscribed":
                result.count("unsubscribed")
            batches.add(notice)
    store.commit_batch()


def _evaluate_pending(
    engine: Engine,
    store: Store,
    since: float | None,
    until: float | None,
    result: Replay,
    on_notice: Callable[[Notice, Processed], None] | None,
) -> None:
    """The stored notices evaluated in notice-time order, read back one at a time."""
    batches = Batches(store)
    for notice_id in _pending(store, since, until):
        notice = engine.stored_notice(notice_id)
        processed = engine.evaluate(notice, notice_id)
        result.count(processed.status)
        if on_notice is not None:
            on_notice(notice, processed)
        batches.add(notice)


def _pending(store: Store, since: float | None, until: float | None) -> list[int]:
    """Ids of the notices to evaluate, in notice order (ids only: a few bytes each)."""
    rows = store.new_notices(since, until)
    ordered: list[int] = []
    for _, same_time in groupby(rows, key=itemgetter(1)):
        ids = [r[0] for r in same_time]
        ordered += ids if len(ids) == 1 else _tie_broken(store, ids)
    return ordered


def _tie_broken(store: Store, ids: list[int]) -> list[int]:
    """Notices of one time in notice order: the order they were stored in (file names, tar
    members) must not decide which comes first. Ties are rare, so payloads are read only
    here."""
    rows = [store.notice(notice_id) for notice_id in ids]
    return in_notice_order(
        (r["id"], r["received"], bytes(r["payload"]), r["sha256"]) for r in rows if r is not None
    )
