"""The README quick start on the bundled examples (issue 16, item 11): every action of the
dry run succeeds, so a failure in the quick start always means something. The LVK mock
MS181101ab travels as a compressed archive of its complete alerts inside the notices folder."""

from __future__ import annotations

from pathlib import Path

from tests.sql import sql_rows
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.engine.replay import replay
from tracerules.runtime.sources.files import iter_notices
from tracerules.runtime.store.history import counts, events

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def test_the_quick_start_fails_nothing_by_accident(tmp_path: Path) -> None:
    rules = load_ruleset([EXAMPLES / "rules"])
    notices = iter_notices([EXAMPLES / "notices"])
    result = replay(rules, notices, store_path=tmp_path / "s.sqlite", products_dir=tmp_path / "out")
    try:
        summary = counts(result.store)
        # Every file product is written; an observation may be refused by arbitration (a
        # clash is a decision, not a failure), and live actions never run in a dry run.
        failed = sql_rows(
            result.store,
            "SELECT label, log FROM actions WHERE status NOT IN ('done', 'clash', 'dry-run')",
        )
        assert not [(r["label"], r["log"]) for r in failed]
        assert summary["actions"].get("done", 0) >= 32
        assert summary["dead_letters"] == 0 and "ERROR" not in summary["decisions"]
        # the archive inside the folder is read: the mock superevent in all its six stages
        mock = events(result.store, trigger="lvk-mock-heartbeat", event_id="MS181101ab")
        assert len(mock) == 1 and len(mock[0].notices) == 6
        maps = sorted((tmp_path / "out" / "lvk" / "mockevents" / "MS181101ab").glob("*/skymap.png"))
        # each stage but the retraction has its map drawn (the ext-update is the second update)
        stages = [p.parent.name.split("_", 1)[1] for p in maps]
        assert stages == ["earlywarning", "preliminary", "initial", "update", "update_2"]
    finally:
        result.close()


def test_a_rule_test_reads_a_notice_inside_an_archive(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tracerules.cli.main import app

    archive = EXAMPLES / "notices" / "lvk_json" / "MS181101ab.tar.xz"
    body = f"""schema_version: 1
rules: [{EXAMPLES / "rules"}]
tests:
  - name: gocart's early warning of the mock
    notices:
      - {{file: {archive}, member: MS181101ab-earlywarning.json}}
    expect:
      - {{trigger: lvk-mock-heartbeat, conclusion: PASS, actions: [gw-alert]}}
  - name: a member the archive does not have
    notices:
      - {{file: {archive}, member: MS181101ab-nothing.json}}
    expect:
      - {{trigger: lvk-mock-heartbeat, conclusion: PASS}}
"""
    path = tmp_path / "archive.test.yaml"
    path.write_text(body)
    result = CliRunner().invoke(app, ["test", str(path)])
    assert result.exit_code != 0
    assert "E904" in result.output and "no member 'MS181101ab-nothing.json'" in result.output
    path.write_text(body.split("  - name: a member", maxsplit=1)[0])
    result = CliRunner().invoke(app, ["test", str(path)])
    assert result.exit_code == 0, result.output
