"""`tracerules init`: a new team's rules repository validates and passes its own tests."""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml import YAML
from typer.testing import CliRunner

from tracerules import __version__
from tracerules.cli.main import app
from tracerules.rules.compile import compile_loaded
from tracerules.rules.loader import load_paths
from tracerules.ruletest.load import RuleCache, discover, load_suite
from tracerules.ruletest.run import run_test

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

EXPECTED = {
    ".github/workflows/rules.yml",
    ".gitignore",
    ".pre-commit-config.yaml",
    "README.md",
    "notices/PROVENANCE.tsv",
    "notices/swift/1016881/BAT_GRB_Pos_1016881-253.xml",
    "notices/swift/1016881/BAT_QuickLook_Pos_1016881-252.xml",
    "notices/swift/1016881/XRT_Pos_1016881-259.xml",
    "notices/swift/1201696/BAT_GRB_Pos_1201696-785.xml",
    "rules/swift.test.yaml",
    "rules/sites.yaml",
    "rules/swift.yaml",
    "rules/topics.yaml",
}


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_the_scaffold_validates_clean_and_passes_its_tests(tmp_path: Path) -> None:
    team = tmp_path / "team"
    result = runner.invoke(app, ["init", str(team)])
    assert result.exit_code == 0, result.output
    assert _files(team) == EXPECTED
    # validate: no errors and no lint findings
    ruleset, diagnostics = compile_loaded(load_paths([team / "rules"]))
    assert diagnostics == []
    assert ruleset is not None
    assert [t.id for t in ruleset.triggers] == ["swift-bat-grb"]
    # test: every test passes, and covers the trigger
    files, _ = discover([team / "rules"])
    assert [p.name for p in files] == ["swift.test.yaml"]
    suite = load_suite(files[0], RuleCache())
    assert suite.diagnostics == []
    assert suite.rules is not None
    results = [run_test(t, suite.rules) for t in suite.tests]
    assert len(results) == 2
    assert all(r.ok for r in results)
    assert {t for r in results for t in r.test.triggers} == {"swift-bat-grb"}
    # and through the CLI, as the CI workflow and the pre-commit hooks run them
    assert runner.invoke(app, ["validate", str(team / "rules")]).exit_code == 0
    tested = runner.invoke(app, ["test", str(team / "rules")])
    assert tested.exit_code == 0, tested.output
    assert "Every trigger is covered by a test (1 trigger)." in tested.output


def test_ci_and_pre_commit_run_validate_and_test(tmp_path: Path) -> None:
    team = tmp_path / "team"
    assert runner.invoke(app, ["init", str(team)]).exit_code == 0
    yaml = YAML(typ="safe")
    workflow = yaml.load((team / ".github/workflows/rules.yml").read_text())
    runs = [s.get("run", "") for s in workflow["jobs"]["check"]["steps"]]
    assert f'python -m pip install "tracerules=={__version__}"' in runs
    assert any(r.startswith("tracerules validate") and r.endswith(" rules") for r in runs)
    assert any(r.startswith("tracerules test") and r.endswith(" rules") for r in runs)
    hooks = yaml.load((team / ".pre-commit-config.yaml").read_text())["repos"][0]["hooks"]
    assert [h["entry"] for h in hooks] == ["tracerules validate rules", "tracerules test rules"]
    assert all(h["language"] == "system" and h["pass_filenames"] is False for h in hooks)
    readme = (team / "README.md").read_text()
    assert "tracerules test rules" in readme
    assert "{{version}}" not in readme


def test_a_folder_that_is_not_empty_is_left_alone_unless_forced(tmp_path: Path) -> None:
    team = tmp_path / "team"
    team.mkdir()
    (team / "README.md").write_text("ours\n")
    (team / "notes.txt").write_text("keep me\n")
    refused = runner.invoke(app, ["init", str(team)])
    assert refused.exit_code == 1
    assert "is not empty" in refused.output
    assert _files(team) == {"README.md", "notes.txt"}
    assert (team / "README.md").read_text() == "ours\n"
    forced = runner.invoke(app, ["init", str(team), "--force"])
    assert forced.exit_code == 0, forced.output
    assert _files(team) == EXPECTED | {"notes.txt"}
    assert (team / "notes.txt").read_text() == "keep me\n"
    assert (team / "README.md").read_text() != "ours\n"


def test_a_file_is_not_a_folder(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    result = runner.invoke(app, ["init", str(target)])
    assert result.exit_code == 2
    assert "is a file, not a folder" in result.output


def test_the_scaffold_registry_is_the_project_registry() -> None:
    """The scaffold ships a copy of rules/topics.yaml: they must not drift apart."""
    shipped = ROOT / "src" / "tracerules" / "scaffold" / "rules" / "topics.yaml"
    assert shipped.read_bytes() == (ROOT / "rules" / "topics.yaml").read_bytes()


def test_the_scaffold_sites_are_the_project_sites() -> None:
    """The scaffold ships a copy of rules/sites.yaml (the MWA and the ATCA)."""
    shipped = ROOT / "src" / "tracerules" / "scaffold" / "rules" / "sites.yaml"
    assert shipped.read_bytes() == (ROOT / "rules" / "sites.yaml").read_bytes()
