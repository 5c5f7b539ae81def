"""A webhook whose service is killed between its request going out and its outcome being
stored: the attempt was recorded before it went out, so crash recovery knows the receiver
may have it, and the rerun sends the same Idempotency-Key (header and body) again, for a
receiver that honours the key to drop. On both stores, with a real HTTP server and a real
kill -9 of the process that sent it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests import loopback
from tests.conftest import NOTICES, webhook_rules
from tests.service_harness import wait_until
from tests.sql import sql_rows
from tracerules.rules.compile import RuleSet
from tracerules.runtime.dispatch.dispatcher import Dispatcher
from tracerules.runtime.dispatch.workers import owner_token, recover
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.sources.files import notice_from_file
from tracerules.runtime.store.store import Store

SWIFT = NOTICES / "swift_chain" / "01_BAT_QuickLook_Pos_1201696-784.xml"
TOPIC = "gcn.classic.voevent.SWIFT_BAT_QL_POS"

# A service's action worker, as a separate process: claim the action and run it.
WORKER = """
import sys
from pathlib import Path
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.dispatch.dispatcher import Dispatcher
from tracerules.runtime.dispatch.workers import owner_token
from tracerules.runtime.store.store import Store

store = Store(sys.argv[1])
rules = load_ruleset([Path(sys.argv[2])])
dispatcher = Dispatcher(store, lambda: rules, Path(sys.argv[3]), retry_later=True)
row = dispatcher.claim(owner=owner_token())
dispatcher.run(row)
"""


def _planned(store: Store, rules: RuleSet, out: Path) -> int:
    engine = Engine(rules, store, out_dir=out, run_actions=False)
    processed = engine.process(notice_from_file(SWIFT, offset=0))
    (action,) = [a for d in processed.decisions for a in d.actions]
    assert action.status == "pending"
    return action.id


def _log(store: Store, action_id: int) -> str:
    return str(sql_rows(store, "SELECT log FROM actions WHERE id=?", (action_id,))[0]["log"])


def test_a_webhook_cut_off_after_its_request_went_out_is_resent_with_the_same_key(
    store: Store, tmp_path: Path
) -> None:
    with loopback.serve() as hook:
        # the first request hangs (the receiver got it; its answer never comes back)
        hook.script["/notice"] = [(200, b"{}", 60.0), (200, b'{"accepted": true}', 0.0)]
        rules = webhook_rules(tmp_path / "rules", TOPIC, hook.url, "timeout: 30")
        action_id = _planned(store, rules, tmp_path / "out")
        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(store.path), str(tmp_path / "rules"), "out"],
            cwd=tmp_path,
        )
        try:
            wait_until(lambda: hook.seen, 60, "the first request")
            sending = sql_rows(store, "SELECT status, sending_at, log FROM actions")[0]
            assert sending["status"] == "running" and sending["sending_at"] is not None
            assert "sending try 1 with Idempotency-Key" in sending["log"]  # before it went out
        finally:
            os.kill(worker.pid, signal.SIGKILL)  # between the request and its outcome stored
            worker.wait(10)

        assert recover(store, rules) == [action_id]
        requeued = _log(store, action_id)
        key = hook.seen[0].headers["Idempotency-Key"]
        assert f"after a request went out with Idempotency-Key {key}" in requeued

        done = Dispatcher(store, lambda: rules, tmp_path / "out").run_pending()
        assert [r.status for r in done] == ["done"]
        assert len(hook.seen) == 2
        first, again = hook.seen
        assert again.headers["Idempotency-Key"] == key  # a receiver that honours it drops it
        assert (
            json.loads(again.body)["idempotency_key"]
            == json.loads(first.body)["idempotency_key"]
            == key
        )
        assert f"resent with the same Idempotency-Key {key}" in _log(store, action_id)


def test_a_run_cut_off_before_its_request_went_out_is_known_to_have_sent_nothing(
    store: Store, tmp_path: Path
) -> None:
    """The control: a claim whose process died before any sending was recorded."""
    with loopback.serve() as hook:
        rules = webhook_rules(tmp_path / "rules", TOPIC, hook.url, "timeout: 30")
        action_id = _planned(store, rules, tmp_path / "out")
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait(10)
        assert store.claim_action(1.0e10, owner=owner_token(gone.pid)) is not None
        assert recover(store, rules) == [action_id]
        assert "before anything was sent" in _log(store, action_id)
        Dispatcher(store, lambda: rules, tmp_path / "out").run_pending()
        assert len(hook.seen) == 1
        assert "resent" not in _log(store, action_id)
