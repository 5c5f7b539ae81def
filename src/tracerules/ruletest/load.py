"""Reading rule-test files: positions on every node, every error at `file:line:col`.

A test file is read like a rule file (the same YAML loader, the same pydantic error mapping),
then checked against the rules it tests: trigger ids, factor names and step references must
exist, notice files must be readable and their topics known. Problems are diagnostics; a file
with any is not run.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydantic import ValidationError

from tracerules.dsl.values import Vote
from tracerules.errors import Diagnostic, SourceCache, Span
from tracerules.rules.compile import CompiledTrigger, RuleSet, compile_loaded
from tracerules.rules.loader import (
    TEST_SUFFIXES,
    LoadedFile,
    Loc,
    load_paths,
    position,
    read_yaml,
    validation_diagnostics,
)
from tracerules.ruletest.spec import ALL_TRIGGERS, CaseSpec, Expectation, SuiteSpec
from tracerules.ruletest.steps import Step, build_step, diag, step_name
from tracerules.runtime.engine.decisions import EXPIRY, Conclusion


@dataclass(frozen=True)
class FactorCheck:
    name: str
    vote: Vote
    inherited: bool | None


@dataclass(frozen=True)
class Check:
    """One expectation, resolved: the step it looks at and what it expects."""

    step: int
    trigger: str
    event_id: str | None
    conclusion: Conclusion | None
    votes: Vote | None
    factors: tuple[FactorCheck, ...]
    actions: tuple[str, ...] | None
    arbitration: tuple[str, ...] | None = None  # started, clash, override, re-point


@dataclass(frozen=True)
class RuleTest:
    name: str
    path: str
    line: int
    steps: tuple[Step, ...]
    checks: tuple[Check, ...]
    no_pass: frozenset[str]  # trigger ids, or ALL_TRIGGERS

    @property
    def triggers(self) -> set[str]:
        """The triggers this test states something about (its coverage)."""
        return {c.trigger for c in self.checks} | (set(self.no_pass) - {ALL_TRIGGERS})


@dataclass
class Suite:
    """One test file: its tests, the rules they run on, and any problems found."""

    path: str
    rules: RuleSet | None = None
    tests: list[RuleTest] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: SourceCache = field(default_factory=SourceCache)


class RuleCache:
    """Rule sets by their resolved paths: test files of one folder share one load."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, ...], tuple[RuleSet | None, list[Diagnostic], SourceCache]]
        self._loaded = {}

    def get(self, paths: Sequence[Path]) -> tuple[RuleSet | None, list[Diagnostic], SourceCache]:
        key = tuple(str(p.resolve()) for p in paths)
        if key not in self._loaded:
            result = load_paths(paths)
            ruleset, diagnostics = compile_loaded(result)
            errors = [d for d in diagnostics if d.is_error]
            self._loaded[key] = (ruleset, errors, result.sources)
        return self._loaded[key]


def discover(paths: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """Test files under `paths` (folders are searched for `*.test.yaml`), and missing paths."""
    found: list[Path] = []
    missing: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.name.endswith(TEST_SUFFIXES)
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            found.append(path)
        else:
            missing.append(path)
    return list(dict.fromkeys(found)), missing


def load_suite(path: Path, cache: RuleCache) -> Suite:
    """Read, validate and resolve one test file; problems end up in `Suite.diagnostics`."""
    suite = Suite(str(path))
    loaded = _read(path, suite)
    if loaded is None:
        return suite
    try:
        spec = SuiteSpec.model_validate(loaded.data)
    except ValidationError as err:
        suite.diagnostics += validation_diagnostics(err, SuiteSpec, loaded, ())
        return suite
    base = path.parent
    rule_paths = [base / p for p in spec.rules] if spec.rules else [base]
    ruleset, errors, sources = cache.get(rule_paths)
    suite.sources.texts.update(sources.texts)
    if ruleset is None:
        suite.diagnostics.append(
            diag(loaded, ("rules",), "E908", "the rules under test do not load", key=True)
        )
        suite.diagnostics += errors
        return suite
    suite.rules = ruleset
    for index, node in enumerate(spec.tests):
        try:
            case = CaseSpec.model_validate(node)
        except ValidationError as err:
            found = validation_diagnostics(err, CaseSpec, loaded, ("tests", index))
            suite.diagnostics += [_within(d, f"tests.{index}") for d in found]
            continue
        test = _resolve(loaded, index, case, base, ruleset, suite.diagnostics)
        if test is not None:
            suite.tests.append(test)
    if suite.diagnostics:
        suite.tests = []
        suite.diagnostics.sort(key=lambda d: (d.span.path, d.span.line, d.span.col))
    return suite


def _read(path: Path, suite: Suite) -> LoadedFile | None:
    loaded = read_yaml(path, suite.diagnostics, suite.sources)
    if loaded is None:
        return None
    name, data = loaded.path, loaded.data
    if not isinstance(data, dict):
        suite.diagnostics.append(
            Diagnostic(
                "E103",
                "a rule-test file must be a mapping with schema_version, rules and tests",
                Span(name, 1, 1),
                "start the file with 'schema_version: 1'",
            )
        )
        return None
    return loaded


def _within(diag: Diagnostic, where: str) -> Diagnostic:
    """Name the test in a schema message: 'tests.2.expect.0.votes: ...', not 'expect.0...'."""
    if diag.code != "E403":
        return diag
    head, sep, rest = diag.message.partition(": ")
    head = where if head == "file" else f"{where}.{head}"
    return replace(diag, message=head + sep + rest)


def _close(name: str, choices: Iterable[str]) -> str | None:
    match = difflib.get_close_matches(name, list(choices), n=1)
    return f"did you mean '{match[0]}'?" if match else None


# -- one test --------------------------------------------------------------------------------


def _resolve(
    loaded: LoadedFile,
    index: int,
    case: CaseSpec,
    base: Path,
    rules: RuleSet,
    problems: list[Diagnostic],
) -> RuleTest | None:
    loc: Loc = ("tests", index)
    before = len(problems)
    names = [step_name(spec, j + 1) for j, spec in enumerate(case.notices)]
    steps: list[Step] = []
    for j, spec in enumerate(case.notices):
        step = build_step(
            loaded, (*loc, "notices", j), spec, names[j], j + 1, base, steps, problems
        )
        if step is not None:
            steps.append(step)
    checks = [
        check
        for j, exp in enumerate(case.expect)
        if (check := _check(loaded, (*loc, "expect", j), exp, names, rules, problems))
    ]
    for k, trigger_id in enumerate(case.no_pass):
        if trigger_id != ALL_TRIGGERS and rules.trigger(trigger_id) is None:
            problems.append(_unknown_trigger(loaded, (*loc, "no_pass", k), trigger_id, rules))
    if len(problems) > before:
        return None
    line, _ = position(loaded.rt, (*loc, "name"))
    return RuleTest(
        case.name, loaded.path, line, tuple(steps), tuple(checks), frozenset(case.no_pass)
    )


# -- expectations ----------------------------------------------------------------------------


def _check(
    loaded: LoadedFile,
    loc: Loc,
    exp: Expectation,
    names: list[str],
    rules: RuleSet,
    problems: list[Diagnostic],
) -> Check | None:
    step = _step_number(loaded, loc, exp.after, names, problems)
    trigger = rules.trigger(exp.trigger)
    if trigger is None:
        problems.append(_unknown_trigger(loaded, (*loc, "trigger"), exp.trigger, rules))
        return None
    factors = _factor_checks(loaded, loc, exp, trigger, problems)
    if step is None or factors is None:
        return None
    return Check(
        step,
        exp.trigger,
        None if exp.event_id is None else str(exp.event_id),
        None if exp.conclusion is None else Conclusion(exp.conclusion),
        None if exp.votes is None else Vote(exp.votes),
        factors,
        None if exp.actions is None else tuple(exp.actions),
        None if exp.arbitration is None else tuple(exp.arbitration),
    )


def _step_number(
    loaded: LoadedFile,
    loc: Loc,
    after: int | str | None,
    names: list[str],
    problems: list[Diagnostic],
) -> int | None:
    if after is None:
        return len(names)
    if isinstance(after, int):
        if 1 <= after <= len(names):
            return after
        problems.append(
            diag(
                loaded,
                (*loc, "after"),
                "E903",
                f"there is no notice {after}",
                f"the test has notices 1 to {len(names)}",
            )
        )
        return None
    named = [i for i, name in enumerate(names, 1) if name == after]
    if len(named) == 1:
        return named[0]
    message = (
        f"no notice is named '{after}'"
        if not named
        else f"{len(named)} notices are named '{after}'"
    )
    hint = _close(after, names) if not named else "give them distinct 'name:'"
    problems.append(diag(loaded, (*loc, "after"), "E903", message, hint))
    return None


def _factor_checks(
    loaded: LoadedFile,
    loc: Loc,
    exp: Expectation,
    trigger: CompiledTrigger,
    problems: list[Diagnostic],
) -> tuple[FactorCheck, ...] | None:
    names = [EXPIRY, *(c.name for c in trigger.conditions)]
    out: list[FactorCheck] = []
    ok = True
    for name, want in exp.factors.items():
        if name not in names:
            ok = False
            problems.append(
                diag(
                    loaded,
                    (*loc, "factors", name),
                    "E902",
                    f"trigger '{trigger.id}' has no condition '{name}'",
                    _close(name, names) or "its factors: " + ", ".join(names),
                    key=True,
                )
            )
            continue
        out.append(FactorCheck(name, Vote(want.vote), want.inherited))
    return tuple(out) if ok else None


def _unknown_trigger(loaded: LoadedFile, loc: Loc, trigger_id: str, rules: RuleSet) -> Diagnostic:
    return diag(
        loaded,
        loc,
        "E901",
        f"no trigger '{trigger_id}' in the rules under test",
        _close(trigger_id, (t.id for t in rules.triggers)) or "check `rules:` and the trigger id",
    )
