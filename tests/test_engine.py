"""The engine on real notice sequences: events, inheritance, expiry, isolation, dedup."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.conftest import NOTICES, sequence
from tests.sql import sql_rows, sql_value
from tracerules.dsl.builtins import Builtin, assemble
from tracerules.dsl.values import Type, Vote
from tracerules.rules.compile import load_ruleset
from tracerules.rules.functions import builtin_functions
from tracerules.runtime.engine.decisions import Conclusion, Decision, Source
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.sources.files import notice_from_file
from tracerules.runtime.sources.notices import Notice
from tracerules.runtime.store.store import Store


def votes(decision: Decision) -> dict[str, str]:
    """Factor votes as text, with '*' marking an inherited one."""
    return {f.name: f.vote.value + ("*" if f.inherited else "") for f in decision.factors}


def only(decisions: list[Decision], trigger: str) -> Decision:
    (decision,) = [d for d in decisions if d.trigger == trigger]
    return decision


def test_fermi_gbm_positions_unknown_first_then_decided_then_inherited(engine: Engine) -> None:
    notices = sequence("fermi_gbm_json")
    assert len(notices) == 7
    results = [only(engine.process(n).decisions, "gbm-json") for n in notices]
    first, second = results[0], results[1]
    assert votes(first) == {
        "expiry": "PASS",
        "bright": "PASS",
        "localised": "UNKNOWN",
        "southern": "UNKNOWN",
    }
    assert first.conclusion is Conclusion.FAIL  # never determined counts as FAIL
    assert "no match for $.ra_dec_error" in (first.factor("localised").reason or "")
    assert votes(second) == {
        "expiry": "PASS",
        "bright": "PASS",
        "localised": "PASS",
        "southern": "PASS",
    }
    assert second.conclusion is Conclusion.PASS
    assert {d.event_id for d in results} == {"745121685"}
    assert [d.seq for d in results] == [1, 2, 3, 4, 5, 6, 7]
    # Later notices without rate_snr keep the earlier vote, marked inherited.
    inherited = [d.factor("bright") for d in results if d.factor("bright").inherited]
    assert inherited, "some GBM notice lacks rate_snr, so 'bright' must be inherited"
    assert all(f.vote is Vote.PASS and f.reason for f in inherited)


def test_swift_chain_conclusions_change_as_notices_arrive(engine: Engine) -> None:
    outcomes = []
    for notice in sequence("swift_chain"):
        processed = engine.process(notice)
        outcomes += [
            (notice.topic.rsplit(".", 1)[1], d.conclusion, votes(d)) for d in processed.decisions
        ]
    kinds = [k for k, _, _ in outcomes]
    assert kinds[0] == "SWIFT_BAT_GRB_POS_ACK"
    assert "SWIFT_XRT_POSITION" in kinds
    bat = outcomes[0]
    assert bat[2]["sharp"] == "FAIL"  # BAT's error circle is arcminutes wide
    assert bat[1] is Conclusion.FAIL
    xrt = next(o for o in outcomes if o[0] == "SWIFT_XRT_POSITION")
    assert xrt[2]["is_grb"] == "PASS*"  # XRT notices carry no GRB_Identified: inherited
    assert xrt[2]["sharp"] == "PASS"  # XRT localises to arcseconds
    assert xrt[1] is Conclusion.PASS
    events = sql_rows(
        engine.store, "SELECT event_id, notices FROM events WHERE trigger='swift-grb'"
    )
    assert [(r["event_id"], r["notices"]) for r in events] == [("1201696", len(outcomes))]


def test_lvk_preliminary_initial_retraction(engine: Engine) -> None:
    notices = sequence("lvk_voevent", "0*_S191110af-*")
    decisions = [only(engine.process(n).decisions, "lvk-voevent") for n in notices]
    assert [d.conclusion for d in decisions] == [Conclusion.PASS, Conclusion.PASS, Conclusion.FAIL]
    retraction = decisions[2]
    assert votes(retraction)["not_retracted"] == "FAIL"
    assert votes(retraction)["significant"] == "PASS*"  # a retraction has no FAR
    assert all(d.event_id == "S191110af" for d in decisions)


def test_integral_groups_only_by_masked_trigger_id(engine: Engine) -> None:
    decisions = [only(engine.process(n).decisions, "integral") for n in sequence("integral")]
    raw_ids = {d.factor("strong").detail for d in decisions}
    assert len(decisions) == 5 and len(raw_ids) >= 1
    assert {d.event_id for d in decisions} == {"10436"}
    event = sql_rows(engine.store, "SELECT * FROM events WHERE trigger='integral'")
    assert len(event) == 1 and event[0]["notices"] == 5
    # The earliest parseable event time wins (the first notice says .54, the second .53).
    assert event[0]["event_time"] == pytest.approx(1701234359.53)
    # A pretend trigger records what it would have done and never acts.
    actions = sql_rows(engine.store, "SELECT status FROM actions WHERE trigger='integral'")
    assert actions and {a["status"] for a in actions} == {"pretend"}


def test_a_failing_trigger_becomes_an_error_decision_and_the_next_still_runs(
    tmp_path: Path,
) -> None:
    def fragile(snr: float) -> float:
        if snr > 5:
            raise RuntimeError("third-party function bug")
        return snr

    fragile_fn = Builtin("fragile", (Type.NUMBER,), Type.NUMBER, fragile, "test", "test")
    functions = assemble(builtin_functions().values(), [fragile_fn])  # a third-party function
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "topics.yaml").write_text((NOTICES.parent / "rules/topics.yaml").read_text())
    text = (NOTICES.parent / "rules/engine.yaml").read_text()
    (rules_dir / "engine.yaml").write_text(
        text.replace("      bright: snr > 4", "      bright: fragile(snr) > 4").replace(
            "    priority: 20", "    priority: 5"
        )
    )
    extra = text.split("  - id: swift-grb")[0].replace("id: gbm-json", "id: gbm-second")
    (rules_dir / "second.yaml").write_text(extra.replace("priority: 20", "priority: 50"))
    engine = Engine(
        load_ruleset([rules_dir], functions), Store(tmp_path / "s.sqlite"), out_dir=tmp_path / "out"
    )
    notice = sequence("fermi_gbm_json")[1]  # rate_snr 6.1
    decisions = engine.process(notice).decisions
    assert [d.trigger for d in decisions] == ["gbm-json", "gbm-second"]  # priority order
    broken, fine = decisions
    assert broken.conclusion is Conclusion.ERROR
    assert "third-party function bug" in (broken.error or "")
    assert fine.conclusion is Conclusion.PASS
    stored = sql_rows(engine.store, "SELECT trigger, conclusion, error FROM decisions")
    assert [(r["trigger"], r["conclusion"]) for r in stored] == [
        ("gbm-json", "ERROR"),
        ("gbm-second", "PASS"),
    ]


def test_malformed_value_gives_unknown_not_a_crash(engine: Engine) -> None:
    notice = sequence("fermi_gbm_json")[1]
    doc = json.loads(notice.payload)
    doc["ra_dec_error"] = "not-a-number"
    doc["rate_snr"] = "0x" + "f" * 400  # a hex value too large for a float
    broken = Notice(notice.topic, json.dumps(doc).encode(), 0, 99, notice.created, notice.received)
    decision = only(engine.process(broken).decisions, "gbm-json")
    assert decision.conclusion is Conclusion.FAIL
    assert decision.factor("localised").vote is Vote.UNKNOWN
    assert "'not-a-number' is not a number" in (decision.factor("localised").reason or "")


def test_a_notice_from_the_future_is_still_decided(engine: Engine) -> None:
    notice = sequence("fermi_gbm_json")[1]
    future = dataclasses.replace(notice, created=notice.received + 3600, offset=50, digest="")
    decision = only(engine.process(future).decisions, "gbm-json")
    assert decision.conclusion is Conclusion.PASS
    assert decision.notice_id is not None


def test_after_expiry_maybe_fails_and_a_manual_retrigger_passes(engine: Engine) -> None:
    bat = next(n for n in sequence("swift_chain") if "BAT_GRB_Pos" in (n.name or ""))
    xrt = next(n for n in sequence("swift_chain") if "XRT_Pos" in (n.name or ""))
    late = dataclasses.replace(xrt, received=bat.received + 2 * 3600, digest="")
    engine.process(bat)
    decision = only(engine.process(late).decisions, "swift-grb")
    assert votes(decision)["expiry"] == "MAYBE"
    assert decision.votes is Vote.MAYBE and decision.conclusion is Conclusion.FAIL
    engine.clock = lambda: late.received
    manual = engine.retrigger("swift-grb", "1201696", actor="astronomer@example.org")
    assert manual.source is Source.MANUAL
    assert manual.votes is Vote.MAYBE and manual.conclusion is Conclusion.PASS
    row = sql_rows(
        engine.store, "SELECT source, actor, conclusion FROM decisions WHERE id=?", (manual.id,)
    )[0]
    assert tuple(row) == ("manual", "astronomer@example.org", "PASS")
    assert [a.status for a in manual.actions] == ["done"]
    again = engine.retrigger("swift-grb", "1201696", actor="astronomer@example.org")
    assert again.conclusion is Conclusion.PASS and again.actions == []  # acts once


def test_the_same_notice_twice_or_at_another_offset_acts_once(
    engine: Engine, tmp_path: Path
) -> None:
    notice = sequence("fermi_gbm_json")[1]
    first = engine.process(notice)
    assert first.status == "evaluated" and only(first.decisions, "gbm-json").passed
    again = engine.process(notice)
    moved = engine.process(dataclasses.replace(notice, offset=notice.offset + 100))
    assert (again.status, again.decisions) == ("duplicate", ())
    assert moved.status == "duplicate" and "same payload" in (moved.reason or "")
    actions = sql_rows(engine.store, "SELECT status, files FROM actions")
    assert [a["status"] for a in actions] == ["done"]
    (written,) = json.loads(actions[0]["files"])
    assert Path(written).read_bytes() == notice.payload
    # A redelivery (same offset) is the same message; a re-send under a new offset is kept.
    assert sql_value(engine.store, "SELECT count(*) FROM notices") == 2


def test_unsubscribed_notices_are_stored_and_counted_not_parsed(engine: Engine) -> None:
    garbage = Notice("gcn.classic.voevent.SWIFT_POINTDIR", b"<not xml", 0, 7, None, 1.0)
    processed = engine.process(garbage)
    assert processed.status == "unsubscribed"
    stats = sql_rows(
        engine.store, "SELECT count, bytes FROM topic_stats WHERE topic=?", (garbage.topic,)
    )
    assert tuple(stats[0]) == (1, len(garbage.payload))


def test_malformed_notices_on_a_subscribed_topic_become_dead_letters(engine: Engine) -> None:
    bad = notice_from_file(
        NOTICES / "traps" / "malformed_unbound_prefix__Swift_unknown_fail.xml",
        topic="gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK",
        offset=3,
    )
    processed = engine.process(bad)
    assert processed.status == "dead"
    row = sql_rows(engine.store, "SELECT reason FROM dead_letters")[0]
    assert "Namespace prefix xsi" in row["reason"]
    assert (
        sql_value(engine.store, "SELECT status FROM notices WHERE id=?", (processed.notice_id,))
        == "dead"
    )


def test_a_notice_without_an_event_id_is_not_applicable(engine: Engine) -> None:
    notice = sequence("fermi_gbm_json")[0]
    doc = json.loads(notice.payload)
    del doc["id"]
    processed = engine.process(
        dataclasses.replace(notice, payload=json.dumps(doc).encode(), offset=40, digest="")
    )
    decision = only(processed.decisions, "gbm-json")
    assert decision.conclusion is Conclusion.NOT_APPLICABLE
    assert "no match for $.id[0]" in (decision.error or "")


def test_decisions_record_the_rule_revision(engine: Engine) -> None:
    engine.process(sequence("fermi_gbm_json")[1])
    row = sql_rows(engine.store, "SELECT rule_file, rule_revision, rule_commit FROM decisions")[0]
    assert row["rule_file"].endswith("engine.yaml")
    assert len(row["rule_revision"]) == 16
    text = (NOTICES.parent / "rules" / "engine.yaml").read_bytes()
    import hashlib

    assert row["rule_revision"] == hashlib.sha256(text).hexdigest()[:16]


def test_the_engine_is_deterministic(engine_rules: object, tmp_path: Path) -> None:
    def run(name: str) -> list[tuple[object, ...]]:
        store = Store(tmp_path / f"{name}.sqlite")
        engine = Engine(engine_rules, store, out_dir=tmp_path / name)  # type: ignore[arg-type]
        for folder in ("fermi_gbm_json", "swift_chain", "integral"):
            for notice in sequence(folder):
                engine.process(notice)
        return [
            tuple(r)
            for r in sql_rows(
                store,
                "SELECT d.trigger, d.event_id, d.seq, d.conclusion, f.value ->> 0, "
                "f.value ->> 1, f.value ->> 2 FROM decisions d, json_each(d.factors) f "
                "ORDER BY d.id, f.key",
            )
        ]

    assert run("a") == run("b")


def test_passed_tells_whether_this_or_another_trigger_already_passed(tmp_path: Path) -> None:
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
    engine = Engine(
        load_ruleset([rules_dir]), Store(tmp_path / "s.sqlite"), out_dir=tmp_path / "out"
    )
    once = [only(engine.process(n).decisions, "gbm-once") for n in sequence("fermi_gbm_json")]
    assert votes(once[0])["gbm_passed"] == "FAIL"  # gbm-json did not pass the first notice
    assert once[1].passed  # gbm-json passed this notice first, at a higher priority
    assert votes(once[1])["first_pass"] == "PASS"
    assert [d.passed for d in once[2:]] == [False] * 5  # it has passed before: only once
    assert all(votes(d)["first_pass"] == "FAIL" for d in once[2:])
