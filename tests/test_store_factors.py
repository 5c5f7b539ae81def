"""A decision's factors, one JSON column of its row since schema 8: written as the engine
decided them, read back the same on both databases, from stores of schema 7 (a factors
table) read as they are, upgraded in place or imported from their export, and a damaged
value read as one UNKNOWN factor rather than an error."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.sql import old_store, run_at, sql_run, sql_value, stored_factors
from tracerules.dsl.values import Vote
from tracerules.runtime.engine.decisions import Factor
from tracerules.runtime.store import history, transfer
from tracerules.runtime.store.evaluation import UNREADABLE, factors_text
from tracerules.runtime.store.schema import SCHEMA_VERSION
from tracerules.runtime.store.store import Store

# What a schema-7 service stored: out of order on purpose (a table has no order but its
# `position`), with text that JSON must escape, an inherited vote and a missing detail.
FACTORS = (
    Factor("expiry", Vote.PASS, False, None, "age 2 min <= expiry 1 day"),
    Factor("bright", Vote.MAYBE, True, 'rate_snr is missing: no "Rate" param', "snr=5.1 \u03c3"),
    Factor("localised", Vote.UNKNOWN, False, "error is missing: ∞\nline two", None),
)
BEFORE_8 = SCHEMA_VERSION - 1


def _schema_7_store(location: str | Path) -> None:
    """A store as a schema-7 service left it: an event with two decisions, the first with
    three factors in the factors table, the second (an error) with none."""
    old_store(location, BEFORE_8)  # notice 1
    decision = (
        "INSERT INTO decisions (id, event, trigger, event_id, notice_id, seq, source, at, mode, "
        "votes, conclusion, error, rule_file, rule_revision) "
        "VALUES (?, 1, 'grb', 'E1', 1, ?, 'notice', 1.0, 'live', ?, ?, ?, 'r.yaml', 'abc')"
    )
    factor = (
        "INSERT INTO factors (decision, position, name, vote, inherited, reason, detail) "
        "VALUES (7, ?, ?, ?, ?, ?, ?)"
    )
    run_at(
        location,
        [
            (
                "INSERT INTO events (id, trigger, event_id, first_seen, last_seen, notices) "
                "VALUES (1, 'grb', 'E1', 1.0, 1.0, 2)",
                (),
            ),
            (decision, (7, 1, "MAYBE", "FAIL", None)),
            (decision, (8, 2, "UNKNOWN", "ERROR", "the trigger failed")),
            *(
                (factor, (i, f.name, f.vote.value, int(f.inherited), f.reason, f.detail))
                for i, f in reversed(list(enumerate(FACTORS)))
            ),
        ],
    )


def _factors_by_decision(store: Store) -> dict[int | None, tuple[Factor, ...]]:
    return {d.id: d.factors for v in history.events(store) for d in v.decisions}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_schema_7_store_is_read_as_it_is_then_upgraded_with_the_same_factors(
    store_location: str | Path,
) -> None:
    _schema_7_store(store_location)
    reader = Store(store_location, read_only=True)  # an older service still owns it
    assert reader.version() == BEFORE_8 and reader.has_table("factors")
    assert _factors_by_decision(reader) == {7: FACTORS, 8: ()}
    reader.close()

    store = Store(store_location)  # upgrades: the factors move into their decisions
    assert store.version() == SCHEMA_VERSION
    assert not store.has_table("factors")
    assert _factors_by_decision(store) == {7: FACTORS, 8: ()}
    # stored exactly as the engine stores factors it decided, readable by plain SQL
    assert sql_value(store, "SELECT factors FROM decisions WHERE id=7") == factors_text(FACTORS)
    assert sql_value(store, "SELECT factors FROM decisions WHERE id=8") is None
    assert stored_factors(store, 7) == [(f.name, f.vote.value, f.inherited) for f in FACTORS]
    store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_damaged_factor_of_a_schema_7_store_upgrades_and_reads_as_damaged(
    store_location: str | Path,
) -> None:
    _schema_7_store(store_location)
    run_at(store_location, [("UPDATE factors SET vote='PERHAPS' WHERE decision=7", ())])
    store = Store(store_location)  # the upgrade moves the rows as they are: it does not fail
    assert store.version() == SCHEMA_VERSION
    (factor,) = _factors_by_decision(store)[7]
    assert factor.name == UNREADABLE and factor.vote is Vote.UNKNOWN
    assert stored_factors(store, 7)[0][:2] == ("expiry", "PERHAPS")  # kept, not lost
    store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_export_of_a_schema_7_store_imports_with_its_factors(
    store_location: str | Path, tmp_path: Path
) -> None:
    old = tmp_path / "old.sqlite"
    _schema_7_store(old)
    out = io.StringIO()
    reader = Store(old, read_only=True)
    exported = transfer.export(reader, out)
    reader.close()
    assert exported.rows["factors"] == 3

    store = Store(store_location)
    imported = transfer.import_rows(store, out.getvalue().splitlines())
    assert imported.rows["factors"] == 3 and imported.rows["decisions"] == 2
    assert _factors_by_decision(store) == {7: FACTORS, 8: ()}
    assert sql_value(store, "SELECT factors FROM decisions WHERE id=7") == factors_text(FACTORS)
    store.close()


@pytest.mark.parametrize(
    "damage",
    [
        "not json",
        "{}",
        "[1, 2]",
        '[["a", "PASS", false, null]]',  # four fields, not five
        '[["a", "PERHAPS", false, null, null]]',  # no such vote
        '[["a", "PASS", "false", null, null]]',  # inherited neither true nor false
        '[["a", "PASS", false, 7, null]]',  # a reason that is not text
        "[" * 100_000 + "]" * 100_000,  # nested past any stack
        '"' + "x" * 1_000_000 + '"',  # one huge string
    ],
)
@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_damaged_factors_value_is_read_as_one_unknown_factor(
    store_location: str | Path, damage: str
) -> None:
    _schema_7_store(store_location)
    store = Store(store_location)
    sql_run(store, "UPDATE decisions SET factors=? WHERE id=7", (damage,))
    read = _factors_by_decision(store)
    assert read[8] == ()  # the other decision of the event is read as it was
    (factor,) = read[7]
    assert factor.name == UNREADABLE and factor.vote is Vote.UNKNOWN
    assert factor.reason is not None and "unreadable" in factor.reason
    store.close()


_ROW = {
    "decision": 7,
    "position": 3,
    "name": "a",
    "vote": "PASS",
    "inherited": 0,
    "reason": None,
    "detail": None,
}


@pytest.mark.parametrize(
    "row, why",
    [
        ({"decision": 7, "position": 0, "name": "a", "vote": "MAYBE?"}, "columns"),
        ({**_ROW, "extra": 1}, "columns"),
        ({**_ROW, "vote": "PERHAPS"}, "not a valid Vote"),
        ({**_ROW, "decision": "7"}, "not a number"),
        ({**_ROW, "name": 3}, "without a name"),
        ({**_ROW, "inherited": "yes"}, "inherited neither"),
        ({**_ROW, "detail": 2.5}, "not text"),
        ({**_ROW, "decision": 99}, "does not hold"),  # no such decision in the export
    ],
)
@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_hostile_factors_row_of_an_old_export_imports_nothing(
    store_location: str | Path, tmp_path: Path, row: dict[str, object], why: str
) -> None:
    old = tmp_path / "old.sqlite"
    _schema_7_store(old)
    out = io.StringIO()
    reader = Store(old, read_only=True)
    transfer.export(reader, out)
    reader.close()
    lines = out.getvalue().splitlines()
    lines.append(transfer.json.dumps({"table": "factors", "row": row}))

    store = Store(store_location)
    with pytest.raises(transfer.TransferError, match=why):
        transfer.import_rows(store, lines)
    assert sql_value(store, "SELECT count(*) FROM decisions") == 0
    store.close()
