"""`decide` is a pure function: the same rules, event states, notice and clock give the same
decisions, whatever was decided before, in whatever order, with the store closed and gone.

Real notices from tests/data; the cases of behaviour.md section 2 (inheritance, expiry on
the given clock, priority order and `passed()`) decided on hand-built states.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import NOTICES, sequence
from tracerules.dsl.values import Vote
from tracerules.rules.compile import RuleSet, load_ruleset
from tracerules.runtime.engine.decide import (
    EventStates,
    ReadNotice,
    Verdict,
    decide,
    history_readers,
    notice_extras,
    read_notice,
    wanted,
)
from tracerules.runtime.engine.decisions import Conclusion, EventState, Factor, Source
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.engine.events import EventBook
from tracerules.runtime.sources.notices import Notice, parse_payload
from tracerules.runtime.store.store import Store


def reading(rules: RuleSet, notice: Notice, notice_id: int | None = None) -> ReadNotice:
    triggers = rules.by_topic[notice.topic]
    doc = parse_payload(notice.payload, triggers[0].format)
    extras = notice_extras(rules.providers, notice, doc)
    return read_notice(triggers, notice, notice_id, doc, notice.received, extras)


def stored_states(store: Store, rules: RuleSet, seen: ReadNotice) -> EventStates:
    keys = wanted(seen, rules, history_readers(rules))
    return EventStates(EventBook(store).states(keys))


def outcome(verdicts: tuple[Verdict, ...]) -> list[tuple[object, ...]]:
    """What a decision says, without the ids the store gives it."""
    return [
        (
            v.decision.trigger,
            v.decision.event_id,
            v.decision.seq,
            v.decision.votes,
            v.decision.conclusion,
            v.decision.factors,
            v.decision.error,
        )
        for v in verdicts
    ]


@pytest.fixture
def halfway(engine_rules: RuleSet, tmp_path: Path) -> Iterator[tuple[Store, list[Notice]]]:
    """A store holding the first three Fermi GBM notices of an event, decided by the engine;
    the other four to come."""
    notices = sequence("fermi_gbm_json")
    store = Store(tmp_path / "store.sqlite")
    engine = Engine(engine_rules, store, out_dir=tmp_path / "out", run_actions=False)
    for notice in notices[:3]:
        engine.process(notice)
    yield store, notices[3:]
    store.close()


def test_same_inputs_give_equal_decisions_twice_and_in_another_order(
    engine_rules: RuleSet, halfway: tuple[Store, list[Notice]]
) -> None:
    store, rest = halfway
    seen = [reading(engine_rules, n) for n in rest]
    states = [stored_states(store, engine_rules, s) for s in seen]
    pairs = list(zip(states, seen, strict=True))
    first = [decide(engine_rules, st, s, s.notice.received) for st, s in pairs]
    backwards = [decide(engine_rules, st, s, s.notice.received) for st, s in pairs[::-1]][::-1]
    again = [decide(engine_rules, st, s, s.notice.received) for st, s in pairs]
    assert first == backwards == again
    assert [outcome(v) for v in first] == [outcome(v) for v in again]
    (verdict,) = first[0]
    assert verdict.decision.seq == 4  # the fourth notice of the event, as the store says
    assert verdict.event is not None and verdict.event.seq == 4
    assert states[0].get("gbm-json", "745121685").seq == 3  # the state it was given: unchanged


def test_decide_needs_no_store_and_agrees_with_the_engine(
    engine_rules: RuleSet, halfway: tuple[Store, list[Notice]], tmp_path: Path
) -> None:
    store, rest = halfway
    keep = tmp_path / "copy.sqlite"
    with sqlite3.connect(keep) as copied:  # the engine decides the same notice on it below
        store.db.backup(copied)
    copied.close()
    seen = reading(engine_rules, rest[0])
    states = stored_states(store, engine_rules, seen)
    store.close()
    Path(store.path).unlink()

    def no_database(*args: object, **kwargs: object) -> sqlite3.Connection:
        raise AssertionError("decide opened a database")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sqlite3, "connect", no_database)
        verdicts = decide(engine_rules, states, seen, seen.notice.received)

    copy = Store(keep)
    try:
        engine = Engine(engine_rules, copy, run_actions=False)
        processed = engine.process(rest[0])
        assert [
            (d.trigger, d.seq, d.votes, d.conclusion, d.factors) for d in processed.decisions
        ] == [
            (
                v.decision.trigger,
                v.decision.seq,
                v.decision.votes,
                v.decision.conclusion,
                v.decision.factors,
            )
            for v in verdicts
        ]
    finally:
        copy.close()


def test_a_later_notice_keeps_a_definite_vote_it_cannot_give_marked_inherited(
    engine_rules: RuleSet,
) -> None:
    """behaviour.md 2.4 on a hand-built state: the notice has no position, so `localised` and
    `southern` keep the earlier votes (even a FAIL), inherited and saying where from."""
    first = sequence("fermi_gbm_json")[0]  # the alert: no ra_dec_error, no position yet
    seen = reading(engine_rules, first)
    earlier = (
        Factor("expiry", Vote.PASS, detail="age 0 s"),
        Factor("bright", Vote.PASS, detail="snr=9"),
        Factor("localised", Vote.FAIL, detail="error=12 deg"),
        Factor("southern", Vote.PASS, detail="dec=-30 deg"),
    )
    state = EventState(
        "gbm-json", "745121685", 1, first.received, earlier, 2, "notice 2 (fermi.gbm, then)"
    )
    states = EventStates({("gbm-json", "745121685"): state})
    (verdict,) = decide(engine_rules, states, seen, first.received)
    localised = verdict.decision.factor("localised")
    assert localised is not None and localised.vote is Vote.FAIL and localised.inherited
    assert localised.detail == "error=12 deg; from notice 2 (fermi.gbm, then)"
    assert verdict.decision.conclusion is Conclusion.FAIL  # the inherited FAIL still counts
    assert verdict.decision.seq == 3
    # With no earlier votes the same notice cannot decide them: UNKNOWN, so FAIL.
    (fresh,) = decide(engine_rules, EventStates(), seen, first.received)
    assert fresh.decision.factor("localised").vote is Vote.UNKNOWN  # type: ignore[union-attr]
    assert fresh.decision.seq == 1 and fresh.event is not None and fresh.event.pk is None


def test_the_clock_is_an_argument_expiry_and_maybe_demoted(engine_rules: RuleSet) -> None:
    """behaviour.md 2.5/2.6: expiry is judged on the clock given, never the wall clock; an
    automatic decision demotes MAYBE to FAIL."""
    second = sequence("fermi_gbm_json")[1]
    seen = reading(engine_rules, second)
    (now,) = decide(engine_rules, EventStates(), seen, second.received)
    assert now.decision.conclusion is Conclusion.PASS
    later = second.received + 2 * 86400  # two days on: past the trigger's 1 d expiry
    (stale,) = decide(engine_rules, EventStates(), seen, later)
    assert stale.decision.factor("expiry").vote is Vote.MAYBE  # type: ignore[union-attr]
    assert stale.decision.votes is Vote.MAYBE
    assert stale.decision.conclusion is Conclusion.FAIL
    assert stale.decision.at == later
    (dry,) = decide(engine_rules, EventStates(), seen, second.received, Source.DRY_RUN)
    assert dry.decision.source is Source.DRY_RUN and dry.decision.passed


def test_priority_order_a_higher_priority_pass_on_the_same_notice_counts(tmp_path: Path) -> None:
    """Triggers decide in priority order: `passed('gbm-json')` sees gbm-json's PASS on this
    very notice, and `passed()` an earlier PASS of the trigger itself from the state."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "topics.yaml").write_text((NOTICES.parent / "rules/topics.yaml").read_text())
    gbm = (NOTICES.parent / "rules/engine.yaml").read_text().split("  - id: swift-grb")[0]
    follow = (
        gbm.split("triggers:\n", 1)[1]
        .replace("id: gbm-json", "id: gbm-once")
        .replace("priority: 20", "priority: 50")
        .replace(
            "      bright: snr > 4\n",
            "      first_pass: not passed()\n      gbm_passed: passed('gbm-json')\n",
        )
    )
    (rules_dir / "rules.yaml").write_text(gbm + follow)
    rules = load_ruleset([rules_dir])
    second = sequence("fermi_gbm_json")[1]
    seen = reading(rules, second)
    assert wanted(seen, rules, history_readers(rules)) == [
        ("gbm-json", "745121685"),
        ("gbm-once", "745121685"),
    ]
    gbm_json, once = decide(rules, EventStates(), seen, second.received)
    assert [gbm_json.decision.trigger, once.decision.trigger] == ["gbm-json", "gbm-once"]
    assert gbm_json.decision.passed
    assert once.decision.factor("gbm_passed").vote is Vote.PASS  # type: ignore[union-attr]
    assert once.decision.passed
    # Nothing of that PASS is kept between calls: the same inputs decide the same again.
    assert decide(rules, EventStates(), seen, second.received) == (gbm_json, once)
    # The state says gbm-once has passed this event before: not again.
    before = EventState("gbm-once", "745121685", 7, second.received, None, 1, None, True)
    states = EventStates({("gbm-once", "745121685"): before})
    _, again = decide(rules, states, seen, second.received)
    assert again.decision.factor("first_pass").vote is Vote.FAIL  # type: ignore[union-attr]
    assert not again.decision.passed
    after = again.event
    assert after is not None and (after.pk, after.seq, after.passed) == (7, 2, True)
    assert after.factors == again.decision.factors
    assert after.event_time is not None and after.event_time < second.received  # the GRB's


def test_a_notice_without_an_event_id_is_not_applicable(engine_rules: RuleSet) -> None:
    notice = sequence("fermi_gbm_json")[0]
    broken = dataclasses.replace(notice, payload=notice.payload.replace(b'"id"', b'"xid"'))
    (verdict,) = decide(engine_rules, EventStates(), reading(engine_rules, broken), broken.received)
    assert verdict.decision.conclusion is Conclusion.NOT_APPLICABLE
    assert verdict.event is None and verdict.decision.event_id is None


def test_the_engine_imports_no_product_code_the_rule_set_brings_the_sky_map(
    engine_rules: RuleSet, tmp_path: Path
) -> None:
    """Per-notice providers come with the compiled rules (JSON triggers: the LVK sky map),
    never from an import in the engine."""
    import ast

    from tracerules.products.sky.skymap_functions import skymap_extras
    from tracerules.runtime import engine as package

    for module in ("engine", "decide", "evaluate", "events", "decisions"):
        tree = ast.parse((Path(package.__file__).parent / f"{module}.py").read_text())
        imported = [
            node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
        ]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [m for m in imported if m.startswith("tracerules.products")], module
    assert engine_rules.providers == (skymap_extras,)  # gbm-json reads JSON
    xml_only = tmp_path / "rules"
    xml_only.mkdir()
    (xml_only / "topics.yaml").write_text((NOTICES.parent / "rules/topics.yaml").read_text())
    swift = (NOTICES.parent / "rules/engine.yaml").read_text().split("  - id: swift-grb")[1]
    (xml_only / "rules.yaml").write_text(
        "schema_version: 1\ntriggers:\n  - id: swift-grb" + swift.split("\n  - id:")[0] + "\n"
    )
    assert load_ruleset([xml_only]).providers == ()
