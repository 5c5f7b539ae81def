"""Safe to leave unattended (issue 11): the store lock, secrets, retries, disk full, shutdown.

These run without the broker; the service-level checks are in tests/test_service_torture.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
from pathlib import Path

import markupsafe
import pytest
from typer.testing import CliRunner

from tests.service_harness import NOTICES, SERVICE_RULES
from tests.sql import sql_run, sql_value
from tests.torture_support import SECRET_SHAPES, occurrences
from tracerules.cli.main import app
from tracerules.products.actions.command import CommandConfig
from tracerules.products.actions.command import run as run_command
from tracerules.products.actions.plugin import PluginConfig
from tracerules.products.actions.plugin import run as run_plugin
from tracerules.products.actions.registry import ActionRequest
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.dispatch.retry import LATER_MOST_S, next_try
from tracerules.runtime.dispatch.workers import ActionWorkers, owner_token, recover
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.secrets import redact
from tracerules.runtime.sources.files import notice_from_file
from tracerules.runtime.store.lock import lock_store
from tracerules.runtime.store.store import Store


def test_a_symlink_to_a_locked_store_finds_it_locked(tmp_path: Path) -> None:
    real = tmp_path / "a" / "store.sqlite"
    first = lock_store(real)
    assert first is not None
    link = tmp_path / "b" / "link.sqlite"
    link.parent.mkdir()
    link.symlink_to(real)
    try:
        assert lock_store(link) is None
    finally:
        first.close()
    again = lock_store(link)
    assert again is not None
    again.close()


def test_a_hard_link_to_a_locked_store_finds_it_locked(tmp_path: Path) -> None:
    real = tmp_path / "store.sqlite"
    first = lock_store(real)
    assert first is not None
    other = tmp_path / "elsewhere"
    other.mkdir()
    os.link(real, other / "same.sqlite")
    try:
        assert lock_store(other / "same.sqlite") is None
    finally:
        first.close()


# -- secrets --------------------------------------------------------------------------------


def _request(tmp_path: Path) -> ActionRequest:
    values = {"trigger_id": "745121685", "event_id": "745121685", "conclusion": "PASS"}
    return ActionRequest("t", "745121685", 3, "t/745121685/1/0", values, b"{}", tmp_path)


def test_a_command_sees_only_the_environment_it_declares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TR_OTHER_ACTIONS_SECRET", "other-s3cret-77")
    monkeypatch.setenv("TR_MINE", "mine-s3cret-11")
    config = CommandConfig(type="command", argv=["env"], env={"MINE": "${env:TR_MINE}"})
    outcome = run_command(config, _request(tmp_path))
    printed = "\n".join(outcome.log)
    assert outcome.ok and "MINE=mine-s3cret-11" in printed and "PATH=" in printed
    assert "other-s3cret-77" not in printed and "TR_MINE" not in printed


def test_a_plugin_script_sees_only_the_environment_it_declares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TR_OTHER_ACTIONS_SECRET", "other-s3cret-77")
    monkeypatch.setenv("TR_MINE", "mine-s3cret-11")
    script = tmp_path / "show.py"
    script.write_text("import os\nprint(sorted(os.environ.items()))\n")
    config = PluginConfig.model_validate(
        {"type": "plugin", "script": str(script), "env": {"MINE": "${env:TR_MINE}"}}
    )
    outcome = run_plugin(config, _request(tmp_path))
    printed = "\n".join(outcome.log)
    assert outcome.ok and "('MINE', 'mine-s3cret-11')" in printed
    assert "other-s3cret-77" not in printed


@pytest.mark.parametrize("secret", list(SECRET_SHAPES.values()), ids=list(SECRET_SHAPES))
def test_every_spelling_of_a_secret_is_redacted(secret: str) -> None:
    texts = [
        secret,
        repr(secret),
        repr(secret.encode()),
        json.dumps(secret),
        json.dumps(json.dumps({"k": secret})),
        json.dumps(secret, ensure_ascii=False),
        urllib.parse.urlencode({"token": secret}),
        urllib.parse.quote(secret),
        str(markupsafe.escape(secret)),
        str(markupsafe.escape(json.dumps(secret))),
    ]
    for text in texts:
        shown = redact(f"before {text} after", [secret])
        assert occurrences(shown) == 0, (text, shown)
        assert shown.startswith("before ") and shown.endswith(" after")


def test_short_values_are_not_secrets_worth_mangling_text_for() -> None:
    assert redact("abc abc", ["abc"]) == "abc abc"


# -- retries --------------------------------------------------------------------------------


def test_a_failed_action_is_tried_again_on_a_backoff_until_its_event_expires() -> None:
    now = 1_000_000.0
    first = next_try(1, now, expires=now + 3600)
    second = next_try(2, now, expires=now + 3600)
    assert first is not None and second is not None and now < first < second
    assert next_try(1, now, expires=now + 1) is None  # the event expires first
    assert next_try(30, now, expires=None) == now + LATER_MOST_S


def test_an_operator_retries_failed_actions_and_the_workers_run_them(tmp_path: Path) -> None:
    rules = load_ruleset([SERVICE_RULES])
    store = Store(tmp_path / "store.sqlite")
    bat = NOTICES / "swift_chain" / "02_BAT_GRB_Pos_1201696-785.xml"
    Engine(rules, store, out_dir=tmp_path / "out", run_actions=False).process(
        notice_from_file(bat, offset=0)
    )
    sql_run(store, "UPDATE actions SET status='failed'")
    path = str(tmp_path / "store.sqlite")
    nothing = CliRunner().invoke(app, ["actions", "retry", "--trigger", "nope", "--store", path])
    assert nothing.exit_code == 1 and "no failed action matches" in nothing.output
    result = CliRunner().invoke(app, ["actions", "retry", "--trigger", "swift-grb", "-s", path])
    assert result.exit_code == 0 and "1 action(s) queued again" in result.output
    listed = CliRunner().invoke(app, ["actions", "list", "-s", path, "-f", "json"])
    assert json.loads(listed.output)[0]["status"] == "pending"
    workers = ActionWorkers(path, lambda: rules, tmp_path / "out")
    workers.start()
    try:
        deadline = time.monotonic() + 10
        while sql_value(store, "SELECT status FROM actions") != "done":
            assert time.monotonic() < deadline, sql_value(store, "SELECT log FROM actions")
            time.sleep(0.05)
    finally:
        assert workers.stop(5)
        store.close()
    assert workers.lanes() == {"files"}


# -- a command's first copy ------------------------------------------------------------------


def test_recovery_waits_while_the_command_a_dead_service_started_still_runs(
    tmp_path: Path,
) -> None:
    rules = load_ruleset([SERVICE_RULES])
    store = Store(tmp_path / "store.sqlite")
    bat = NOTICES / "swift_chain" / "02_BAT_GRB_Pos_1201696-785.xml"
    Engine(rules, store, out_dir=tmp_path / "out", run_actions=False).process(
        notice_from_file(bat, offset=0)
    )
    gone = subprocess.Popen(["true"])
    gone.wait()
    first_copy = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        sql_run(
            store,
            "UPDATE actions SET status='running', attempts=1, owner=?, child=?, updated_at=?",
            (owner_token(gone.pid), owner_token(first_copy.pid), time.time()),
        )
        assert recover(store, rules) == []
        assert sql_value(store, "SELECT status FROM actions") == "running"
    finally:
        first_copy.kill()
        first_copy.wait()
    assert len(recover(store, rules)) == 1
    assert sql_value(store, "SELECT status FROM actions") == "pending"
    store.close()
