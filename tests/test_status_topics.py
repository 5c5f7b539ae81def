"""`tracerules status` and `topics`: a topic's error is shown until a good notice follows it."""

from __future__ import annotations

import time

from tests.conftest import NOTICES
from tracerules.cli.status import render
from tracerules.report.browse import topics
from tracerules.rules.compile import RuleSet
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.service.health import Recorder, snapshot
from tracerules.runtime.sources.files import notice_from_bytes, notice_from_file
from tracerules.runtime.store.store import Store

TOPIC = "gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK"
GOOD = NOTICES / "swift_chain" / "02_BAT_GRB_Pos_1201696-785.xml"
BROKEN = b"<voe:VOEvent><unclosed>"


def topic_row(store: Store) -> dict[str, object]:
    (row,) = [t for t in snapshot(store)["topics"] if t["topic"] == TOPIC]
    return row


def error_line(store: Store) -> str:
    (line,) = [x for x in render(snapshot(store)).splitlines() if x.startswith(TOPIC)]
    return line


def test_a_dead_letter_is_a_topic_error_until_a_good_notice_follows(
    engine: Engine, store: Store, engine_rules: RuleSet
) -> None:
    engine.process(notice_from_bytes(BROKEN, topic=TOPIC, received=1.7e9))
    assert "malformed XML" in error_line(store)
    (listed,) = [t for t in topics(store, engine_rules) if t["topic"] == TOPIC]
    assert listed["status"] == "error"

    engine.process(notice_from_file(GOOD, topic=TOPIC, received=1.7e9 + 60))
    assert "malformed XML" not in error_line(store)
    row = topic_row(store)
    assert not row["error_current"] and row["recovered"] == 1.7e9 + 60
    assert row["last_error"]  # kept in the JSON for the record
    (listed,) = [t for t in topics(store, engine_rules) if t["topic"] == TOPIC]
    assert listed["status"] == "subscribed"

    engine.process(notice_from_bytes(BROKEN + b" ", topic=TOPIC, received=1.7e9 + 120))
    assert "malformed XML" in error_line(store)  # a new error after the recovery shows again


def test_a_kafka_topic_error_clears_on_the_next_notice(engine: Engine, store: Store) -> None:
    Recorder(store).topic_error(TOPIC, "Broker: Unknown topic or partition")
    assert "Unknown topic" in error_line(store)
    engine.process(notice_from_file(GOOD, topic=TOPIC, received=time.time() + 1))
    assert "Unknown topic" not in error_line(store)


def test_error_is_current() -> None:
    from tracerules.runtime.service.health import error_is_current

    assert not error_is_current(None, None)
    assert error_is_current(10.0, None)
    assert error_is_current(10.0, 9.0)
    assert not error_is_current(10.0, 10.0)
    assert not error_is_current(10.0, 11.0)
