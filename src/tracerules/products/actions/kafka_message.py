"""The `kafka` action: produce a derived message, such as a decision summary, to a topic.

Another trigger can subscribe to that topic (add it to the topic registry as ``json``), so
triggers chain: a fast "candidate" trigger announces, slower ones refine. The message is a
JSON template tree over the fields (default: a summary of the decision), keyed by the event
id unless ``key`` says otherwise, with the action's idempotency key as a header so consumers
can drop a redelivered copy.

Bootstrap servers come from ``bootstrap`` or, when it is left out, from the environment
variable ``TRACERULES_KAFKA_BOOTSTRAP``. ``config`` passes other librdkafka settings, with
`${env:NAME}` for credentials. confluent_kafka is imported only when a message is sent.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Literal

from pydantic import Field

from tracerules.dsl.templates import resolve_env
from tracerules.products.actions.provenance import Provenance
from tracerules.products.actions.registry import (
    ActionConfig,
    ActionOutcome,
    ActionRequest,
    ActionType,
)
from tracerules.products.actions.templating import (
    render_text,
    render_tree,
    resolve_tree,
    strict_json,
    tree_templates,
)

BOOTSTRAP_ENV = "TRACERULES_KAFKA_BOOTSTRAP"


class KafkaConfig(ActionConfig):
    """Produce a JSON message to a Kafka topic (default: a summary of the decision)."""

    type: Literal["kafka"]
    topic: str = Field(description="the topic to produce to (a template)")
    message: Any = Field(None, description="JSON message: a YAML tree whose strings are templates")
    key: str = Field("{event_id}", description="the message key (a template)")
    bootstrap: str | None = Field(
        None, description=f"bootstrap servers; default: the {BOOTSTRAP_ENV} variable"
    )
    config: dict[str, str] = Field(
        default_factory=dict, description="extra librdkafka settings; ${env:NAME} for secrets"
    )
    timeout: float = Field(15.0, gt=0, description="seconds to wait for the broker's receipt")

    template_fields: ClassVar[tuple[str, ...]] = ("topic", "key", "bootstrap")

    def templates(self) -> dict[str, str]:
        return {**super().templates(), **tree_templates("message", self.message)}


def summary(request: ActionRequest) -> dict[str, Any]:
    """The default message: what was decided, on which notice, with the fields."""
    values = request.values
    return {
        "kind": "tracerules.decision",
        "trigger": request.trigger,
        "event_id": request.event_id,
        "decision": request.decision_id,
        "conclusion": values.get("conclusion"),
        "notice": {k: values.get(k) for k in ("notice_id", "topic", "partition", "offset")},
        "fields": dict(values),
        "idempotency_key": request.idempotency_key,
        "provenance": Provenance.of(request).as_dict(),
    }


def run(config: KafkaConfig, request: ActionRequest) -> ActionOutcome:
    from confluent_kafka import KafkaError, Message, Producer

    values = request.values
    topic = render_text(config.topic, values)
    bootstrap_text = config.bootstrap or os.environ.get(BOOTSTRAP_ENV)
    if not bootstrap_text:
        return ActionOutcome(False, [f"no bootstrap servers: set bootstrap or {BOOTSTRAP_ENV}"])
    try:
        settings = {
            "bootstrap.servers": resolve_env(render_text(bootstrap_text, values)),
            **resolve_tree(config.config),
        }
    except KeyError as err:
        return ActionOutcome(False, [f"not sent: {err.args[0]}"])
    settings.setdefault("linger.ms", 0)
    settings.setdefault("message.timeout.ms", int(config.timeout * 900))  # under our limit
    tree = summary(request) if config.message is None else render_tree(config.message, values)
    body = strict_json(tree).encode()  # never resolved: a message is stored downstream
    receipts: list[tuple[KafkaError | None, Message]] = []
    producer = Producer(settings)
    producer.produce(
        topic,
        body,
        key=render_text(config.key, values).encode(),
        headers={"idempotency-key": request.idempotency_key.encode()},
        on_delivery=lambda err, msg: receipts.append((err, msg)),
    )
    remaining = producer.flush(config.timeout * 0.95)
    if remaining or not receipts:
        return ActionOutcome(False, [f"no receipt from the broker for {topic}"])
    error, message = receipts[0]
    if error is not None:
        return ActionOutcome(False, [f"produce to {topic} failed: {error}"])
    where = f"{topic} [{message.partition()}] @ {message.offset()}"
    return ActionOutcome(
        True,
        [f"produced {len(body)} bytes to {where}"],
        detail={"partition": message.partition(), "offset": message.offset()},
    )


ACTION = ActionType("kafka", KafkaConfig, run, __doc__ or "")
