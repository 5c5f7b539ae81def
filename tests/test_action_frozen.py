"""Actions frozen at plan time: a pending action runs the configuration it was planned with,
whatever rules are loaded when it runs (a reload, a restart with edited rules), or it is
reported superseded; never as the action that now sits at its position.

A real local HTTP server records what each action sent; the store is a real SQLite file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from typer.testing import CliRunner

from tests.conftest import DATA, sequence
from tests.loopback import Loopback, serve
from tests.sql import sql_rows, sql_value
from tracerules.cli.main import app
from tracerules.products.actions import registry
from tracerules.products.actions.registry import (
    ActionConfig,
    ActionOutcome,
    ActionRequest,
    ActionType,
    Snapshot,
)
from tracerules.rules.compile import RuleSet, load_ruleset
from tracerules.runtime.dispatch.workers import ActionWorkers
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.sources.notices import Notice
from tracerules.runtime.store.store import Store

SECRET = "tr-frozen-s3cret-41d9"
PING = "tr-test-ping"  # an action type a plugin adds, uninstalled before its action runs


class PingConfig(ActionConfig):
    type: Literal["tr-test-ping"]


def _ping(config: PingConfig, request: ActionRequest) -> ActionOutcome:
    return ActionOutcome(True, ["pinged"])


@pytest.fixture
def server() -> Iterator[Loopback]:
    with serve() as loop:
        yield loop


@pytest.fixture
def ping_type(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A third-party action type, installed for the planning only."""
    registry.register(ActionType(PING, PingConfig, _ping, "a test plugin"))
    yield
    registry._TYPES.pop(PING, None)


def _hook(server: Loopback, which: str, **body: Any) -> str:
    fields = ", ".join(
        f'{k}: "{v}"' if isinstance(v, str) else f"{k}: {v}" for k, v in body.items()
    )
    return f"""      - type: webhook
        url: "{server.url}/{which}"
        body: {{which: {which}{", " if fields else ""}{fields}}}
        backoff: 0
"""


def _write_rules(path: Path, actions: str) -> RuleSet:
    path.write_text(
        f"""schema_version: 1
triggers:
  - id: gbm-frozen
    topics: [gcn.notices.fermi.gbm]
    event_id: trigger_id
    event_time: trigger_time
    expiry: 1 d
    priority: 10
    fields:
      trigger_id: {{jsonpath: "$.id[0]", as: string}}
      trigger_time: {{jsonpath: "$.trigger_time", as: time}}
      ra: {{jsonpath: "$.ra", as: angle}}
      note: {{jsonpath: "$.note", as: string}}
      absent: {{jsonpath: "$.no_such_key", as: string}}
    conditions:
      located: exists(ra)
    actions:
{actions}"""
    )
    return load_ruleset([DATA / "rules" / "topics.yaml", path])


def _notice(note: str | None = None) -> Notice:
    notice = sequence("fermi_gbm_json")[1]
    if note is None:
        return notice
    doc = json.loads(notice.payload)
    doc["note"] = note
    return dataclasses.replace(notice, payload=json.dumps(doc).encode(), digest="")


def _sent(server: Loopback) -> list[dict[str, Any]]:
    return [json.loads(s.body) for s in server.seen]


def _statuses(store: Store) -> dict[str, str]:
    rows = sql_rows(store, "SELECT label, type, status, position FROM actions ORDER BY id")
    return {f"{r['position']}:{r['type']}": r["status"] for r in rows}


def _v1(server: Loopback) -> str:
    return (
        _hook(server, "a", version=1)
        + _hook(server, "b")
        + _hook(server, "c")
        + f"      - type: {PING}\n"
    )


def _v2(server: Loopback) -> str:
    """Reordered (c first), edited (a's body), deleted (b and the ping)."""
    return _hook(server, "c") + _hook(server, "a", version=2)


def test_a_reload_while_actions_are_pending_runs_each_as_planned_or_supersedes_it(
    server: Loopback, store: Store, tmp_path: Path, ping_type: None, caplog: Any
) -> None:
    rules = tmp_path / "rules.yaml"
    engine = Engine(
        _write_rules(rules, _v1(server)), store, run_actions=False, out_dir=tmp_path / "out"
    )
    (decision,) = engine.process(_notice()).decisions
    assert [a.status for a in decision.actions] == ["pending"] * 4
    engine.reload(_write_rules(rules, _v2(server)))
    registry._TYPES.pop(PING)  # the plugin that provided it is uninstalled
    with caplog.at_level(logging.WARNING, "tracerules.actions"):
        results = engine.dispatcher.run_pending()
    assert [r.status for r in results] == ["done", "done", "done", "superseded"]
    # Each webhook sent what it was planned with: a's version 1, b although deleted, c once.
    assert _sent(server) == [{"which": "a", "version": 1}, {"which": "b"}, {"which": "c"}]
    assert server.paths() == ["/a", "/b", "/c"]
    log = sql_value(store, "SELECT log FROM actions WHERE position=3")
    assert "superseded: its action type 'tr-test-ping' is no longer installed" in log
    assert "not run" in log
    assert any("superseded" in r.getMessage() for r in caplog.records)
    # The operator sees it as such.
    listed = CliRunner().invoke(app, ["actions", "list", "--store", store.path])
    assert listed.exit_code == 0
    assert "superseded: its action type 'tr-test-ping' is no longer installed" in listed.output
    # Planned after the reload, the same trigger now runs the new configuration.
    engine.process(_notice(note="later"))
    engine.dispatcher.run_pending()
    assert _sent(server)[3:] == [{"which": "c"}, {"which": "a", "version": 2}]


def test_a_restart_with_edited_rules_runs_pending_actions_as_planned(
    server: Loopback, tmp_path: Path, ping_type: None
) -> None:
    path = tmp_path / "store.sqlite"
    rules = tmp_path / "rules.yaml"
    first = Store(path)
    Engine(
        _write_rules(rules, _v1(server)), first, run_actions=False, out_dir=tmp_path / "out"
    ).process(_notice())
    first.close()
    registry._TYPES.pop(PING)
    edited = _write_rules(rules, _v2(server))
    workers = ActionWorkers(str(path), lambda: edited, tmp_path / "out")  # a new service
    workers.start()
    again = Store(path)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not sql_value(
                again, "SELECT count(*) FROM actions WHERE status IN ('pending', 'running')"
            ):
                break
            time.sleep(0.05)
        assert _statuses(again) == {
            "0:webhook": "done",
            "1:webhook": "done",
            "2:webhook": "done",
            f"3:{PING}": "superseded",
        }
    finally:
        assert workers.stop(5)
        again.close()
    assert sorted(server.paths()) == ["/a", "/b", "/c"]
    assert {"which": "a", "version": 1} in _sent(server)


def test_a_real_dash_and_a_missing_value_round_trip(
    server: Loopback, store: Store, tmp_path: Path
) -> None:
    action = f"""      - type: webhook
        url: "{server.url}/values"
        body: {{note: "{{note}}", absent: "{{absent}}", text: "{{note}}|{{absent}}"}}
"""
    engine = Engine(_write_rules(tmp_path / "rules.yaml", action), store, out_dir=tmp_path)
    (record,) = engine.process(_notice(note="-")).decisions[0].actions
    assert record.status == "done", record.log
    stored = json.loads(sql_value(store, "SELECT request FROM actions WHERE id=?", (record.id,)))
    assert stored["note"] == "-" and "absent" in stored and stored["absent"] is None
    (body,) = _sent(server)
    assert body == {"note": "-", "absent": None, "text": "-|-"}


def test_secrets_stay_out_of_the_snapshot_the_row_and_the_logs(
    server: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    monkeypatch.setenv("TR_FROZEN_TOKEN", SECRET)
    server.script["/s"] = [(503, b'{"echo": "{auth}"}', 0.0), (200, b'{"echo": "{auth}"}', 0.0)]
    action = f"""      - type: webhook
        url: "{server.url}/s"
        headers: {{Authorization: "Bearer ${{env:TR_FROZEN_TOKEN}}"}}
        body: {{token: "${{env:TR_FROZEN_TOKEN}}"}}
        backoff: 0
      - type: command
        argv: [printenv, SEEN]
        env: {{SEEN: "${{env:TR_FROZEN_TOKEN}}"}}
"""
    path = tmp_path / "store.sqlite"
    store = Store(path)
    rules = _write_rules(tmp_path / "rules.yaml", action)
    Engine(rules, store, run_actions=False, out_dir=tmp_path).process(_notice())
    snapshot = sql_value(store, "SELECT config FROM action_configs")
    assert "${env:TR_FROZEN_TOKEN}" in snapshot and SECRET not in snapshot
    workers = ActionWorkers(str(path), lambda: rules, tmp_path / "out")
    with caplog.at_level(logging.INFO, "tracerules.actions"):
        workers.start()
        try:
            deadline = time.monotonic() + 20
            while sql_value(store, "SELECT count(*) FROM actions WHERE status != 'done'"):
                assert time.monotonic() < deadline, sql_rows(store, "SELECT log FROM actions")
                time.sleep(0.05)
        finally:
            assert workers.stop(5)
    assert [s.headers["Authorization"] for s in server.seen] == [f"Bearer {SECRET}"] * 2
    # The command printed the secret: what the dispatcher stores and logs shows ***.
    for row in sql_rows(store, "SELECT * FROM actions"):
        assert "***" in row["log"] and SECRET not in json.dumps(dict(row))
    store.close()
    for file in tmp_path.glob("store.sqlite*"):  # the WAL too
        assert SECRET.encode() not in file.read_bytes(), file
    logged = [json.dumps(getattr(r, "fields", {})) + r.getMessage() for r in caplog.records]
    assert sum('"status": "done"' in line for line in logged) == 2
    assert not any(SECRET in line for line in logged)


def test_every_example_action_rebuilds_from_its_snapshot_as_compiled() -> None:
    """The snapshot keeps the options as written (defaults left out), so that validators
    which refuse a default and an explicit value together accept it again."""
    from tracerules.runtime.dispatch.frozen import Frozen, rebuild

    root = Path(__file__).resolve().parents[1]
    rules = load_ruleset([root / "examples" / "rules"])
    actions = [a for t in rules.triggers for a in t.actions]
    assert {a.kind.name for a in actions} >= {"mwa", "atca", "notice", "gw-alert"}
    for action in actions:
        frozen = rebuild(action.snapshot.text)
        assert isinstance(frozen, Frozen), frozen
        assert frozen.kind is action.kind and frozen.config == action.config


def test_the_snapshot_is_made_when_rules_compile_and_planning_stores_it_as_made(
    server: Loopback, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each compiled action carries its own snapshot: planning copies it, never looks one up
    (a cache keyed by id() could hand out another action's snapshot once an id is reused)."""
    rules = _write_rules(
        tmp_path / "rules.yaml", _hook(server, "a", version=1) + _hook(server, "b")
    )
    trigger = rules.trigger("gbm-frozen")
    assert trigger is not None
    first, second = (action.snapshot for action in trigger.actions)
    assert json.loads(first.text)["body"] == {"which": "a", "version": 1}
    assert json.loads(second.text)["body"] == {"which": "b"}
    assert first.digest == hashlib.sha256(first.text.encode()).hexdigest() != second.digest

    def refuse(cls: type[Snapshot], config: ActionConfig) -> Snapshot:
        raise AssertionError("a snapshot made after the rules were compiled")

    monkeypatch.setattr(Snapshot, "of", classmethod(refuse))
    engine = Engine(rules, store, run_actions=False, out_dir=tmp_path / "out")
    (decision,) = engine.process(_notice()).decisions
    assert [a.status for a in decision.actions] == ["pending", "pending"]
    stored = {row["position"]: row["config_hash"] for row in store.ready_actions(time.time() + 1)}
    assert stored == {0: first.digest, 1: second.digest}
    assert store.action_config(first.digest) == first.text


def test_a_superseded_action_never_runs_as_the_one_now_at_its_position(
    server: Loopback, store: Store, tmp_path: Path, ping_type: None
) -> None:
    rules = tmp_path / "rules.yaml"
    planned = _write_rules(rules, f"      - type: {PING}\n" + _hook(server, "a"))
    engine = Engine(planned, store, run_actions=False, out_dir=tmp_path / "out")
    engine.process(_notice())
    # After the reload, position 0 holds another webhook; the ping's plugin is gone.
    engine.reload(_write_rules(rules, _hook(server, "x") + _hook(server, "a")))
    registry._TYPES.pop(PING)
    results = engine.dispatcher.run_pending()
    assert [r.status for r in results] == ["superseded", "done"]
    assert server.paths() == ["/a"]  # never /x, the action now at the ping's position


def test_a_retrigger_after_a_reload_runs_only_the_actions_not_yet_run_for_that_state(
    server: Loopback, store: Store, tmp_path: Path
) -> None:
    """A retrigger of the same event state acts once per action, whatever the reload in
    between inserted before it, moved or edited: keys name an action, not its position."""
    rules = tmp_path / "rules.yaml"
    engine = Engine(
        _write_rules(rules, _hook(server, "a") + _hook(server, "b")),
        store,
        out_dir=tmp_path / "out",
    )
    (decision,) = engine.process(_notice()).decisions
    event = decision.event_id
    assert event is not None and server.paths() == ["/a", "/b"]  # the notice's own decision
    first = engine.retrigger("gbm-frozen", event, "ada")
    assert [a.status for a in first.actions] == ["done", "done"]
    assert server.paths()[2:] == ["/a", "/b"]
    # A new action first, b moved before a, a copy of b, and a edited.
    engine.reload(
        _write_rules(
            rules,
            _hook(server, "new")
            + _hook(server, "b")
            + _hook(server, "b")
            + _hook(server, "a", version=2),
        )
    )
    again = engine.retrigger("gbm-frozen", event, "grace")
    assert [a.status for a in again.actions] == ["done", "done", "done"]
    assert server.paths()[4:] == ["/new", "/b", "/a"]  # b's first copy ran already
    assert _sent(server)[-1] == {"which": "a", "version": 2}
    keys = [a.idempotency_key for a in again.actions]
    assert len(set(keys)) == 3 and all(f"/{event}/manual-" in k for k in keys)
    # And a third retrigger of the same state acts on nothing.
    assert engine.retrigger("gbm-frozen", event, "ada").actions == []
    assert len(server.seen) == 7
