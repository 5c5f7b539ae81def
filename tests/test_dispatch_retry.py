"""One retry policy, owned by the dispatcher: exact attempt counts at a local HTTP server
that answers 503 or hangs, the run budget derived from the policy, and a timed-out attempt
whose late answer never records a second outcome."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import late_plugin
from tests.conftest import gbm_rules, sequence
from tests.loopback import Loopback, serve
from tests.service_harness import wait_until
from tests.sql import sql_rows, sql_value
from tracerules.products.actions.webhook import WebhookConfig
from tracerules.runtime.dispatch.retry import Policy, policy_of
from tracerules.runtime.dispatch.workers import run_budget
from tracerules.runtime.engine.decisions import ActionRecord
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.store.store import Store


@pytest.fixture
def server() -> Iterator[Loopback]:
    with serve() as loop:
        yield loop


def _run(tmp_path: Path, store: Store, action: str) -> tuple[Engine, ActionRecord]:
    """One decision of a real notice whose single action is `action` (YAML), run inline."""
    engine = Engine(gbm_rules(tmp_path, "gbm-retry", action), store, out_dir=tmp_path / "out")
    (record,) = engine.process(sequence("fermi_gbm_json")[1]).decisions[0].actions
    return engine, record


@pytest.mark.parametrize(
    ("options", "requests"),
    [
        ("attempts: 1", 1),  # no retry
        ("attempts: 1\n        retries: 2", 3),  # `retries:` extra attempts
        ("retries: 0", 3),  # a webhook's default: 3 tries in all
        ("attempts: 2\n        retries: 3", 4),  # the larger of the two, never their product
    ],
)
def test_retry_counts_are_exact_at_a_server_answering_503(
    server: Loopback, store: Store, tmp_path: Path, options: str, requests: int
) -> None:
    server.script["/busy"] = [(503, b"busy", 0.0)]
    action = f"""      - type: webhook
        url: "{server.url}/busy"
        backoff: 0
        {options}
"""
    _, record = _run(tmp_path, store, action)
    assert record.status == "failed"
    assert len(server.seen) == requests
    log = sql_value(store, "SELECT log FROM actions WHERE id=?", (record.id,))
    assert log.count("status 503 busy") == requests
    assert log.count("retrying in 0 s") == requests - 1
    assert sql_value(store, "SELECT attempts FROM actions WHERE id=?", (record.id,)) == 1


def test_a_hang_answering_late_costs_one_attempt_and_records_one_outcome(
    server: Loopback, store: Store, tmp_path: Path
) -> None:
    server.script["/hang"] = [(200, b'{"late": true}', 3.0), (503, b"busy", 0.0)]
    action = f"""      - type: webhook
        url: "{server.url}/hang"
        request_timeout: 0.3
        attempts: 2
        backoff: 0
"""
    _, record = _run(tmp_path, store, action)
    # The 503: its handler notes it just after writing it, so it may be a moment behind.
    wait_until(lambda: server.answered, 2, "the 503 noted as answered")
    assert server.answered == ["/hang"]  # nobody waited for the late answer
    assert record.status == "failed" and len(server.seen) == 2
    before = dict(sql_rows(store, "SELECT * FROM actions WHERE id=?", (record.id,))[0])
    assert before["log"].count("no answer within 0.3 s") == 1
    deadline = time.monotonic() + 10
    while len(server.answered) < 2:  # the late answer is written now
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.1)
    after = dict(sql_rows(store, "SELECT * FROM actions WHERE id=?", (record.id,))[0])
    assert after == before and "late" not in after["log"]
    assert len(server.seen) == 2


def test_a_timed_out_attempt_is_abandoned_and_its_late_result_ignored(
    store: Store, tmp_path: Path
) -> None:
    late_plugin.reset()
    action = """      - type: plugin
        entry: tests.late_plugin:answer
        timeout: 0.5
        retries: 1
"""
    try:
        _, record = _run(tmp_path, store, action)
        assert record.status == "done" and late_plugin.calls == [1, 2]
        assert late_plugin.finished == [2]  # the first call still hangs
        before = dict(sql_rows(store, "SELECT * FROM actions WHERE id=?", (record.id,))[0])
    finally:
        late_plugin.release.set()
    deadline = time.monotonic() + 5
    while late_plugin.finished != [2, 1]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.1)
    after = dict(sql_rows(store, "SELECT * FROM actions WHERE id=?", (record.id,))[0])
    assert after == before
    log = after["log"]
    assert log.count("timed out after 0.5 s; a late result is ignored") == 1
    assert "call 2 answered" in log and "call 1 answered" not in log


def _webhook(**options: Any) -> WebhookConfig:
    return WebhookConfig.model_validate({"type": "webhook", "url": "http://x/", **options})


def test_the_run_budget_is_derived_from_the_policy(store: Store, tmp_path: Path) -> None:
    policy = policy_of(_webhook(timeout=10, attempts=3, backoff=1))
    assert policy == Policy(tries=3, timeout=10.0, first=1.0)
    assert policy.waits() == [1.0, 2.0] and policy.budget == 33.0
    assert policy_of(_webhook(retries=5, attempts=2, backoff=20, timeout=1)).waits() == [
        20.0,
        30.0,  # at most 30 s apart
        30.0,
        30.0,
        30.0,
    ]
    engine, record = _run(
        tmp_path,
        store,
        '      - type: webhook\n        url: "http://127.0.0.1:9/x"\n'
        "        timeout: 4\n        retries: 2\n        attempts: 1\n        backoff: 0.5\n",
    )
    row = sql_rows(store, "SELECT * FROM actions WHERE id=?", (record.id,))[0]
    assert run_budget(store, engine.rules, row) == 3 * 4 + 0.5 + 1.0


def test_an_outcome_is_recorded_once_and_never_after_recovery_took_the_action_back(
    store: Store, tmp_path: Path
) -> None:
    engine = Engine(
        gbm_rules(tmp_path, "gbm-once", '      - type: webhook\n        url: "http://x/"\n'),
        store,
        out_dir=tmp_path / "out",
        run_actions=False,
    )
    (planned,) = engine.process(sequence("fermi_gbm_json")[1]).decisions[0].actions
    now = 1_000.0
    assert store.claim_action(now, planned.id, owner="pid-1") is not None
    # The owner seems dead: recovery sends the action back to pending ...
    assert store.requeue_action(planned.id, "pending", "taken back\n", now + 1, seen_at=now)
    # ... so the first run's late outcome is not recorded over it.
    assert not store.finish_action(planned.id, "done", "late outcome\n", ["x"], None, now + 2)
    row = sql_rows(store, "SELECT * FROM actions WHERE id=?", (planned.id,))[0]
    assert row["status"] == "pending" and "late outcome" not in row["log"]
    assert row["files"] in (None, "[]")
    # A run that owns it records its outcome once; a second outcome changes nothing.
    assert store.claim_action(now + 3, planned.id, owner="pid-2") is not None
    assert store.finish_action(planned.id, "done", "ran\n", [], None, now + 4)
    assert not store.finish_action(planned.id, "failed", "again\n", [], None, now + 5)
    row = sql_rows(store, "SELECT * FROM actions WHERE id=?", (planned.id,))[0]
    assert row["status"] == "done" and row["log"].count("ran") == 1 and "again" not in row["log"]
