"""`tracerules test`: run rule unit tests (`*.test.yaml`), in the spirit of `promtool test rules`.

One line per test, a readable diff on failure, a list of the triggers no test covers, and
optionally a JUnit XML report. Exit status: 0 all passed, 1 a failure, an invalid test file or
no test at all, 2 usage (a path that does not exist).
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from tracerules.errors import render_human
from tracerules.ruletest.junit import junit_xml
from tracerules.ruletest.load import RuleCache, RuleTest, Suite, discover, load_suite
from tracerules.ruletest.run import Result, describe, run_test

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def run_tests(paths: Sequence[Path], junit: Path | None, patterns: Sequence[str]) -> int:
    """Discover, load, run and report; returns the exit status."""
    console = Console(highlight=False, soft_wrap=True)
    files, missing = discover(paths)
    if missing:
        for path in missing:
            console.print(f"[red]error:[/] no such file or folder: {escape(str(path))}")
        return EXIT_USAGE
    started = time.perf_counter()
    cache = RuleCache()
    suites = [load_suite(path, cache) for path in files]
    selected = matcher(patterns)
    results: list[Result] = []
    for suite in suites:
        results += _run_suite(console, suite, selected)
    broken = [s for s in suites if s.diagnostics]
    if not results and not broken:
        where = ", ".join(str(p) for p in paths)
        what = "no test matches --run" if files else f"no rule tests (*.test.yaml) under {where}"
        console.print(f"[red]error:[/] {escape(what)}")
        return EXIT_FAILED
    _summary(console, results, broken, time.perf_counter() - started)
    if broken:
        console.print("[yellow]Coverage not computed: fix the test files first.[/]")
    else:
        _coverage(console, suites)
    if junit is not None:
        junit.parent.mkdir(parents=True, exist_ok=True)
        junit.write_text(junit_xml(suites, results), encoding="utf-8")
    failed = broken or any(not r.ok for r in results)
    return EXIT_FAILED if failed else EXIT_OK


def matcher(patterns: Sequence[str]) -> Callable[[str], bool]:
    """A name matches a pattern as a regular expression (searched) or as a glob."""
    globs = list(patterns)
    regexes = []
    for pattern in patterns:
        try:
            regexes.append(re.compile(pattern))
        except re.error:
            continue

    def matches(name: str) -> bool:
        if not patterns:
            return True
        return any(fnmatch.fnmatchcase(name, g) for g in globs) or any(
            r.search(name) for r in regexes
        )

    return matches


def _run_suite(console: Console, suite: Suite, selected: Callable[[str], bool]) -> list[Result]:
    chosen = [t for t in suite.tests if selected(t.name)]
    if suite.diagnostics:
        console.print(f"[bold]{escape(suite.path)}[/]")
        for diag in suite.diagnostics:
            console.print(render_human(diag, suite.sources), markup=False)
        console.print()
        return []
    if not chosen or suite.rules is None:
        return []
    console.print(f"[bold]{escape(suite.path)}[/]")
    results = []
    for test in chosen:
        result = run_test(test, suite.rules)
        _show(console, result)
        results.append(result)
    return results


def _took(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _show(console: Console, result: Result) -> None:
    mark = "[green]✓[/]" if result.ok else "[red]✗[/]"
    console.print(f"  {mark} {escape(result.test.name)} [dim]({_took(result.seconds)})[/]")
    if result.crash:
        console.print(result.crash, markup=False, style="red")
    for failure in result.failures:
        first, *rest = describe(failure)
        console.print(f"      [yellow]{escape(first)}[/]")
        for line in rest:
            style = "dim" if line.startswith("  factors:") else None
            console.print("      " + line, markup=False, style=style)


def _summary(console: Console, results: list[Result], broken: list[Suite], seconds: float) -> None:
    failed = sum(1 for r in results if not r.ok)
    passed = len(results) - failed
    parts = [f"[green]{passed} passed[/]"]
    if failed:
        parts.append(f"[red]{failed} failed[/]")
    if broken:
        parts.append(f"[red]{len(broken)} test file(s) with errors[/]")
    console.print()
    console.print(f"{_count(len(results), 'test')}: {', '.join(parts)} in {_took(seconds)}")


def _coverage(console: Console, suites: list[Suite]) -> None:
    """Triggers of the rules under test that no test states anything about."""
    triggers: dict[str, None] = {}
    for suite in suites:
        if suite.rules is not None:
            triggers.update(dict.fromkeys(t.id for t in suite.rules.triggers))
    covered = covered_triggers(t for s in suites for t in s.tests)
    uncovered = [t for t in triggers if t not in covered]
    if not triggers:
        return
    if uncovered:
        console.print(
            f"[yellow]{_count(len(uncovered), 'trigger')} no test covers:[/] "
            + escape(", ".join(sorted(uncovered)))
        )
    else:
        console.print(f"Every trigger is covered by a test ({_count(len(triggers), 'trigger')}).")


def covered_triggers(tests: Iterable[RuleTest]) -> set[str]:
    """Triggers some test states an expectation or a `no_pass` about."""
    out: set[str] = set()
    for test in tests:
        out |= test.triggers
    return out


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
