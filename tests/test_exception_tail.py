"""One exception tail: the line a decision, an action outcome, a dead-lettered notice and
a plugin's failure show for an exception is made by `errors.exception_tail` alone."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from tracerules.errors import exception_tail

ROOT = Path(__file__).resolve().parents[1]


def _raised(make: type[BaseException], *args: object) -> BaseException:
    try:
        raise make(*args)
    except BaseException as err:
        return err


def test_the_tail_is_the_last_line_python_prints_with_the_qualified_type() -> None:
    assert exception_tail(_raised(KeyError, "ra")) == "KeyError: 'ra'"
    assert exception_tail(_raised(sqlite3.OperationalError, "disk I/O error")) == (
        "sqlite3.OperationalError: disk I/O error"
    )
    assert exception_tail(_raised(RuntimeError)) == "RuntimeError"


def test_a_syntax_error_shows_its_message_not_the_offending_source_line() -> None:
    with pytest.raises(SyntaxError) as caught:
        compile("ra >", "<rule>", "eval")
    assert exception_tail(caught.value).startswith("SyntaxError: ")


def test_no_module_formats_the_tail_on_its_own() -> None:
    """The helper is written once: a second copy would drift (a truncation, a strip)."""
    pattern = re.compile(r"format_exception_only\(")
    copies = [
        str(path.relative_to(ROOT))
        for folder in ("src", "tests", "bench")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if pattern.search(path.read_text()) and path != ROOT / "src/tracerules/errors.py"
    ]
    assert copies == []
