"""Plugins and commands through the engine: context, exit codes, time limits, isolation."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA, sequence
from tracerules.products.actions.command import CommandConfig
from tracerules.products.actions.command import run as run_command
from tracerules.products.actions.plugin import PluginConfig, PluginContext
from tracerules.products.actions.plugin import run as run_plugin
from tracerules.products.actions.registry import ActionRequest
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.engine.decisions import ActionRecord
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.store.store import Store

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "examples" / "plugins" / "tr_template.py"

SLEEPER = """
import json, subprocess, sys, time
from pathlib import Path
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
Path(sys.argv[1], "pids.json").write_text(json.dumps([__import__("os").getpid(), child.pid]))
time.sleep(60)
"""
CRASHER = """
import sys
print("about to fail")
raise RuntimeError("plugin bug")
"""
NOISY_BUT_FINE = """
import json, sys
from pathlib import Path
context = json.load(sys.stdin)
print("warning: this goes to stderr and means nothing", file=sys.stderr)
Path(sys.argv[1], "context.json").write_text(json.dumps(context))
"""


def _engine(tmp_path: Path, store: Store, actions: str) -> Engine:
    rules = tmp_path / "plugins.yaml"
    rules.write_text(
        textwrap.dedent(
            """\
            schema_version: 1
            triggers:
              - id: gbm-plugins
                topics: [gcn.notices.fermi.gbm]
                event_id: trigger_id
                event_time: trigger_time
                expiry: 1 d
                priority: 10
                fields:
                  trigger_id: {jsonpath: "$.id[0]", as: string}
                  trigger_time: {jsonpath: "$.trigger_time", as: time}
                  ra: {jsonpath: "$.ra", as: angle}
                conditions:
                  located: exists(ra)
                actions:
            """
        )
        + textwrap.indent(textwrap.dedent(actions), "      ")
    )
    ruleset = load_ruleset([DATA / "rules" / "topics.yaml", rules])
    return Engine(ruleset, store, out_dir=tmp_path / "out")


def _script(tmp_path: Path, name: str, code: str) -> Path:
    path = tmp_path / name
    path.write_text(code)
    return path


def _actions(engine: Engine) -> list[ActionRecord]:
    decision = engine.process(sequence("fermi_gbm_json")[1]).decisions[0]
    return decision.actions


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie child of ours is gone in all but name; reap it if it is one.
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return False


def test_script_plugin_gets_the_context_and_earlier_files(store: Store, tmp_path: Path) -> None:
    script = _script(tmp_path, "noisy.py", NOISY_BUT_FINE)
    engine = _engine(
        tmp_path,
        store,
        f"""\
        - type: notice
          path: "gbm/{{event_id}}.json"
        - type: plugin
          script: {script}
          folder: "plugins/{{trigger}}/{{event_id}}"
        """,
    )
    notice_action, plugin = _actions(engine)
    assert (notice_action.status, plugin.status) == ("done", "done"), plugin.log
    assert "stderr: warning: this goes to stderr" in plugin.log  # logged, not judged
    folder = tmp_path / "out/plugins/gbm-plugins/745121685"
    context = json.loads((folder / "context.json").read_text())
    assert context["trigger"] == "gbm-plugins" and context["event_id"] == "745121685"
    assert context["decision"]["conclusion"] == "PASS"
    assert context["notice"]["topic"] == "gcn.notices.fermi.gbm"
    assert json.loads(context["notice"]["payload"])["id"][0] == "745121685"
    assert context["fields"]["ra"] == pytest.approx(json.loads(context["notice"]["payload"])["ra"])
    assert context["files"] == [str(tmp_path / "out/gbm/745121685.json")]
    assert context["folder"] == str(folder)
    assert context["idempotency_key"] == plugin.idempotency_key


def test_a_hanging_plugin_is_killed_and_the_others_still_run(store: Store, tmp_path: Path) -> None:
    script = _script(tmp_path, "sleeper.py", SLEEPER)
    engine = _engine(
        tmp_path,
        store,
        f"""\
        - type: plugin
          script: {script}
          timeout: 2
        - type: notice
          path: "after/{{event_id}}.json"
        """,
    )
    started = time.monotonic()
    plugin, after = _actions(engine)
    assert time.monotonic() - started < 6
    assert plugin.status == "failed" and "killed after" in plugin.log
    assert after.status == "done"
    pids = json.loads((tmp_path / "out/plugins/gbm-plugins/745121685/pids.json").read_text())
    deadline = time.monotonic() + 5
    while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(pid) for pid in pids)  # the plugin and the child it started


def test_a_crashing_plugin_fails_alone(store: Store, tmp_path: Path) -> None:
    script = _script(tmp_path, "crasher.py", CRASHER)
    engine = _engine(
        tmp_path,
        store,
        f"""\
        - type: plugin
          script: {script}
        - type: plugin
          script: {TEMPLATE}
        """,
    )
    crashed, template = _actions(engine)
    assert crashed.status == "failed"
    assert "RuntimeError: plugin bug" in crashed.log and "exit code 1 (failure)" in crashed.log
    assert template.status == "done", template.log
    summary = tmp_path / "out/plugins/gbm-plugins/745121685/plugin-summary.json"
    assert json.loads(summary.read_text())["event_id"] == "745121685"


def _request(tmp_path: Path) -> ActionRequest:
    values = {"trigger_id": "745121685", "event_id": "745121685", "conclusion": "PASS"}
    return ActionRequest("t", "745121685", 3, "t/745121685/1/0", values, b"{}", tmp_path)


def test_entry_point_plugins_run_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(TEMPLATE.parent))
    (tmp_path / "tr_crashy.py").write_text("def plugin(ctx):\n    raise ValueError('nope')\n")
    picky_code = "def plugin(ctx):\n    ctx.log.append('hi')\n    return 3\n"
    (tmp_path / "tr_picky.py").write_text(picky_code)
    monkeypatch.syspath_prepend(str(tmp_path))
    ok = run_plugin(PluginConfig(type="plugin", entry="tr_template:plugin"), _request(tmp_path))
    assert ok.ok, ok.log
    assert (tmp_path / "plugins/t/745121685/plugin-summary.json").is_file()
    crashed = run_plugin(PluginConfig(type="plugin", entry="tr_crashy:plugin"), _request(tmp_path))
    assert not crashed.ok and crashed.log == ["plugin tr_crashy:plugin raised ValueError: nope"]
    picky = run_plugin(PluginConfig(type="plugin", entry="tr_picky:plugin"), _request(tmp_path))
    assert not picky.ok and picky.log == ["hi", "plugin tr_picky:plugin: failed (returned 3)"]


def test_plugin_config_needs_exactly_one_form() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        PluginConfig(type="plugin")
    with pytest.raises(ValueError, match="exactly one"):
        PluginConfig(type="plugin", entry="a:b", script="x.py")
    with pytest.raises(ValueError, match="module:function"):
        PluginConfig(type="plugin", entry="just_a_module")


def test_plugin_context_serialises(tmp_path: Path) -> None:
    context = PluginContext("tool", "t", "E", {}, {}, {"x": 1}, [], str(tmp_path), "k")
    assert json.loads(context.to_json())["fields"] == {"x": 1}


def test_a_command_gets_one_argument_per_template_and_no_shell(
    store: Store, tmp_path: Path
) -> None:
    writer = "import sys; open(sys.argv[1], 'w').write(sys.argv[2])"
    engine = _engine(
        tmp_path,
        store,
        f"""\
        - type: command
          argv: [{sys.executable}, -c, "{writer}", out.txt, "$(touch pwned); {{trigger_id}} *"]
          cwd: "commands/{{event_id}}"
        """,
    )
    (command,) = _actions(engine)
    assert command.status == "done", command.log
    folder = tmp_path / "out/commands/745121685"
    assert (folder / "out.txt").read_text() == "$(touch pwned); 745121685 *"
    assert not (folder / "pwned").exists()
    assert "exit code 0" in command.log


def test_a_command_is_judged_by_its_exit_code(tmp_path: Path) -> None:
    def run(code: str, **keys: Any) -> Any:
        config = CommandConfig(type="command", argv=[sys.executable, "-c", code], **keys)
        return run_command(config, _request(tmp_path))

    assert run("import sys; print('fine', file=sys.stderr)").ok
    failed = run("import sys; sys.exit(3)")
    assert not failed.ok and failed.log[-1] == "exit code 3 (failure)"
    assert run("import sys; sys.exit(3)", ok_exit=[0, 3]).ok
    started = time.monotonic()
    slow = run("import time; time.sleep(30)", timeout=1.5)
    assert not slow.ok and slow.detail == {"timed_out": True}
    assert time.monotonic() - started < 5
    missing = run_command(
        CommandConfig(type="command", argv=["/nonexistent/tool"]), _request(tmp_path)
    )
    assert not missing.ok and missing.log[0].startswith("cannot run /nonexistent/tool")


def test_command_env_carries_secrets_that_the_log_does_not_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TR_TEST_CMD_SECRET", "cmd-s3cret-42")
    code = "import os; open('env.txt', 'w').write(os.environ['TOKEN'])"
    config = CommandConfig(
        type="command",
        argv=[sys.executable, "-c", code],
        env={"TOKEN": "${env:TR_TEST_CMD_SECRET}"},
    )
    outcome = run_command(config, _request(tmp_path))
    assert outcome.ok and (tmp_path / "env.txt").read_text() == "cmd-s3cret-42"
    assert "cmd-s3cret-42" not in "\n".join(outcome.log)
