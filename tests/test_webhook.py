"""The webhook action against a real HTTP server on loopback: bodies, retries, secrets."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA, sequence
from tests.loopback import Loopback, serve
from tests.sql import sql_value
from tracerules.products.actions.observation import ObservatoryMixin
from tracerules.products.actions.registry import ActionRequest
from tracerules.products.actions.webhook import WebhookConfig, run
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.engine.decisions import ActionRecord
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.store.store import Store

SECRET = "tr-test-s3cret-9f2c7e"


@pytest.fixture
def server() -> Iterator[Loopback]:
    with serve() as loop:
        yield loop


def _request(values: dict[str, Any] | None = None) -> ActionRequest:
    return ActionRequest(
        "t", "E1", 5, "t/E1/1/0", values or {"ra": 10.5, "event_id": "E1"}, b"{}", Path(".")
    )


def _config(url: str, **keys: Any) -> WebhookConfig:
    return WebhookConfig.model_validate({"type": "webhook", "url": url, **keys})


def _rules(tmp_path: Path, server: Loopback, body: str) -> Path:
    path = tmp_path / "hooks.yaml"
    path.write_text(
        f"""schema_version: 1
triggers:
  - id: gbm-hook
    topics: [gcn.notices.fermi.gbm]
    event_id: trigger_id
    event_time: trigger_time
    expiry: 1 d
    priority: 10
    fields:
      trigger_id: {{jsonpath: "$.id[0]", as: string}}
      trigger_time: {{jsonpath: "$.trigger_time", as: time}}
      ra: {{jsonpath: "$.ra", as: angle}}
      dec: {{jsonpath: "$.dec", as: angle}}
    conditions:
      located: exists(ra)
    actions:
{body}
"""
    )
    return path


def test_webhook_sends_fields_and_keeps_secrets_out_of_store_and_logs(
    server: Loopback, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TR_TEST_TOKEN", SECRET)
    server.script["/observe"] = [(200, b'{"accepted": true, "echo": "{auth}"}', 0.0)]
    action = f"""      - type: webhook
        url: "{server.url}/observe"
        query: {{token: "${{env:TR_TEST_TOKEN}}", event: "{{event_id}}"}}
        headers: {{Authorization: "Bearer ${{env:TR_TEST_TOKEN}}"}}
        body:
          target: {{ra: "{{ra}}", dec: "{{dec}}"}}
          note: "GBM {{trigger_id}} at RA {{ra}}"
          priority: 1
        expect_key: accepted
        expect_value: true"""
    engine = Engine(
        load_ruleset([DATA / "rules" / "topics.yaml", _rules(tmp_path, server, action)]),
        store,
        out_dir=tmp_path / "out",
    )
    decision = engine.process(sequence("fermi_gbm_json")[1]).decisions[0]
    (record,) = decision.actions
    assert record.status == "done", record.log
    (seen,) = server.seen
    body = json.loads(seen.body)
    # "{ra}" alone keeps the value's JSON type: a number, not a string.
    assert isinstance(body["target"]["ra"], float) and isinstance(body["target"]["dec"], float)
    assert body["note"].startswith("GBM 745121685 at RA ") and body["priority"] == 1
    assert seen.headers["Authorization"] == f"Bearer {SECRET}"
    assert seen.query == {"token": [SECRET], "event": ["745121685"]}
    assert seen.headers["Idempotency-Key"] == record.idempotency_key
    assert seen.headers["Content-Type"] == "application/json"
    # The server echoed the token back: the stored log shows *** instead.
    log = sql_value(engine.store, "SELECT log FROM actions WHERE id=?", (record.id,))
    assert "***" in log and "${env:TR_TEST_TOKEN}" in log and SECRET not in log
    engine.store.close()
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def _dispatched(
    tmp_path: Path, server: Loopback, store: Store, path: str, **options: float
) -> tuple[ActionRecord, str]:
    """A webhook planned by a real decision and run by the dispatcher (which retries it):
    its record and its stored log."""
    lines = "".join(f"\n        {key}: {value}" for key, value in options.items())
    action = f'      - type: webhook\n        url: "{server.url}{path}"' + lines
    engine = Engine(
        load_ruleset([DATA / "rules" / "topics.yaml", _rules(tmp_path, server, action)]),
        store,
        out_dir=tmp_path / "out",
    )
    (record,) = engine.process(sequence("fermi_gbm_json")[1]).decisions[0].actions
    return record, str(sql_value(store, "SELECT log FROM actions WHERE id=?", (record.id,)))


def test_webhook_retries_5xx_with_the_same_idempotency_key(
    server: Loopback, store: Store, tmp_path: Path
) -> None:
    server.script["/flaky"] = [(500, b"oops", 0.0), (503, b"busy", 0.0), (202, b"{}", 0.0)]
    started = time.monotonic()
    record, log = _dispatched(tmp_path, server, store, "/flaky", backoff=0.05)
    assert record.status == "done", log
    assert [s.headers["Idempotency-Key"] for s in server.seen] == [record.idempotency_key] * 3
    assert "retrying in 0.05 s" in log and "retrying in 0.1 s" in log
    assert time.monotonic() - started < 3.0


def test_webhook_sends_one_request_per_call(server: Loopback) -> None:
    """The webhook never retries by itself: the dispatcher does (one policy, no product)."""
    server.script["/down"] = [(503, b"busy", 0.0)]
    outcome = run(_config(server.url + "/down", backoff=0.01, attempts=5), _request())
    assert not outcome.ok and len(server.seen) == 1
    assert outcome.detail == {"status": 503, "retryable": True}


def test_webhook_gives_up_after_its_attempts(
    server: Loopback, store: Store, tmp_path: Path
) -> None:
    server.script["/down"] = [(502, b"bad gateway", 0.0)]
    record, log = _dispatched(tmp_path, server, store, "/down", backoff=0.01, attempts=2)
    assert record.status == "failed" and len(server.seen) == 2
    assert log.count("status 502 bad gateway") == 2 and log.count("retrying in") == 1


def test_webhook_does_not_retry_4xx(server: Loopback, store: Store, tmp_path: Path) -> None:
    server.script["/bad"] = [(422, b'{"error": "no such target"}', 0.0)]
    record, log = _dispatched(tmp_path, server, store, "/bad", backoff=0.01, attempts=5)
    assert record.status == "failed" and len(server.seen) == 1
    assert log.splitlines()[-1] == "failed: status 422 is not accepted"


def test_webhook_timeouts_are_retried_then_fail(
    server: Loopback, store: Store, tmp_path: Path
) -> None:
    server.script["/slow"] = [(200, b"{}", 3.0)]
    started = time.monotonic()
    options = {"request_timeout": 0.3, "attempts": 2, "backoff": 0.05}
    record, log = _dispatched(tmp_path, server, store, "/slow", **options)
    assert record.status == "failed" and len(server.seen) == 2
    assert log.count("no answer within 0.3 s") == 2
    assert time.monotonic() - started < 2.0


def test_webhook_answer_is_bounded_by_the_action_time_limit(server: Loopback) -> None:
    server.script["/slow"] = [(200, b"{}", 3.0)]
    config = _config(server.url + "/slow", request_timeout=5, attempts=10, backoff=0.1, timeout=1.5)
    started = time.monotonic()
    outcome = run(config, _request())
    assert not outcome.ok and time.monotonic() - started < 1.5
    assert len(server.seen) == 1 and "no answer within 1.35 s" in outcome.log[0]


def test_webhook_checks_the_answer(server: Loopback) -> None:
    server.script["/check"] = [(200, b'{"result": {"accepted": false}}', 0.0)]
    config = _config(server.url + "/check", expect_key="result.accepted", expect_value=True)
    outcome = run(config, _request())
    assert not outcome.ok and len(server.seen) == 1
    assert outcome.log[-1] == "failed: result.accepted is False, not True"
    only = _config(server.url + "/check", ok_status=[201])
    assert run(only, _request()).log[-1] == "failed: status 200 is not accepted"


def test_webhook_get_with_a_query_and_no_body(server: Loopback) -> None:
    config = _config(server.url + "/q?fixed=1", method="GET", query={"ra": "{ra}"})
    assert run(config, _request()).ok
    (seen,) = server.seen
    assert seen.method == "GET" and seen.body == b""
    assert seen.query == {"fixed": ["1"], "ra": ["10.5"]}


def test_webhook_default_body_is_the_decision(server: Loopback) -> None:
    assert run(_config(server.url + "/d"), _request()).ok
    body = json.loads(server.seen[0].body)
    assert body["trigger"] == "t" and body["event_id"] == "E1" and body["decision"] == 5
    assert body["fields"] == {"ra": 10.5, "event_id": "E1"}


def test_webhook_without_its_secret_is_not_sent(
    server: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TR_TEST_UNSET", raising=False)
    config = _config(server.url + "/x", headers={"Authorization": "Bearer ${env:TR_TEST_UNSET}"})
    outcome = run(config, _request())
    assert not outcome.ok and not server.seen
    assert outcome.log == ["not sent: environment variable TR_TEST_UNSET is not set"]


def test_webhook_refused_connection_is_a_failure() -> None:
    outcome = run(_config("http://127.0.0.1:9/none", attempts=2, backoff=0.01), _request())
    assert not outcome.ok and "cannot connect" in outcome.log[0]
    assert outcome.detail["retryable"]


def test_webhook_with_an_observatory_is_arbitrated(
    server: Loopback, store: Store, tmp_path: Path
) -> None:
    assert issubclass(WebhookConfig, ObservatoryMixin)
    hook = f"""      - type: webhook
        url: "{server.url}/scope"
        observatory: scope-1
        repoint: 10 arcmin"""
    path = _rules(tmp_path, server, hook)
    text = path.read_text()
    second = text.split("triggers:\n", 1)[1].replace("gbm-hook", "gbm-hook-low")
    path.write_text(text + second.replace("priority: 10", "priority: 20"))
    engine = Engine(
        load_ruleset([DATA / "rules" / "topics.yaml", path]), store, out_dir=tmp_path / "out"
    )
    decisions = engine.process(sequence("fermi_gbm_json")[1]).decisions
    statuses = {d.trigger: [a.status for a in d.actions] for d in decisions}
    assert statuses == {"gbm-hook": ["done"], "gbm-hook-low": ["clash"]}
    assert len(server.seen) == 1  # the clash was recorded, never sent
