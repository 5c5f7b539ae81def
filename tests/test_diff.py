"""`tracerules diff`: a rule change planted in a real git repository shows up, with the events
it changes and the factor that made the difference, on the bundled real notices."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tracerules.cli.main import app
from tracerules.rules.gitrev import GitError, rules_at

ROOT = Path(__file__).resolve().parents[1]
NOTICES = ROOT / "examples" / "notices"
runner = CliRunner()

OLD_LOCALISED = "when error <= 8 deg then PASS"
NEW_LOCALISED = "when error <= 3 deg then PASS"


GIT_USER = ("-c", "user.name=test", "-c", "user.email=test@example.org")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *GIT_USER, *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with the example rules committed on `main`, laid out like this one:
    examples/rules/topics.yaml is a symlink to rules/topics.yaml."""
    repo = tmp_path / "repo"
    (repo / "rules").mkdir(parents=True)
    (repo / "examples" / "rules").mkdir(parents=True)
    shutil.copy(ROOT / "rules" / "topics.yaml", repo / "rules" / "topics.yaml")
    for path in (ROOT / "examples" / "rules").glob("*.yaml"):
        if not path.name.endswith(".test.yaml") and path.name != "topics.yaml":
            shutil.copy(path, repo / "examples" / "rules" / path.name)
    os.symlink("../../rules/topics.yaml", repo / "examples" / "rules" / "topics.yaml")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "example rules")
    return repo


def _plant(repo: Path) -> None:
    """Tighten the JSON GBM trigger's localisation threshold from 8 to 3 degrees."""
    fermi = repo / "examples" / "rules" / "fermi.yaml"
    text = fermi.read_text()
    assert text.count(OLD_LOCALISED) == 1
    fermi.write_text(text.replace(OLD_LOCALISED, NEW_LOCALISED))


def _diff(repo: Path, *args: str) -> tuple[int, str]:
    rules = repo / "examples" / "rules"
    result = runner.invoke(app, ["diff", "--base", "main", "--rules", str(rules), *args])
    return result.exit_code, result.output


def test_a_planted_threshold_change_names_the_event_the_notice_and_the_factor(
    repo: Path,
) -> None:
    _plant(repo)
    code, out = _diff(repo, str(NOTICES), "--format", "json")
    assert code == 0, out
    report = json.loads(out)
    assert report["notices"] == 85  # with the INTEGRAL SPI-ACS placeholder notice
    # 30 events for the original examples, 7 for the MWA and ATCA triggers (mwa.yaml, atca.yaml),
    # 1 for the SPI-ACS placeholder (integral.yaml)
    assert report["events_before"] == report["events_after"] == 38
    # (16 with MS181101ab's complete sky maps: mwa-lvk-gw now plans the mock, as a test.)
    assert (report["firing_before"], report["firing_after"]) == (16, 15)
    # Only the JSON GBM burst changes: its ground positions are 3.8-3.9 deg wide once the
    # systematic error is added, between the old and the new threshold. The VOEvent GBM
    # trigger has its own `localised` and does not change.
    (change,) = report["changes"]
    assert change["trigger"] == "fermi-gbm-json-grb"
    assert change["event_id"] == "745121685"
    assert change["kind"] == "changed"
    assert (change["before"], change["after"]) == ("PASS", "FAIL")
    assert (change["actions_before"], change["actions_after"]) == (3, 0)
    assert change["step"] == 5
    assert change["notice"] == "5_trigger.ground1.example.json"
    factor = change["factor"]
    assert factor["name"] == "localised"
    assert (factor["before"], factor["after"]) == ("PASS", "MAYBE")
    assert factor["after_detail"].startswith("error=3.93")
    assert OLD_LOCALISED in factor["before_text"]
    assert NEW_LOCALISED in factor["after_text"]


def test_text_and_markdown_reports_and_fail_on_change(repo: Path) -> None:
    _plant(repo)
    code, text = _diff(repo, str(NOTICES / "fermi_gbm_json"), "--fail-on-change")
    assert code == 1
    assert "7 notices replayed" in text
    assert "1 event changes." in text
    assert "fermi-gbm-json-grb 745121685 (changed): PASS → FAIL, actions 3 → 0" in text
    assert "first differs on notice 5 (5_trigger.ground1.example.json)" in text
    assert "factor localised: PASS → MAYBE" in text
    code, md = _diff(repo, str(NOTICES / "fermi_gbm_json"), "--format", "markdown")
    assert code == 0
    assert md.startswith("### tracerules diff: ")
    assert "**1 event changes.**" in md
    assert (
        "| `fermi-gbm-json-grb` | `745121685` | PASS → FAIL | 3 → 0 "
        "| 5 · `5_trigger.ground1.example.json` | `localised`: PASS → MAYBE |"
    ) in md
    assert "<details><summary>Changed conditions</summary>" in md
    assert "error <= 3 deg" in md


def test_a_new_trigger_that_fires_is_reported_as_added(repo: Path) -> None:
    swift = (repo / "examples" / "rules" / "swift.yaml").read_text()
    south = swift.replace("id: swift-bat-grb", "id: swift-southern").replace(
        "when dec > -40 deg then MAYBE", "when dec > -60 deg then PASS"
    )
    (repo / "examples" / "rules" / "southern.yaml").write_text(south)
    code, out = _diff(repo, str(NOTICES / "swift"), "--format", "json")
    assert code == 0, out
    changes = json.loads(out)["changes"]
    assert [(c["trigger"], c["event_id"], c["kind"], c["after"]) for c in changes] == [
        ("swift-southern", "1016881", "added", "PASS"),
        ("swift-southern", "1201696", "added", "PASS"),  # dec -48: the point of the change
    ]
    assert changes[1]["before"] is None
    assert changes[1]["step"] == 1


def test_no_change_exits_0_even_with_fail_on_change(repo: Path) -> None:
    code, out = _diff(repo, str(NOTICES / "swift"), "--fail-on-change")
    assert code == 0, out
    assert "No event changes." in out


def test_the_rules_are_read_at_the_revision_through_symlinks(repo: Path, tmp_path: Path) -> None:
    registry = repo / "rules" / "topics.yaml"
    committed = registry.read_bytes()
    registry.write_bytes(committed + b"  - {name: my.new.topic, format: json}\n")
    folder, commit = rules_at(repo / "examples" / "rules", "main", tmp_path / "out")
    assert folder == tmp_path / "out" / "examples" / "rules"
    assert len(commit) == 40
    topics = folder / "topics.yaml"
    assert topics.is_file() and not topics.is_symlink()
    assert topics.read_bytes() == committed  # the committed registry, not the edited one
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        p.name for p in (repo / "examples" / "rules").iterdir()
    )


def test_a_bad_revision_or_a_folder_outside_git_is_a_usage_error(
    repo: Path, tmp_path: Path
) -> None:
    code = runner.invoke(
        app, ["diff", "--base", "no-such-rev", "--rules", str(repo / "examples" / "rules"), "x"]
    ).exit_code
    assert code == 2
    outside = tmp_path / "outside"
    outside.mkdir()
    with pytest.raises(GitError):
        rules_at(outside, "HEAD", tmp_path / "out")
    code, _ = _diff(repo, str(tmp_path / "no-such-source"))
    assert code == 2


def test_values_are_shown_in_the_unit_the_condition_uses(repo: Path) -> None:
    """`error < 5 arcmin` tightened to 2 arcmin: the XRT-less BAT position (3 arcmin) changes,
    and the report shows what was read in arcmin, beside the condition (issue 16, item 9)."""
    swift = repo / "examples" / "rules" / "swift.yaml"
    swift.write_text(swift.read_text().replace("error < 5 arcmin", "error < 2 arcmin"))
    code, text = _diff(repo, str(NOTICES / "swift" / "1016881"))
    assert code == 0, text
    assert "factor localised: PASS" in text
    read = [line.strip() for line in text.splitlines() if line.strip().startswith("read:")]
    assert "read: error=3 arcmin" in read, text
