"""Hostile archives: a truncated, corrupt or nested-and-cut tar is a clear error naming the
file (exit 2 in the commands), never a traceback half-way through a replay."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import DATA, NOTICES
from tracerules.cli.main import app
from tracerules.runtime.sources.files import SourceError, iter_notices

RULES = DATA / "rules"


def _tar_of_notices(mode: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for path in sorted(NOTICES.rglob("*.xml"))[:40]:
            archive.add(path, arcname=path.name)
    return buffer.getvalue()


def _damaged(tmp_path: Path, name: str) -> Path:
    """Damaged archives of real notices, by kind."""
    whole = {
        "cut.tar.gz": _tar_of_notices("w:gz"),
        "cut.tar.xz": _tar_of_notices("w:xz"),
        "cut.tar.bz2": _tar_of_notices("w:bz2"),
        "cut.tar": _tar_of_notices("w"),
    }
    if name == "garbage.tar.gz":
        data = b"\x1f\x8b" + bytes(range(256)) * 40
    elif name == "nested-cut.tar":
        inner = _tar_of_notices("w:gz")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as outer:
            member = tarfile.TarInfo("inner.tar.gz")
            member.size = len(inner) // 2
            outer.addfile(member, io.BytesIO(inner[: member.size]))
        data = buffer.getvalue()
    else:
        data = whole[name][: len(whole[name]) * 2 // 3]
    path = tmp_path / name
    path.write_bytes(data)
    return path


KINDS = ["cut.tar.gz", "cut.tar.xz", "cut.tar.bz2", "cut.tar", "garbage.tar.gz", "nested-cut.tar"]


@pytest.mark.parametrize("name", KINDS)
def test_a_damaged_archive_is_a_source_error_naming_it(tmp_path: Path, name: str) -> None:
    path = _damaged(tmp_path, name)
    with pytest.raises(SourceError, match=rf"{name}: a damaged or truncated archive"):
        list(iter_notices([path]))


@pytest.mark.parametrize("name", ["cut.tar.gz", "nested-cut.tar"])
def test_dry_run_of_a_folder_holding_a_damaged_archive_exits_2(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _damaged(folder, name)
    result = CliRunner().invoke(app, ["dry-run", "--rules", str(RULES), str(folder)])
    assert result.exit_code == 2, result.output
    assert "a damaged or truncated archive" in " ".join(result.output.split())
    assert result.exception is None or isinstance(result.exception, SystemExit)
