"""`tracerules validate`: every error in every file, then lints; exit 0/1/3."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from tracerules.errors import (
    Diagnostic,
    Span,
    exception_tail,
    render_github,
    render_human,
    render_json,
)
from tracerules.rules.compile import RuleSet, compile_loaded
from tracerules.rules.guard import empty_set
from tracerules.rules.loader import LoadResult, load_paths

EXIT_CLEAN, EXIT_ERRORS, EXIT_USAGE, EXIT_LINTS = 0, 1, 2, 3


def run_validate(
    paths: Sequence[Path], output: str, disabled: set[str], allow_empty: bool = False
) -> int:
    result = load_paths(paths)
    ruleset, diagnostics = _compiled(result, paths)
    empty = empty_set(len(ruleset.triggers), paths) if ruleset is not None else None
    if empty is not None and not allow_empty:
        ruleset, diagnostics = None, [*diagnostics, empty]
    diagnostics = [d for d in diagnostics if d.lint not in disabled]
    diagnostics.sort(key=lambda d: (d.span.path, d.span.line, d.span.col))
    errors = sum(1 for d in diagnostics if d.is_error)
    warnings = len(diagnostics) - errors
    files = result.discovered
    if output == "json":
        print(render_json(diagnostics, files))
    elif output == "github":
        for diag in diagnostics:
            print(render_github(diag))
    else:
        for diag in diagnostics:
            print(render_human(diag, result.sources), end="\n\n")
        triggers = len(ruleset.triggers) if ruleset else sum(len(f.triggers) for f in result.files)
        summary = (
            f"{_count(len(files), 'file')}, {_count(triggers, 'trigger')}: "
            f"{_count(errors, 'error')}, {_count(warnings, 'warning')}"
        )
        print(summary, file=sys.stderr if errors else sys.stdout)
    if errors or not files:
        return EXIT_ERRORS
    return EXIT_LINTS if warnings else EXIT_CLEAN


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _compiled(result: LoadResult, paths: Sequence[Path]) -> tuple[RuleSet | None, list[Diagnostic]]:
    """compile_loaded, with anything it lets escape turned into a diagnostic: validate answers
    every file with diagnostics, never with a traceback."""
    try:
        return compile_loaded(result)
    except Exception as err:
        where = Span(", ".join(str(p) for p in paths), 1, 1)
        problem = f"the rules could not be checked: {exception_tail(err)[:250]}"
        hint = "please report this as a tracerules bug, with the rule files"
        return None, [*result.diagnostics, Diagnostic("E100", problem, where, hint)]
