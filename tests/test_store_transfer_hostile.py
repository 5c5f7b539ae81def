"""Hostile store exports: `tracerules store migrate --from FILE` refuses each with a clear
message, exit 2, and imports nothing (the target stays empty). SQLite targets: the refusal is
the import's, the same on both backends."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import DATA, NOTICES
from tracerules.cli.main import app
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.engine.replay import replay
from tracerules.runtime.sources.files import iter_notices
from tracerules.runtime.store.store import Store

runner = CliRunner()


@pytest.fixture(scope="module")
def export_lines(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The lines of a real export: a header, then notices, events, decisions, actions."""
    folder = tmp_path_factory.mktemp("export")
    source = folder / "source.sqlite"
    replay(load_ruleset([str(DATA / "rules")]), iter_notices([NOTICES]), store_path=source).close()
    out = folder / "export.ndjson"
    done = runner.invoke(app, ["store", "export", "--store", str(source), "--out", str(out)])
    assert done.exit_code == 0, done.output
    return out.read_text().splitlines()


def _first(lines: list[str], table: str) -> int:
    return next(i for i, line in enumerate(lines) if json.loads(line).get("table") == table)


def _with_row(
    lines: list[str], table: str, change: Callable[[dict[str, object]], None]
) -> list[str]:
    i = _first(lines, table)
    record = json.loads(lines[i])
    change(record["row"])
    return [*lines[:i], json.dumps(record), *lines[i + 1 :]]


def _payload(row: dict[str, object], value: object) -> None:
    row["payload"] = value


HOSTILE: dict[str, tuple[Callable[[list[str]], list[str]], str]] = {
    "empty": (lambda lines: [], "no header"),
    "not text at all": (lambda lines: ["\x00\x01binary garbage"], "not JSON"),
    "no header": (lambda lines: lines[1:], "no header"),
    "truncated row": (lambda lines: [*lines[:-1], lines[-1][: len(lines[-1]) // 2]], "not JSON"),
    "deeply nested": (lambda lines: [*lines, "[" * 200_000 + "]" * 200_000], "not JSON"),
    "a list, not a row": (lambda lines: [*lines, "[1, 2]"], "not a JSON object"),
    "unknown table": (lambda lines: [*lines, '{"table": "users", "row": {}}'], "known table"),
    "a list in a column": (
        lambda lines: _with_row(lines, "notices", lambda r: _payload(r, [1, 2])),
        "column payload holds a list",
    ),
    "an object in a column": (
        lambda lines: _with_row(lines, "notices", lambda r: _payload(r, {"a": {"b": 1}})),
        "column payload holds a dict",
    ),
    "bad base64": (
        lambda lines: _with_row(lines, "notices", lambda r: _payload(r, {"base64": "@@@"})),
        "column payload is not base64",
    ),
    "an unknown column": (
        lambda lines: _with_row(lines, "notices", lambda r: r.update(extra=1)),
        "has no column extra",
    ),
    "a row twice (same id)": (
        lambda lines: [*lines, lines[_first(lines, "notices")]],
        "the store refused the export",
    ),
    "a huge line": (
        lambda lines: [*lines, json.dumps({"table": "notices", "row": {"x": "y" * 20_000_000}})],
        "has no column x",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_export_is_refused_and_imports_nothing(
    case: str, export_lines: list[str], tmp_path: Path
) -> None:
    make, message = HOSTILE[case]
    hostile = tmp_path / "hostile.ndjson"
    hostile.write_text("\n".join(make(export_lines)) + "\n")
    target = tmp_path / "target.sqlite"
    moved = runner.invoke(app, ["store", "migrate", "--from", str(hostile), "--store", str(target)])
    assert moved.exit_code == 2, moved.output
    assert message in moved.output
    assert "Traceback" not in moved.output
    store = Store(target, read_only=True)
    try:
        assert store.totals().notices == {} and store.count_events() == 0  # all or nothing
    finally:
        store.close()


def test_the_untouched_export_imports(export_lines: list[str], tmp_path: Path) -> None:
    """The control: the same export, unchanged, is accepted, so each refusal is its change's."""
    exported = tmp_path / "export.ndjson"
    exported.write_text("\n".join(export_lines) + "\n")
    target = tmp_path / "target.sqlite"
    moved = runner.invoke(
        app, ["store", "migrate", "--from", str(exported), "--store", str(target)]
    )
    assert moved.exit_code == 0, moved.output
    store = Store(target, read_only=True)
    try:
        assert store.count_events() > 0
    finally:
        store.close()


# -- a store file that is not a database -------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["events", "list"],
        ["actions", "list"],
        ["serve"],
        ["store", "migrate"],
        ["store", "export"],
    ],
)
@pytest.mark.parametrize("content", [b"not a database\n", b"SQLite format 3\x00" + b"\xff" * 200])
def test_a_file_that_is_not_a_store_is_refused_by_name(
    command: list[str], content: bytes, tmp_path: Path
) -> None:
    fake = tmp_path / "tracerules.sqlite"
    fake.write_bytes(content)
    done = runner.invoke(app, [*command, "--store", str(fake)])
    assert done.exit_code == 2, done.output
    assert f"cannot open the store {fake}" in done.output
    assert done.exception is None or isinstance(done.exception, SystemExit)
    assert fake.read_bytes() == content  # read, never repaired or overwritten
