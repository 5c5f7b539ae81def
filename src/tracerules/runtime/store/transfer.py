"""Moving a store's whole history: export it as NDJSON, import it into another store.

This is how a team moves from its SQLite file to a shared PostgreSQL database without losing
history (`tracerules store export`, `tracerules store migrate --from`). Every table that
holds history is copied, row ids included, so that decisions still point at their notices,
actions at their decisions, and the services carry on with the same consumer group.

The export is one JSON object per line: first a header, then one line per row,
`{"table": ..., "row": {column: value}}`, tables in an order where every row comes after the
rows it references. Bytes (notice payloads) are `{"base64": ...}`. Columns are those of the
exporting store; an import fills columns a newer schema added with their defaults (NULL),
except an action's `finished_runs`, counted from its log as the migration that added it does,
and a decision's `factors`, made from the factors table of an export of schema 7 or before as
the migration to schema 8 makes them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Final

from tracerules.runtime.store.actions import finished_runs_in_log
from tracerules.runtime.store.dialect import store_errors
from tracerules.runtime.store.evaluation import stored_factor
from tracerules.runtime.store.read import marks
from tracerules.runtime.store.schema import SET_FACTORS, factor_columns
from tracerules.runtime.store.store import Store

FORMAT: Final = "tracerules-store-export"
FORMAT_VERSION: Final = 1
# Referenced tables before those that reference them; each ordered by its key.
TABLES: Final[tuple[tuple[str, str], ...]] = (
    ("notices", "id"),
    ("dead_letters", "notice_id"),
    ("topic_stats", "topic"),
    ("events", "id"),
    ("event_notices", "event, seq"),
    ("decisions", "id"),
    ("factors", "decision, position"),  # schema 7 and before: now a column of decisions
    ("action_configs", "hash"),
    ("actions", "id"),
    ("observations", "observatory, test"),
    ("service_state", "key"),
    ("consumer_offsets", "group_id, topic, partition"),
)
WITH_IDS: Final = ("notices", "events", "decisions", "actions")
BATCH: Final = 500
PAGE: Final = 1000


class TransferError(ValueError):
    """An export that cannot be read, or a store that cannot take it: nothing was imported."""


@dataclass
class Counts:
    """Rows per table, as exported or imported."""

    rows: dict[str, int] = field(default_factory=dict)

    def add(self, table: str, count: int = 1) -> None:
        self.rows[table] = self.rows.get(table, 0) + count

    def summary(self) -> str:
        return ", ".join(f"{n} {t}" for t, n in self.rows.items() if n) or "nothing"


# -- export ------------------------------------------------------------------------------------


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | memoryview):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    return value


def export_lines(store: Store) -> Iterator[tuple[str, str]]:
    """(table, NDJSON line without its newline): the header (table ""), then every row."""
    header = {"format": FORMAT, "version": FORMAT_VERSION, "schema": store.version()}
    yield "", json.dumps(header)
    for table, order in TABLES:
        if not store.has_table(table):
            continue  # an older store, read as it is
        rows = _by_id(store, table) if table in WITH_IDS else _all(store, table, order)
        for row in rows:
            data = {name: _encode(row[name]) for name in row.keys()}  # noqa: SIM118 (a Row)
            yield table, json.dumps({"table": table, "row": data})


def _by_id(store: Store, table: str) -> Iterator[Any]:
    """A big table a page at a time (psycopg reads a whole result into memory)."""
    last = -(2**63)
    while batch := store.db.execute(
        f"SELECT * FROM {table} WHERE id > ? ORDER BY id LIMIT ?", (last, PAGE)
    ).fetchall():
        yield from batch
        last = batch[-1]["id"]


def _all(store: Store, table: str, order: str) -> Iterator[Any]:
    yield from store.db.execute(f"SELECT * FROM {table} ORDER BY {order}")


def export(store: Store, out: IO[str]) -> Counts:
    counts = Counts()
    for table, line in export_lines(store):
        out.write(line + "\n")
        if table:
            counts.add(table)
    return counts


# -- import ------------------------------------------------------------------------------------


def _decode(value: Any, column: str, number: int) -> Any:
    """A column's value as exported: a scalar, or bytes as {"base64": ...}; anything else is
    not a row of ours (a list, an object, bad base64) and is refused at its line."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict) and set(value) == {"base64"} and isinstance(value["base64"], str):
        try:
            return base64.b64decode(value["base64"], validate=True)
        except binascii.Error as err:
            raise TransferError(f"line {number}: column {column} is not base64 ({err})") from err
    raise TransferError(f"line {number}: column {column} holds a {type(value).__name__}")


def _records(lines: Iterable[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(table, row) from an export, after checking its header."""
    known = {t for t, _ in TABLES}
    numbered = enumerate(lines, 1)
    for number, line in numbered:
        if not line.strip():
            continue
        header = _json(line, number)
        if header.get("format") != FORMAT:
            raise TransferError(f"line {number}: not a tracerules store export (no header)")
        if header.get("version") != FORMAT_VERSION:
            raise TransferError(f"line {number}: export format {header.get('version')} unknown")
        break
    else:
        raise TransferError("not a tracerules store export (no header: the file is empty)")
    for number, line in numbered:
        if not line.strip():
            continue
        record = _json(line, number)
        table, row = record.get("table"), record.get("row")
        if table not in known or not isinstance(row, dict):
            raise TransferError(f"line {number}: not a row of a known table")
        yield str(table), {k: _decode(v, k, number) for k, v in row.items()}


def _json(line: str, number: int) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except (ValueError, RecursionError) as err:  # RecursionError: nesting past the stack
        raise TransferError(f"line {number}: not JSON ({err})") from err
    if not isinstance(value, dict):
        raise TransferError(f"line {number}: not a JSON object")
    return value


def _columns(store: Store, table: str) -> set[str]:
    cursor = store.db.execute(f"SELECT * FROM {table} LIMIT 0")
    return {c[0] for c in cursor.description or ()}


def import_rows(store: Store, lines: Iterable[str]) -> Counts:
    """Copy an export into an empty store, in one transaction: all of it, or nothing."""
    held = store.totals()
    if sum(held.notices.values()) or sum(held.decisions.values()):
        raise TransferError(
            f"the store {store.location} already holds notices or decisions: "
            "import into a new, empty store"
        )
    try:
        return _import(store, lines)
    except store_errors() as err:  # a duplicate id, a missing reference, a wrong type
        raise TransferError(f"the store refused the export, nothing was imported: {err}") from err


def _import(store: Store, lines: Iterable[str]) -> Counts:
    counts = Counts()
    columns: dict[str, set[str]] = {}
    factor_rows: list[tuple[Any, ...]] = []  # an older export's, for the decisions' column
    fold_factors = not store.has_table("factors")
    with store.transaction() as db:
        batch: list[tuple[str, tuple[str, ...], tuple[Any, ...]]] = []
        for table, row in _records(lines):
            if table == "factors" and fold_factors:
                factor_rows.append(_old_factor(row, counts))
                continue
            if table not in columns:
                columns[table] = _columns(store, table)
            if table == "actions" and "finished_runs" in columns[table]:
                _derive_finished_runs(row)
            unknown = set(row) - columns[table]
            if unknown:
                raise TransferError(
                    f"{table} has no column {sorted(unknown)[0]} here: "
                    "upgrade this tracerules to import a newer store's export"
                )
            names = tuple(row)
            batch.append((table, names, tuple(row[n] for n in names)))
            counts.add(table)
            if len(batch) >= BATCH:
                _flush(db, batch)
        _flush(db, batch)
        _fold_factors(db, factor_rows)
        # Imported rows keep their ids; new rows continue after them.
        for table in WITH_IDS:
            store.resume_ids(table)
    return counts


def _derive_finished_runs(row: dict[str, Any]) -> None:
    """An action exported before `finished_runs` was a column: count it from its log."""
    if "finished_runs" not in row:
        log = row.get("log")
        row["finished_runs"] = finished_runs_in_log(log) if isinstance(log, str) else 0


_OLD_FACTOR: Final = ("decision", "position", "name", "vote", "inherited", "reason", "detail")


def _old_factor(row: dict[str, Any], counts: Counts) -> tuple[Any, ...]:
    """A row of the factors table of schema 7 and before, checked as the read model checks
    a stored factor, as `factor_columns` reads them once sorted (position second)."""
    if set(row) != set(_OLD_FACTOR):
        raise TransferError(f"a factors row has the columns {sorted(row)}, not {_OLD_FACTOR}")
    if not isinstance(row["decision"], int) or not isinstance(row["position"], int):
        raise TransferError("a factors row whose decision or position is not a number")
    values = [row[name] for name in _OLD_FACTOR]
    try:
        stored_factor(values[2:])
    except (TypeError, ValueError) as err:
        raise TransferError(f"a factors row of decision {row['decision']}: {err}") from err
    counts.add("factors")
    return tuple(values)


def _fold_factors(db: Any, rows: list[tuple[Any, ...]]) -> None:
    """An older export's factor rows into their decisions' `factors` column; rows for a
    decision the export does not hold are refused (the old table's foreign key did)."""
    rows.sort(key=lambda r: (r[0], r[1]))
    updated = db.executemany(SET_FACTORS, factor_columns((r[0], *r[2:]) for r in rows)).rowcount
    if updated != len({r[0] for r in rows}):
        raise TransferError("factors rows for a decision the export does not hold")


def _flush(db: Any, batch: list[tuple[str, tuple[str, ...], tuple[Any, ...]]]) -> None:
    """Insert runs of rows of the same table and columns with one executemany each."""
    start = 0
    while start < len(batch):
        table, names, _ = batch[start]
        end = start
        while end < len(batch) and batch[end][:2] == (table, names):
            end += 1
        quoted = ", ".join(f'"{n}"' for n in names)
        db.executemany(
            f"INSERT INTO {table} ({quoted}) VALUES ({marks(names)})",
            [values for _, _, values in batch[start:end]],
        )
        start = end
    batch.clear()
