"""`tracerules validate`, `schema` and `functions` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tracerules.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
runner = CliRunner()


def _rules(tmp_path: Path, body: str) -> Path:
    (tmp_path / "topics.yaml").write_text((DATA / "rules" / "topics.yaml").read_text())
    (tmp_path / "trigger.yaml").write_text(body)
    return tmp_path


CLEAN = """\
schema_version: 1
triggers:
  - id: gbm
    topics: [gcn.notices.fermi.gbm]
    event_id: id
    event_time: t
    fields:
      id: {jsonpath: "$.id[0]"}
      t: {jsonpath: "$.trigger_time", as: time}
      err: {jsonpath: "$.ra_dec_error", as: angle}
    conditions:
      localised: err < 10 deg
    actions: [{type: notice}]
"""


def test_shipped_rules_and_examples_are_clean() -> None:
    result = runner.invoke(app, ["validate", str(ROOT / "rules"), str(ROOT / "examples/rules")])
    assert result.exit_code == 0, result.output
    assert "0 errors, 0 warnings" in result.output


def test_clean_rules_exit_0(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(_rules(tmp_path, CLEAN))])
    assert result.exit_code == 0, result.output


def test_lint_findings_only_exit_3_and_can_be_disabled(tmp_path: Path) -> None:
    body = CLEAN.replace("localised: err < 10 deg", "localised: 1 < 2")
    rules = _rules(tmp_path, body)
    result = runner.invoke(app, ["validate", str(rules)])
    assert result.exit_code == 3, result.output
    assert "constant-condition" in result.output
    assert "unused-field" in result.output  # err is no longer read
    quiet = runner.invoke(
        app,
        ["validate", str(rules), "--disable", "constant-condition", "--disable", "unused-field"],
    )
    assert quiet.exit_code == 0, quiet.output


def test_lint_switched_off_per_trigger(tmp_path: Path) -> None:
    body = CLEAN.replace("localised: err < 10 deg", "localised: 1 < 2").replace(
        "    actions:", "    lint: {disable: [constant-condition, unused-field]}\n    actions:"
    )
    result = runner.invoke(app, ["validate", str(_rules(tmp_path, body))])
    assert result.exit_code == 0, result.output


def test_errors_exit_1_in_every_format(tmp_path: Path) -> None:
    rules = _rules(tmp_path, CLEAN.replace("err < 10 deg", "er < 10 deg"))
    text = runner.invoke(app, ["validate", str(rules)])
    assert text.exit_code == 1
    assert "trigger.yaml:12:18: error[E301]: unknown field 'er'" in text.output
    data = json.loads(runner.invoke(app, ["validate", str(rules), "--format", "json"]).output)
    assert data["errors"] == 1
    (diag,) = data["diagnostics"]
    assert (diag["code"], diag["span"]["line"], diag["span"]["col"]) == ("E301", 12, 18)
    assert diag["hint"] == "did you mean 'err'?"
    github = runner.invoke(app, ["validate", str(rules), "--format", "github"])
    assert github.exit_code == 1
    assert github.output.startswith(f"::error file={rules}/trigger.yaml,line=12,col=18,")


def test_no_rule_files_is_never_success(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    assert "no rule files found" in result.output


def test_usage_error_exits_2() -> None:
    assert runner.invoke(app, ["validate", "--format", "yaml"]).exit_code == 2


def test_schema_is_json_schema_with_action_types() -> None:
    result = runner.invoke(app, ["schema"])
    schema = json.loads(result.output)
    trigger = schema["$defs"]["TriggerSpec"]
    assert {
        "id",
        "topics",
        "event_id",
        "event_time",
        "expiry",
        "priority",
        "mode",
        "fields",
        "conditions",
        "actions",
    } <= set(trigger["properties"])
    assert trigger["additionalProperties"] is False
    assert {"$ref": "#/$defs/NoticeConfig"} in trigger["properties"]["actions"]["items"]["oneOf"]


def test_functions_lists_the_table() -> None:
    result = runner.invoke(app, ["functions", "--format", "json"])
    names = {f["name"] for f in json.loads(result.output)}
    assert {"sep", "gal_lat", "age", "matches", "exists", "default", "int"} <= names


def test_functions_text_shows_optional_arguments() -> None:
    """Optional arguments print in brackets; rich once read `[number]` as markup and ate it."""
    result = runner.invoke(app, ["functions"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "round(number, [number]) -> number" in result.output
    assert "extract(string, string, [number]) -> string" in result.output
    assert ", )" not in result.output


@pytest.mark.parametrize(
    "heavy",
    [
        *("astropy", "matplotlib", "confluent_kafka", "numpy", "markdown_it", "rich.markdown"),
        # the rule compiler (lark, pydantic) once came in through `actions`' operator helpers
        *("tracerules.rules.compile", "lark", "pydantic", "jinja2"),
        *("tracerules.runtime.store.store", "rich.console"),
    ],
)
def test_help_imports_nothing_heavy(heavy: str) -> None:
    code = (
        "import sys; from tracerules.cli.main import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print({heavy!r} in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False")


def test_help_shows_bracketed_text_as_written() -> None:
    """Help texts such as `[env TRACERULES_STORE; ...]` were read as rich markup and lost."""
    result = runner.invoke(app, ["events", "list", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "[env TRACERULES_STORE; ./tracerules.sqlite]" in result.output


def test_loading_rules_that_need_no_sky_map_imports_no_numpy() -> None:
    """Action types are imported when a rule uses them: notice-only rules skip numpy."""
    rules = ROOT / "src" / "tracerules" / "scaffold" / "rules"
    code = (
        "import sys; from tracerules.rules.compile import load_ruleset\n"
        f"rules = load_ruleset([{str(rules)!r}])\n"
        "print(len(rules.triggers), 'numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "False"]


def test_loading_rules_imports_no_lark() -> None:
    """Expressions are parsed by the stand-alone parser written from the grammar: importing
    Lark (with its grammar loader and the collision checker it brings) cost more than the
    parsing (issue 16: load time)."""
    code = (
        "import sys; from tracerules.rules.compile import load_ruleset\n"
        f"rules = load_ruleset([{str(ROOT / 'examples' / 'rules')!r}])\n"
        "print(len(rules.triggers) >= 10, [m for m in sys.modules if m.startswith('lark')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "[]"]


HEAVY = ["numpy", "astropy", "erfa", "matplotlib", "confluent_kafka", "tenacity"]


def test_loading_the_examples_imports_no_maths() -> None:
    """The examples use gw-alert, mwa and atca actions and sky-map and observability
    functions: their maths (and the HTTP retry policy) is imported when a notice needs it,
    never to load the rules (issue 16: load time)."""
    code = (
        "import json, sys; from tracerules.rules.compile import load_ruleset\n"
        f"rules = load_ruleset([{str(ROOT / 'examples' / 'rules')!r}])\n"
        "kinds = sorted({a.kind.name for t in rules.triggers for a in t.actions})\n"
        f"print(json.dumps([len(rules.triggers), kinds, [m for m in {HEAVY!r} "
        "if m in sys.modules]]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    count, kinds, loaded = json.loads(out.stdout)
    assert count >= 10
    assert {"atca", "gw-alert", "mwa"} <= set(kinds)
    assert loaded == []


def test_the_command_skips_the_collectors_last_pass_and_keeps_its_exit_status(
    tmp_path: Path,
) -> None:
    """The last pass over every object at exit (a tenth of a second after loading rules) is
    skipped: the command freezes what is left as it ends, and its output and exit status are
    what they were (issue 16: load time)."""
    rules = _rules(tmp_path, CLEAN.replace("err < 10 deg", "err < 10 deg and nope > 1"))
    code = (
        "import atexit, gc, sys\n"
        "from tracerules.cli.main import main\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n"
        f"sys.argv = ['tracerules', 'validate', {str(rules)!r}]\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 1
    assert "E" in done.stdout and "nope" in done.stdout
    assert done.stdout.strip().endswith("frozen True")
    assert "1 error" in done.stderr


def test_validate_imports_the_rule_compiler_with_the_collector_paused() -> None:
    """Importing pydantic, Lark and the rule compiler makes objects that all stay alive: the
    command imports them with the collector paused, then loads with it paused, so only the
    command line's own start-up leaves passes to run (issue 16: load time)."""
    code = (
        "import atexit, gc, sys\n"
        "from tracerules.cli.main import main\n"
        "inside = []\n"
        "def seen(phase, info):\n"
        "    if phase == 'start' and 'tracerules.cli.validate' in sys.modules:\n"
        "        inside.append(info['generation'])\n"
        "gc.callbacks.append(seen)\n"
        "atexit.register(lambda: print('passes', len(inside)))\n"
        f"sys.argv = ['tracerules', 'validate', {str(ROOT / 'examples' / 'rules')!r}]\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("passes 0")
