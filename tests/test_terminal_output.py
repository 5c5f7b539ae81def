"""What the terminal shows an astronomer (issue 16): lights as shapes that survive a pipe,
`NO_COLOR` and colour blindness, and a dry-run summary that counts what happened to actions.
Real notices from tests/data, the test rules, the real CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from tests.conftest import DATA, NOTICES
from tests.test_ruletest_arbitration import rules as arbitration_rules
from tracerules.cli.main import app

RULES = DATA / "rules"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def dry_run(*args: str) -> str:
    result = CliRunner().invoke(app, ["dry-run", "--quiet", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_piped_lights_are_shapes_not_identical_dots() -> None:
    text = dry_run("--rules", str(RULES), str(NOTICES / "fermi_gbm_json"))
    assert "\u25cf" not in text and "\u25cb" not in text  # no colour-only dots
    for shape in ("\u2713", "\u2715", "?"):  # PASS, FAIL, UNKNOWN as the HTML draws them
        assert shape in text, shape
    assert "\u2713*" in text  # an inherited vote is marked, not only dimmed
    assert "legend: \u2713 PASS  ~ MAYBE  \u2715 FAIL  ? UNKNOWN" in text


def _forced_terminal(extra: dict[str, str]) -> str:
    """`tracerules dry-run` in a subprocess that rich takes for a colour terminal."""
    env = {**os.environ, "FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "COLUMNS": "160", **extra}
    env.pop("NO_COLOR", None) if "NO_COLOR" not in extra else None
    args = ["dry-run", "--quiet", "--rules", str(RULES), str(NOTICES / "fermi_gbm_json")]
    done = subprocess.run(
        [sys.executable, "-m", "tracerules.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_no_color_keeps_the_shapes_and_drops_the_colours() -> None:
    coloured = _forced_terminal({})
    assert re.search(r"\x1b\[[0-9;]*3[12]m\u2713|\x1b\[[0-9;]*3[12]m", coloured)  # colour on
    plain = _forced_terminal({"NO_COLOR": "1"})
    colours = [c for c in ANSI.findall(plain) if re.search(r"\[(?:\d+;)*3[0-9]", c)]
    assert not colours, colours[:5]
    assert "\u2713" in plain and "\u2715" in plain


def test_the_summary_counts_failed_done_and_clashed_actions(tmp_path: Path) -> None:
    arbitration_rules(tmp_path)
    chain = NOTICES / "swift_chain"
    text = dry_run(
        "--rules",
        str(tmp_path),
        "--products",
        str(tmp_path / "out"),
        str(chain / "02_BAT_GRB_Pos_1201696-785.xml"),
        str(chain / "05_XRT_Pos_1201696-795.xml"),
    )
    # BAT: a starts. XRT: b (priority 5) overrides, a clashes, c (far, but below b) clashes.
    assert "4 actions: 2 done, 2 clashed" in " ".join(text.split())
    assert "would run" not in text.split("actions:")[-1].split(";")[0]
    assert "observation (clash)" in text


def test_an_action_that_fails_is_counted_as_failed(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "topics.yaml").write_text((RULES / "topics.yaml").read_text())
    (rules / "gbm.yaml").write_text(
        """schema_version: 1
triggers:
  - id: gbm-broken-product
    topics: [gcn.notices.fermi.gbm]
    event_id: trigger_id
    event_time: trigger_time
    fields:
      trigger_id: {jsonpath: "$.id[0]", as: string}
      trigger_time: {jsonpath: "$.trigger_time", as: time}
    conditions:
      known: exists(trigger_id)
    actions:
      - type: notice
        path: "gbm/{event_id}/{notice_id}.json"
"""
    )
    out = tmp_path / "out"
    out.mkdir()
    (out / "gbm").write_text("a file where the folder must go: every product fails")
    text = dry_run("--rules", str(rules), "--products", str(out), str(NOTICES / "fermi_gbm_json"))
    summary = " ".join(text.split())
    assert "7 actions: 7 failed;" in summary, summary
    assert "would run" not in summary and "notice (failed)" in text


def test_live_actions_left_out_of_a_products_run_are_counted_as_skipped(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "topics.yaml").write_text((RULES / "topics.yaml").read_text())
    (rules / "gbm.yaml").write_text(
        """schema_version: 1
triggers:
  - id: gbm-file-and-hook
    topics: [gcn.notices.fermi.gbm]
    event_id: trigger_id
    event_time: trigger_time
    fields:
      trigger_id: {jsonpath: "$.id[0]", as: string}
      trigger_time: {jsonpath: "$.trigger_time", as: time}
    conditions:
      known: exists(trigger_id)
    actions:
      - type: notice
        path: "gbm/{event_id}/{offset}.json"
      - type: command
        argv: [echo, "{event_id}"]
"""
    )
    source = str(NOTICES / "fermi_gbm_json")
    plain = " ".join(dry_run("--rules", str(rules), source).split())
    assert "14 actions: 14 would run;" in plain
    out = str(tmp_path / "out")
    written = " ".join(dry_run("--rules", str(rules), "--products", out, source).split())
    assert "14 actions: 7 done, 7 skipped (live actions: a dry run writes files only);" in written
