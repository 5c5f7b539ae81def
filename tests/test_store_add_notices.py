"""Runs of notices stored in one statement (`Store.add_notices`, `Engine.process_many`): the
same ids, outcomes and rows as one `add_notice` (one `process`) per notice, the stored ones
(redeliveries, re-sends, reused offsets, replays of the same file) included."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.conftest import NOTICES, sequence
from tests.sql import query_plan, sql_rows, sql_value, vm_steps
from tracerules.rules.compile import RuleSet
from tracerules.runtime.engine.engine import RUN, RUN_BYTES, Engine, Processed, runs
from tracerules.runtime.sources.files import iter_notices, notice_from_file
from tracerules.runtime.sources.notices import Notice
from tracerules.runtime.store.store import Store, StoredNotice

ROWS = (
    'SELECT id, topic, partition, "offset", name, size, sha256, status, duplicate_of '
    "FROM notices ORDER BY id"
)


def runs_with_every_kind_of_stored_notice() -> list[list[Notice]]:
    gbm = sequence("fermi_gbm_json")  # numbered as Kafka would: partition 0, offsets 0...
    first, second = gbm[:2]
    reused = dataclasses.replace(second, partition=first.partition, offset=first.offset)
    resent = dataclasses.replace(gbm[2], offset=100)  # the same payload under a new offset
    replayed = notice_from_file(sorted((NOTICES / "icecube").glob("*.xml"))[0])
    other = sequence("fermi_gbm_voevent")[0]  # another topic
    return [
        gbm[:4],  # all new: one statement
        [gbm[4], first, gbm[5]],  # a redelivery in the middle
        [reused, gbm[6]],  # other bytes at a stored offset: kept without one
        [resent, reused, replayed],  # a re-send, and a redelivery of the reused-offset one
        [replayed, gbm[6]],  # the same file replayed again, a redelivery last
        [other, other],  # the same message twice in one run
    ]


def outcomes_and_rows(store: Store, results: list[StoredNotice]) -> tuple[object, ...]:
    rows = [tuple(r) for r in sql_rows(store, ROWS)]
    stats = [tuple(r) for r in sql_rows(store, "SELECT * FROM topic_stats ORDER BY topic")]
    return results, rows, stats


def test_a_run_gives_the_ids_outcomes_and_rows_of_one_notice_at_a_time(tmp_path: Path) -> None:
    one_by_one, in_runs = Store(tmp_path / "one.sqlite"), Store(tmp_path / "runs.sqlite")
    single, batched = [], []
    for run in runs_with_every_kind_of_stored_notice():
        single += [one_by_one.add_notice(notice, "unsubscribed") for notice in run]
        batched += in_runs.add_notices([(notice, "unsubscribed") for notice in run])
    assert {s.status for s in single} >= {"unsubscribed", "duplicate"}
    assert not all(s.new for s in single)  # the cases that undo the statement came up
    assert outcomes_and_rows(in_runs, batched) == outcomes_and_rows(one_by_one, single)


def test_a_run_of_new_notices_is_one_statement_not_one_insert_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path / "s.sqlite", bulk=True)
    gbm = sequence("fermi_gbm_json")
    store.add_notice(gbm[0])

    def one_at_a_time(*args: object, **kwargs: object) -> StoredNotice:
        raise AssertionError("a run of new notices was added one at a time")

    monkeypatch.setattr(store, "_add_in", one_at_a_time)
    with store.batch():
        stored = store.add_notices([(notice, "new") for notice in gbm[1:6]])
    assert [s.id for s in stored] == [2, 3, 4, 5, 6]
    assert [r["id"] for r in sql_rows(store, "SELECT id FROM notices WHERE status='new'")] == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]


def test_a_run_on_postgresql_is_added_one_notice_at_a_time(store: Store) -> None:
    run = runs_with_every_kind_of_stored_notice()[0]
    stored = store.add_notices([(notice, "unsubscribed") for notice in run])
    assert [s.status for s in stored] == ["unsubscribed"] * len(run)
    assert sorted(s.id for s in stored) == sorted(r["id"] for r in sql_rows(store, ROWS))


def summary(processed: list[Processed]) -> list[tuple[object, ...]]:
    return [
        (p.notice_id, p.status, p.reason, [(d.trigger, d.conclusion) for d in p.decisions])
        for p in processed
    ]


def test_process_many_decides_as_process_does_notice_by_notice(
    engine_rules: RuleSet, tmp_path: Path
) -> None:
    notices = sorted(iter_notices([NOTICES]), key=lambda n: (n.received, n.name or ""))
    notices += notices[:40]  # replayed again: found, not stored twice
    singles = Engine(engine_rules, Store(tmp_path / "one.sqlite"), out_dir=tmp_path, dry_run=True)
    many = Engine(engine_rules, Store(tmp_path / "many.sqlite"), out_dir=tmp_path, dry_run=True)
    one_by_one = [singles.process(notice) for notice in notices]
    at_once = list(many.process_many(notices))
    statuses = {p.status for p in one_by_one}
    assert statuses >= {"unsubscribed", "evaluated", "duplicate"}
    assert summary(at_once) == summary(one_by_one)
    decisions = "SELECT trigger, event_id, notice_id, seq, conclusion FROM decisions ORDER BY id"
    assert sql_rows(many.store, decisions) == sql_rows(singles.store, decisions)
    assert sql_rows(many.store, ROWS) == sql_rows(singles.store, ROWS)


def test_runs_end_at_a_thousand_notices_or_eight_megabytes_of_payload() -> None:
    small = [Notice("t", b"x" * 100, 0, i) for i in range(2500)]
    assert [len(run) for run in runs(small)] == [RUN, RUN, 500]
    huge = [Notice("t", b"x" * (3 << 20), 0, i) for i in range(7)]  # three LVK-sized alerts
    assert [len(run) for run in runs(huge)] == [3, 3, 1]
    assert sum(len(n.payload) for n in next(runs(huge))) <= RUN_BYTES + (3 << 20)
    assert list(runs([])) == []


def test_a_notice_twice_in_one_run_is_evaluated_once(engine_rules: RuleSet, tmp_path: Path) -> None:
    notice = next(n for n in iter_notices([NOTICES]) if n.topic in engine_rules.by_topic)
    engine = Engine(engine_rules, Store(tmp_path / "s.sqlite"), out_dir=tmp_path, dry_run=True)
    first, again = engine.process_many([notice, notice])  # stored together, then evaluated
    assert first.status == "evaluated" and first.decisions
    assert (again.notice_id, again.status, again.reason) == (
        first.notice_id,
        "duplicate",
        "already stored",
    )
    decided = "SELECT count(*) FROM decisions WHERE notice_id=?"
    assert sql_value(engine.store, decided, (first.notice_id,)) == len(first.decisions)


def undo_steps(folder: Path, stored_before: int) -> int:
    """The SQLite work of a run of 50 new notices and one stored already (so the 50 rows are
    added, then deleted again), in a store holding `stored_before` notices."""
    store = Store(folder / f"{stored_before}.sqlite", bulk=True)
    stored = [Notice("a", b"x" * 3000 + str(i).encode(), 0, i) for i in range(stored_before)]
    with store.batch():
        store.add_notices([(notice, "unsubscribed") for notice in stored])
    run = [Notice("b", str(i).encode(), 0, i) for i in range(50)] + [stored[0]]
    with store.batch(), vm_steps(store) as steps:
        added = store.add_notices([(notice, "unsubscribed") for notice in run])
    assert added[-1] == StoredNotice(1, False, "unsubscribed")
    assert [s.id for s in added[:-1]] == list(range(stored_before + 1, stored_before + 51))
    store.close()
    return steps[0]


def test_undoing_a_run_does_not_read_every_stored_notice(tmp_path: Path) -> None:
    """Deleting a row makes SQLite look for the rows that reference it (a duplicate's
    `duplicate_of`): by index, not by reading each stored notice past its payload. Without the
    index a run into a store of 20,000 notices took 39 s."""
    small, large = undo_steps(tmp_path, 100), undo_steps(tmp_path, 1000)
    assert large < 1.5 * small, (small, large)


@pytest.mark.parametrize(
    ("table", "index"),
    [
        ("decisions", "decisions_by_notice"),
        ("event_notices", "event_notices_by_notice"),
        ("actions", "actions_by_notice"),
        ("notices", "notices_duplicates"),
    ],
)
def test_rows_that_point_at_a_notice_are_found_by_index(
    tmp_path: Path, table: str, index: str
) -> None:
    column = "duplicate_of" if table == "notices" else "notice_id"
    plan = query_plan(Store(tmp_path / "s.sqlite"), f"SELECT * FROM {table} WHERE {column}=?", (1,))
    assert f"USING INDEX {index}" in plan or f"USING COVERING INDEX {index}" in plan, plan
