"""Running rule tests: each test gets a fresh in-memory store and a dry-run engine.

Notices are processed in the test's order, exactly as the service would process them (store
first, then every subscribed trigger, in priority order), and never act. Then every
expectation is compared with the decision it names.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass

from tracerules.rules.compile import RuleSet
from tracerules.ruletest.load import Check, FactorCheck, RuleTest
from tracerules.ruletest.spec import ALL_TRIGGERS, ARBITRATION_WORDS
from tracerules.ruletest.steps import Step
from tracerules.runtime.engine.decisions import ActionRecord, Decision, Factor
from tracerules.runtime.engine.engine import Engine, Processed
from tracerules.runtime.store.store import Store


@dataclass(frozen=True)
class Mismatch:
    """One expected item that did not happen."""

    what: str  # conclusion, votes, factor <name>, actions, event_id, decision, no_pass
    expected: str
    got: str
    note: str = ""  # the values the condition read, or why there was no vote


@dataclass(frozen=True)
class Failure:
    """The mismatches of one trigger's decision on one notice."""

    step: Step
    trigger: str
    event_id: str | None
    mismatches: tuple[Mismatch, ...]
    factors: tuple[Factor, ...] = ()


@dataclass(frozen=True)
class Result:
    test: RuleTest
    seconds: float
    failures: tuple[Failure, ...] = ()
    crash: str | None = None  # the engine itself raised: a bug to report

    @property
    def ok(self) -> bool:
        return not self.failures and self.crash is None


def run_test(test: RuleTest, rules: RuleSet) -> Result:
    """Feed the test's notices to a dry-run engine and compare what it decided."""
    start = time.perf_counter()
    store = Store(":memory:")
    try:
        engine = Engine(rules, store, dry_run=True)
        processed = [engine.process(step.notice) for step in test.steps]
    except Exception as err:
        crash = "".join(traceback.format_exception(err)).strip()
        return Result(test, time.perf_counter() - start, crash=crash)
    finally:
        store.close()
    failures = [
        failure
        for check in test.checks
        if (failure := verify(check, test.steps[check.step - 1], processed[check.step - 1]))
    ]
    failures += _passes(test, processed)
    return Result(test, time.perf_counter() - start, tuple(failures))


def verify(check: Check, step: Step, processed: Processed) -> Failure | None:
    """Compare one expectation with the decision it names; None when everything matches."""
    decision = next((d for d in processed.decisions if d.trigger == check.trigger), None)
    if decision is None:
        missing = Mismatch("decision", "a decision", "none", _no_decision(check, step, processed))
        return Failure(step, check.trigger, None, (missing,))
    found: list[Mismatch] = []
    if check.event_id is not None and decision.event_id != check.event_id:
        found.append(Mismatch("event_id", check.event_id, str(decision.event_id)))
    if check.conclusion is not None and decision.conclusion is not check.conclusion:
        found.append(
            Mismatch(
                "conclusion", check.conclusion.value, decision.conclusion.value, _why(decision)
            )
        )
    if check.votes is not None and decision.votes is not check.votes:
        found.append(Mismatch("votes", check.votes.value, decision.votes.value))
    found += [m for f in check.factors if (m := _factor(f, decision))]
    started = [a for a in decision.actions if a.status != "clash"]
    if check.actions is not None and not _same_actions(check.actions, started):
        found.append(Mismatch("actions", _listed(check.actions), _listed(_labels(started))))
    if check.arbitration is not None:
        got = rulings(decision.actions)
        if tuple(got) != check.arbitration:
            found.append(Mismatch("arbitration", _listed(check.arbitration), _listed(got)))
    if not found:
        return None
    return Failure(step, check.trigger, decision.event_id, tuple(found), decision.factors)


def _no_decision(check: Check, step: Step, processed: Processed) -> str:
    topic = step.notice.topic
    if processed.status == "duplicate":
        return f"the notice is a duplicate ({processed.reason}), so nothing decided"
    if processed.status == "dead":
        return f"the notice became a dead letter: {processed.reason}"
    if processed.status == "unsubscribed":
        return f"no trigger subscribes to {topic}"
    return f"'{check.trigger}' does not subscribe to {topic} (or is off)"


def _why(decision: Decision) -> str:
    if decision.error:
        return decision.error
    against = [f"{f.name}={show_factor(f)}" for f in decision.factors if f.vote.value != "PASS"]
    return "not PASS: " + ", ".join(against) if against else ""


def _factor(want: FactorCheck, decision: Decision) -> Mismatch | None:
    got = decision.factor(want.name)
    expected = want.vote.value + ("*" if want.inherited else "")
    if want.inherited is False:
        expected += " (own vote)"
    if got is None:
        return Mismatch(f"factor {want.name}", expected, "absent")
    inherited_ok = want.inherited is None or want.inherited == got.inherited
    if got.vote is want.vote and inherited_ok:
        return None
    note = "; ".join(x for x in (got.detail, got.reason) if x)
    return Mismatch(f"factor {want.name}", expected, show_factor(got), note)


def show_factor(factor: Factor) -> str:
    """A factor's vote as tests write it: 'PASS', or 'PASS*' when inherited."""
    return factor.vote.value + ("*" if factor.inherited else "")


def rulings(actions: list[ActionRecord]) -> list[str]:
    """What arbitration did to each observation action, in the words tests use."""
    words = {engine: word for word, engine in ARBITRATION_WORDS.items()}
    return [words.get(a.arbitration, a.arbitration) for a in actions if a.arbitration]


def _labels(actions: list[ActionRecord]) -> list[str]:
    return [a.label if a.label == a.type else f"{a.label} ({a.type})" for a in actions]


def _same_actions(expected: tuple[str, ...], actions: list[ActionRecord]) -> bool:
    return len(expected) == len(actions) and all(
        want in (a.type, a.label) for want, a in zip(expected, actions, strict=True)
    )


def _listed(items: tuple[str, ...] | list[str]) -> str:
    return ", ".join(items) if items else "none"


def _passes(test: RuleTest, processed: list[Processed]) -> list[Failure]:
    """`no_pass:`: every PASS of a listed trigger, on any notice, is a failure."""
    if not test.no_pass:
        return []
    out = []
    for step, result in zip(test.steps, processed, strict=True):
        for d in result.decisions:
            if d.passed and (ALL_TRIGGERS in test.no_pass or d.trigger in test.no_pass):
                mismatch = Mismatch("no_pass", "no PASS", "PASS", _listed(_labels(d.actions)))
                out.append(Failure(step, d.trigger, d.event_id, (mismatch,), d.factors))
    return out


def describe(failure: Failure) -> list[str]:
    """Plain-text lines for a failure: where, then expected against got, then all factors."""
    head = f"after notice {failure.step.index} ({failure.step.name}): {failure.trigger}"
    if failure.event_id is not None:
        head += f", event {failure.event_id}"
    width = max(len(m.what) for m in failure.mismatches)
    lines = [head]
    for m in failure.mismatches:
        if m.what == "no_pass":
            lines.append(f"  passed, but the test says it must not (actions: {m.note})")
            continue
        line = f"  {m.what:<{width}}  expected {m.expected:<8} got {m.got}"
        lines.append(line + (f"   ({m.note})" if m.note else ""))
    if failure.factors:
        lines.append(
            "  factors: " + " ".join(f"{f.name}={show_factor(f)}" for f in failure.factors)
        )
    return lines
