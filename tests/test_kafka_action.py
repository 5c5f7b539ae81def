"""The kafka action against the test broker: a derived message read back, and a chain."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from tests.conftest import DATA, sequence
from tests.kafka_broker import KafkaBroker, TopicFactory, fast_consumer_config, poll_messages
from tracerules.products.actions.kafka_message import KafkaConfig, run
from tracerules.products.actions.registry import ActionRequest
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.engine.decisions import Conclusion
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.sources.notices import Notice
from tracerules.runtime.store.store import Store

pytestmark = pytest.mark.kafka


def _read(bootstrap: str, topic: str, count: int = 1) -> list[Message]:
    """The topic's first messages, read with an assigned partition (no group join to wait)."""
    consumer = Consumer(fast_consumer_config(bootstrap, f"test-{uuid.uuid4().hex[:8]}"))
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    try:
        return poll_messages(consumer, count)
    finally:
        consumer.close()


def test_kafka_action_produces_a_templated_message(
    kafka_broker: KafkaBroker, kafka_topic_factory: TopicFactory
) -> None:
    topic = kafka_topic_factory()
    config = KafkaConfig.model_validate(
        {
            "type": "kafka",
            "topic": topic,
            "bootstrap": kafka_broker.bootstrap,
            "message": {"event": "{event_id}", "ra": "{ra}", "text": "at {ra} deg"},
        }
    )
    values = {"event_id": "E7", "ra": 12.5}
    request = ActionRequest("t", "E7", 9, "t/E7/1/0", values, b"{}", Path("."))
    outcome = run(config, request)
    assert outcome.ok, outcome.log
    (message,) = _read(kafka_broker.bootstrap, topic)
    assert json.loads(message.value() or b"") == {"event": "E7", "ra": 12.5, "text": "at 12.5 deg"}
    assert message.key() == b"E7"
    assert dict(message.headers() or [])["idempotency-key"] == b"t/E7/1/0"
    assert outcome.detail == {"partition": message.partition(), "offset": message.offset()}


def test_kafka_action_without_a_broker_address_fails_cleanly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TRACERULES_KAFKA_BOOTSTRAP", raising=False)
    config = KafkaConfig(type="kafka", topic="x")
    request = ActionRequest("t", "E", 1, "k", {}, b"", Path("."))
    outcome = run(config, request)
    assert not outcome.ok and "TRACERULES_KAFKA_BOOTSTRAP" in outcome.log[0]


def test_triggers_chain_through_a_derived_topic(
    kafka_broker: KafkaBroker,
    kafka_topic_factory: TopicFactory,
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic = kafka_topic_factory()
    monkeypatch.setenv("TRACERULES_KAFKA_BOOTSTRAP", kafka_broker.bootstrap)
    rules = tmp_path / "chain.yaml"
    rules.write_text(
        textwrap.dedent(
            f"""\
            schema_version: 1
            topics:
              - {{name: {topic}, format: json}}
            triggers:
              - id: gbm-announce
                topics: [gcn.notices.fermi.gbm]
                event_id: trigger_id
                event_time: trigger_time
                expiry: 1 d
                priority: 10
                fields:
                  trigger_id: {{jsonpath: "$.id[0]", as: string}}
                  trigger_time: {{jsonpath: "$.trigger_time", as: time}}
                  ra: {{jsonpath: "$.ra", as: angle}}
                conditions:
                  located: exists(ra)
                actions:
                  - type: kafka
                    topic: {topic}
              - id: gbm-follow-up
                topics: [{topic}]
                event_id: event
                event_time: first_seen
                expiry: 1 d
                priority: 20
                fields:
                  event: {{jsonpath: "$.event_id", as: string}}
                  first_seen: {{jsonpath: "$.fields.trigger_time", as: float}}
                  conclusion: {{jsonpath: "$.conclusion", as: string}}
                conditions:
                  announced: conclusion == "PASS"
                actions:
                  - type: notice
                    path: "chained/{{event_id}}.json"
            """
        )
    )
    engine = Engine(
        load_ruleset([DATA / "rules" / "topics.yaml", rules]), store, out_dir=tmp_path / "out"
    )
    (announce,) = engine.process(sequence("fermi_gbm_json")[1]).decisions
    assert [a.status for a in announce.actions] == ["done"], announce.actions[0].log
    (message,) = _read(kafka_broker.bootstrap, topic)
    assert (
        dict(message.headers() or [])["idempotency-key"]
        == announce.actions[0].idempotency_key.encode()
    )
    derived = Notice(topic, message.value() or b"", 0, message.offset() or 0)
    summary = json.loads(derived.payload)
    assert summary["kind"] == "tracerules.decision" and summary["trigger"] == "gbm-announce"
    assert summary["provenance"]["decision"] == announce.id
    (follow,) = engine.process(derived).decisions
    assert follow.trigger == "gbm-follow-up" and follow.conclusion is Conclusion.PASS
    assert (tmp_path / "out/chained/745121685.json").read_bytes() == derived.payload
