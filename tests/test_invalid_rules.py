"""Invalid rule fixtures: each declares the errors it must produce, by code and position.

A fixture's `# expect: CODE LINE:COL` lines are the whole truth: every expected error must be
reported at exactly that place, and no other error may be.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tracerules.errors import render_human
from tracerules.rules.compile import compile_loaded
from tracerules.rules.loader import load_paths

DATA = Path(__file__).parent / "data"
FIXTURES = sorted((DATA / "invalid").glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (E\d{3}) (\d+):(\d+)$", re.MULTILINE)


def _expected(path: Path) -> set[tuple[str, int, int]]:
    return {(code, int(line), int(col)) for code, line, col in EXPECT.findall(path.read_text())}


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_fixture_reports_exactly_its_errors(fixture: Path) -> None:
    expected = _expected(fixture)
    assert expected, f"{fixture.name} declares no expected error"
    result = load_paths([fixture, DATA / "rules" / "topics.yaml"])
    ruleset, diagnostics = compile_loaded(result)
    assert ruleset is None
    found = {(d.code, d.span.line, d.span.col) for d in diagnostics if d.is_error}
    shown = "\n".join(render_human(d, result.sources) for d in diagnostics)
    assert found == expected, shown
    for diag in diagnostics:
        assert diag.span.path == str(fixture)
        assert diag.message


def test_planted_mistakes_render_with_source_line_caret_and_hint() -> None:
    fixture = DATA / "invalid" / "planted.yaml"
    result = load_paths([fixture, DATA / "rules" / "topics.yaml"])
    _, diagnostics = compile_loaded(result)
    by_code = {d.code: d for d in diagnostics}
    text = render_human(by_code["E301"], result.sources)
    lines = text.splitlines()
    assert lines[0].startswith(f"{fixture}:40:15: error[E301]: unknown field 'snr'")
    assert lines[2].endswith("bright: snr > 7")
    assert lines[3].endswith("|" + " " * 15 + "^^^")
    assert "declare it under fields:" in text
    assert by_code["E302"].hint == "did you mean 'sep'?"
    assert by_code["E801"].hint is not None and "notice" in by_code["E801"].hint
    assert by_code["E802"].hint == "did you mean 'event_id'?"
    assert by_code["E402"].hint == "did you mean 'mode'?"
    assert by_code["E601"].hint == "did you mean 'gcn.classic.voevent.SWIFT_XRT_POSITION'?"
