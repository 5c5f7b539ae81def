"""How many times an action was cut off by a crash is counted by the store (`finished_runs`:
claims that ended with an outcome sending it back to pending), never read from its log's
wording: a receiver's error text echoed into the log that says "interrupted" or "failed;
tried again" changes neither the count nor the give-up after `MAX_CLAIMS` crashes. Stores
from before the column get it counted once from their log, by the migration or the import
of an older export. On both stores, with a real HTTP receiver."""

from __future__ import annotations

import io
import json
import subprocess
import time
from pathlib import Path

from tests import loopback
from tests.conftest import NOTICES, webhook_rules
from tests.sql import old_store, run_at, sql_rows, sql_run
from tracerules.rules.compile import RuleSet
from tracerules.runtime.dispatch.dispatcher import Dispatcher
from tracerules.runtime.dispatch.workers import MAX_CLAIMS, owner_token, recover
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.sources.files import notice_from_file
from tracerules.runtime.store.actions import SCHEMA_ACTIONS_FINISHED_RUNS
from tracerules.runtime.store.schema import MIGRATIONS, SCHEMA_VERSION
from tracerules.runtime.store.store import Store
from tracerules.runtime.store.transfer import export, import_rows

SWIFT = NOTICES / "swift_chain" / "01_BAT_QuickLook_Pos_1201696-784.xml"
TOPIC = "gcn.classic.voevent.SWIFT_BAT_QL_POS"
# What a receiver in trouble may answer: words recovery once read as finished runs.
ECHOED = b'{"error": "upstream interrupted, interrupted again; failed; tried again later"}'


def _planned(store: Store, rules: RuleSet, out: Path) -> int:
    processed = Engine(rules, store, out_dir=out, run_actions=False).process(
        notice_from_file(SWIFT, offset=0)
    )
    (action,) = [a for d in processed.decisions for a in d.actions]
    return action.id


def _dead_owner() -> str:
    child = subprocess.Popen(["true"])
    child.wait()
    return owner_token(child.pid)


def _row(store: Store, action_id: int) -> dict[str, object]:
    row = sql_rows(
        store, "SELECT status, attempts, finished_runs, log FROM actions WHERE id=?", (action_id,)
    )[0]
    return {k: row[k] for k in ("status", "attempts", "finished_runs", "log")}


def test_a_receivers_words_in_the_log_do_not_change_the_crash_count(
    store: Store, tmp_path: Path
) -> None:
    with loopback.serve() as hook:
        hook.script["/notice"] = [(500, ECHOED, 0.0)]
        rules = webhook_rules(tmp_path / "rules", TOPIC, hook.url, "attempts: 1")
        action_id = _planned(store, rules, tmp_path / "out")
        dispatcher = Dispatcher(store, lambda: rules, tmp_path / "out", retry_later=True)
        result = dispatcher.run(dispatcher.claim(action_id, owner=owner_token()))
    first = _row(store, action_id)
    assert result.status == "pending" and first["finished_runs"] == 1
    assert "upstream interrupted, interrupted again; failed; tried again" in str(first["log"])

    for crash in range(1, MAX_CLAIMS + 1):  # claimed by a process that then died, each time
        later = time.time() + 3600.0  # past the failure's retry time
        assert store.claim_action(later, action_id, owner=_dead_owner()) is not None
        assert recover(store, rules) == [action_id]
        after = _row(store, action_id)
        assert after["finished_runs"] == 1  # a crash is not a finished run
        if crash < MAX_CLAIMS:
            assert after["status"] == "pending", f"crash {crash}"
    assert after["status"] == "failed"
    assert f"abandoned {MAX_CLAIMS} times" in str(after["log"])


def test_an_interrupted_run_is_a_finished_run_not_a_crash(store: Store, tmp_path: Path) -> None:
    rules = webhook_rules(tmp_path / "rules", TOPIC, "http://127.0.0.1:9", "attempts: 1")
    action_id = _planned(store, rules, tmp_path / "out")
    for _ in range(MAX_CLAIMS):  # broken runs that recorded that they broke
        store.claim_action(time.time() + 3600.0, action_id, owner=_dead_owner())
        store.release_action(action_id, 0.0, "a run broke\n", time.time())
    store.claim_action(time.time() + 3600.0, action_id, owner=_dead_owner())
    assert recover(store, rules) == [action_id]
    assert _row(store, action_id)["status"] == "pending"  # one crash, not MAX_CLAIMS + 1
    assert _row(store, action_id)["finished_runs"] == MAX_CLAIMS


# -- stores and exports from before the column ---------------------------------------------------

_DECISION = (
    "INSERT INTO decisions (id, trigger, seq, source, at, mode, votes, conclusion, rule_file, "
    "rule_revision) VALUES (1, 'all', 1, 'notice', 1.0, 'live', 'PASS', 'PASS', 'r.yaml', 'rev')"
)
_ACTION = (
    "INSERT INTO actions (id, decision, trigger, event_id, idempotency_key, position, type, "
    "label, status, attempts, log, created_at, updated_at) "
    "VALUES (?, 1, 'all', 'E1', ?, 0, 'webhook', 'hook', 'pending', ?, ?, 1.0, 1.0)"
)
_OLD_LOGS = {
    1: "failed; tried again in 5 s\nrequeued: it was running when process x died\n"
    "failed; tried again in 10 s\ninterrupted by shutdown; it runs again at the next start\n",
    2: "",
    3: "interrupted: OperationalError: database is locked; it runs again\n",
}


def test_the_migration_counts_finished_runs_of_existing_rows_from_their_log(
    store_location: str | Path,
) -> None:
    # the store as it was just before the migration that added `finished_runs`
    old_store(store_location, MIGRATIONS.index(SCHEMA_ACTIONS_FINISHED_RUNS), with_notice=False)
    rows = [(_ACTION, (n, f"key-{n}", 5, log)) for n, log in _OLD_LOGS.items()]
    run_at(store_location, [(_DECISION, ()), *rows])
    store = Store(store_location)  # opening it upgrades it in place
    try:
        assert store.version() == SCHEMA_VERSION
        found = sql_rows(store, "SELECT id, finished_runs FROM actions ORDER BY id")
        assert [(r["id"], r["finished_runs"]) for r in found] == [(1, 3), (2, 0), (3, 1)]
    finally:
        store.close()


def test_an_export_carries_the_count_and_an_older_export_gets_it_from_the_log(
    store: Store, tmp_path: Path
) -> None:
    sql_run(store, _DECISION)
    for n, log in _OLD_LOGS.items():
        sql_run(store, _ACTION, (n, f"key-{n}", 5, log + "receiver: interrupted\n"))
    sql_run(store, "UPDATE actions SET finished_runs = 2")  # as counted, whatever the log says
    out = io.StringIO()
    export(store, out)
    lines = out.getvalue().splitlines()

    current = Store(tmp_path / "current.sqlite")
    import_rows(current, lines)
    carried = sql_rows(current, "SELECT finished_runs FROM actions ORDER BY id")
    assert [r["finished_runs"] for r in carried] == [2, 2, 2]
    current.close()

    older = Store(tmp_path / "older.sqlite")
    import_rows(older, [_without_finished_runs(line) for line in lines])
    derived = sql_rows(older, "SELECT finished_runs FROM actions ORDER BY id")
    assert [r["finished_runs"] for r in derived] == [4, 1, 2]  # the log's wording, once
    older.close()


def _without_finished_runs(line: str) -> str:
    record = json.loads(line)
    if record.get("table") == "actions":
        del record["row"]["finished_runs"]
    return json.dumps(record)
