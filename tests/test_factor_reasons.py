"""Why a factor could not vote, and where a kept vote came from (issue 16, item 10).

A masked field (a case with no `else` that matched nothing) makes its conditions UNKNOWN: the
reason names the field and what its `when`s read. A vote kept from an earlier notice says
which notice. Real Fermi GBM notices, the real engine, a real store."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import DATA, NOTICES
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.engine.replay import replay
from tracerules.runtime.sources.files import iter_notices
from tracerules.runtime.store.history import events
from tracerules.runtime.store.store import Store

MASKED = """schema_version: 1
triggers:
  - id: gbm-voevent
    topics: [gcn.classic.voevent.FERMI_GBM_ALERT, gcn.classic.voevent.FERMI_GBM_FLT_POS]
    event_id: trig_id
    event_time: burst_time
    expiry: 1 d
    fields:
      trig_id: {xpath: "//Param[@name='TrigID']/@value", as: int}
      burst_time: {xpath: "//ISOTime", as: time}
      coords_type: {xpath: "//Param[@name='Coords_Type']/@value", as: int}
      error_raw: {xpath: "//Position2D/Error2Radius", as: angle}
      # Coords_Type 0: the 0, 0 +- 0 position of the Alert is no position at all.
      error: {expr: "case when coords_type == 1 then error_raw end"}
    conditions:
      localised: error < 15 deg
"""


def test_a_masked_field_names_itself_and_what_masked_it(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "topics.yaml").write_text((DATA / "rules" / "topics.yaml").read_text())
    (rules / "gbm.yaml").write_text(MASKED)
    engine = Engine(load_ruleset([rules]), Store(tmp_path / "s.sqlite"), dry_run=True)
    alert = sorted((NOTICES / "fermi_gbm_voevent").glob("01_GBM_Alert*.xml"))
    flight = sorted((NOTICES / "fermi_gbm_voevent").glob("0[23]_GBM_Flt_Pos*.xml"))
    for notice in iter_notices([*alert, *flight]):
        engine.process(notice)
    (view,) = events(engine.store, trigger="gbm-voevent")
    first, second, third = (d.factor("localised") for d in view.decisions)
    assert first is not None and first.vote.value == "UNKNOWN"
    assert first.reason == "error is missing: no case matched (coords_type=0)"
    assert second is not None and second.vote.value == "FAIL"  # 21.5 deg on the flight
    assert third is not None and third.vote.value == "PASS" and third.detail == "error=12.6 deg"


def test_an_inherited_vote_says_which_notice_it_came_from(tmp_path: Path) -> None:
    rules = load_ruleset([DATA / "rules"])
    result = replay(rules, iter_notices([NOTICES / "fermi_gbm_json"]))
    try:
        (view,) = events(result.store, trigger="gbm-json")
        kept = [(d.seq, f) for d in view.decisions for f in d.factors if f.inherited and f.detail]
        assert kept, "the GBM chain keeps votes across notices"
        for seq, factor in kept:
            assert "from notice " in (factor.detail or ""), factor
            origin = int((factor.detail or "").split("from notice ")[1].split()[0])
            assert origin < seq  # an earlier notice of the event
            assert "(fermi.gbm, 2024-08-" in (factor.detail or "")
    finally:
        result.close()


def test_the_origin_survives_a_restart(tmp_path: Path) -> None:
    """The engine reloads an event from the store: a vote kept after that still names the
    notice it came from."""
    rules = load_ruleset([DATA / "rules"])
    notices = list(iter_notices([NOTICES / "fermi_gbm_json"]))
    path = tmp_path / "s.sqlite"
    first = Engine(rules, Store(path), dry_run=True)
    for notice in notices[:3]:
        first.process(notice)
    first.store.close()
    again = Engine(rules, Store(path), dry_run=True)  # a fresh cache: state from the store
    for notice in notices[3:]:
        again.process(notice)
    (view,) = events(again.store, trigger="gbm-json")
    later = [f for d in view.decisions[3:] for f in d.factors if f.inherited and f.detail]
    assert later and all("from notice " in (f.detail or "") for f in later)
