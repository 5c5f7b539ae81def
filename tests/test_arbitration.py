"""Observation arbitration (behaviour.md section 3), through the engine on real Swift notices.

Each case builds triggers that differ only in priority, re-pointing threshold or test flag,
and sends real BAT and XRT notices through them.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from tests.conftest import DATA, sequence
from tests.sql import sql_rows, sql_value
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.sources.notices import Notice
from tracerules.runtime.store.store import Store

TRIGGER = """\
  - id: {id}
    topics: [{topics}]
    event_id: trig_id
    event_time: burst_time
    expiry: 1 d
    priority: {priority}
    fields:
      trig_id: {{xpath: "//Param[@name='TrigID']/@value", as: int}}
      burst_time: {{xpath: "//ISOTime", as: time}}
      ra: {{expr: "{ra}", as: angle}}
      dec: {{xpath: "//Position2D/Value2/C2", as: angle}}
      is_test: {{expr: "{test}"}}
    actions:
      - type: observation
        observatory: mwa
        repoint: {repoint}
        test: is_test
    lint: {{disable: [no-conditions]}}
"""


def engine_for(tmp_path: Path, *triggers: dict[str, object], name: str = "rules") -> Engine:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "topics.yaml").write_text((DATA / "rules" / "topics.yaml").read_text())
    both = "gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK, gcn.classic.voevent.SWIFT_XRT_POSITION"
    defaults = {"ra": "123.0", "test": "false", "repoint": "1 deg", "topics": both}
    body = "".join(TRIGGER.format(**{**defaults, **t}) for t in triggers)
    (folder / "triggers.yaml").write_text("schema_version: 1\ntriggers:\n" + body)
    return Engine(
        load_ruleset([folder]), Store(tmp_path / f"{name}.sqlite"), out_dir=tmp_path / "out"
    )


def bat_and_xrt() -> tuple[Notice, Notice]:
    chain = sequence("swift_chain")
    bat = next(n for n in chain if "BAT_GRB_Pos" in (n.name or ""))
    xrt = next(n for n in chain if "XRT_Pos" in (n.name or ""))
    return bat, xrt


def statuses(engine: Engine) -> list[tuple[str, str]]:
    return [
        (r["trigger"], r["status"])
        for r in sql_rows(engine.store, "SELECT trigger, status FROM actions ORDER BY id")
    ]


def logs(engine: Engine) -> str:
    return "\n".join(r["log"] for r in sql_rows(engine.store, "SELECT log FROM actions"))


def test_a_free_observatory_starts_and_equal_priority_nearby_is_a_clash(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, {"id": "a", "priority": 10})
    bat, xrt = bat_and_xrt()
    engine.process(bat)
    engine.process(xrt)  # same trigger, same position: no re-pointing
    assert statuses(engine) == [("a", "done"), ("a", "clash")]
    assert "was free" in logs(engine) and "within the 1.000 deg threshold" in logs(engine)


def test_higher_priority_overrides(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, {"id": "low", "priority": 20}, {"id": "high", "priority": 5})
    bat, _ = bat_and_xrt()
    engine.process(bat)
    # Both triggers evaluate the same notice in priority order: high first, then low clashes.
    assert statuses(engine) == [("high", "done"), ("low", "clash")]
    assert "has higher priority than 20" in logs(engine)


def test_a_later_higher_priority_request_overrides_a_running_observation(tmp_path: Path) -> None:
    xrt_only = "gcn.classic.voevent.SWIFT_XRT_POSITION"
    engine = engine_for(
        tmp_path, {"id": "low", "priority": 20}, {"id": "high", "priority": 5, "topics": xrt_only}
    )
    bat, xrt = bat_and_xrt()
    engine.process(bat)  # low starts observing
    engine.process(xrt)  # high overrides it; low's own refinement then clashes with high
    assert statuses(engine) == [("low", "done"), ("high", "done"), ("low", "clash")]
    assert "priority 5 overrides low/1201696 (priority 20)" in logs(engine)
    current = sql_rows(engine.store, "SELECT trigger FROM observations")
    assert [r["trigger"] for r in current] == ["high"]


def test_equal_priority_repoints_only_beyond_the_threshold(tmp_path: Path) -> None:
    moved = "case when topic == 'gcn.classic.voevent.SWIFT_XRT_POSITION' then 123.5 else 123 end"
    engine = engine_for(tmp_path, {"id": "a", "priority": 10, "repoint": "10 arcmin", "ra": moved})
    bat, xrt = bat_and_xrt()
    engine.process(bat)
    engine.process(xrt)  # 0.5 deg further in RA at this declination: beyond 10 arcmin
    assert statuses(engine) == [("a", "done"), ("a", "done")]
    assert "repoint" in logs(engine)


def test_test_and_live_observations_never_clash(tmp_path: Path) -> None:
    engine = engine_for(
        tmp_path, {"id": "live", "priority": 10}, {"id": "drill", "priority": 10, "test": "true"}
    )
    bat, _ = bat_and_xrt()
    engine.process(bat)
    assert statuses(engine) == [("drill", "done"), ("live", "done")]
    rows = sql_rows(engine.store, "SELECT test FROM observations ORDER BY test")
    assert [r["test"] for r in rows] == [0, 1]


def test_an_observation_ends_after_its_duration(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, {"id": "a", "priority": 10})
    bat, xrt = bat_and_xrt()
    engine.process(bat)
    later = dataclasses.replace(xrt, received=bat.received + 2 * 3600, digest="")
    engine.process(later)  # the default duration is 1 h: the telescope is free again
    assert statuses(engine) == [("a", "done"), ("a", "done")]


def test_two_decisions_racing_for_one_observatory_start_once(tmp_path: Path) -> None:
    """Two engines (two connections, two threads) decide at once: only one may start."""
    first = engine_for(tmp_path, {"id": "a", "priority": 10}, name="one")
    path = first.store.path
    second = Engine(first.rules, Store(path), out_dir=tmp_path / "out")
    bat, _ = bat_and_xrt()
    copies = [
        bat,
        dataclasses.replace(bat, offset=bat.offset + 1000, digest="", payload=bat.payload + b"\n"),
    ]
    barrier = threading.Barrier(2)

    def decide(engine: Engine, notice: Notice) -> None:
        barrier.wait()
        engine.process(notice)

    threads = [
        threading.Thread(target=decide, args=pair)
        for pair in ((first, copies[0]), (second, copies[1]))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    rows = sql_rows(first.store, "SELECT status FROM actions ORDER BY id")
    assert sorted(r["status"] for r in rows) == ["clash", "done"]
    assert sql_value(first.store, "SELECT count(*) FROM observations") == 1
