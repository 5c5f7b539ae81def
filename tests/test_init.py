"""`tracerules init`: a new team's rules repository validates and passes its own tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML
from typer.testing import CliRunner

from tracerules.cli.main import app
from tracerules.rules.compile import compile_loaded
from tracerules.rules.loader import load_paths
from tracerules.ruletest.load import RuleCache, discover, load_suite
from tracerules.ruletest.run import run_test

ROOT = Path(__file__).resolve().parents[1]
INSTALL = re.compile(r'^python -m pip install "(?P<requirement>[^"]+)"$')
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


def _install_requirement(team: Path) -> str:
    """The requirement the scaffold's CI workflow installs tracerules from."""
    workflow = YAML(typ="safe").load((team / ".github/workflows/rules.yml").read_text())
    runs = [s.get("run", "") for s in workflow["jobs"]["check"]["steps"]]
    [requirement] = [m["requirement"] for r in runs if (m := INSTALL.match(r))]
    return requirement


def test_ci_installs_tracerules_from_this_checkout_at_a_commit_that_exists(
    tmp_path: Path,
) -> None:
    """tracerules is not on PyPI: `tracerules==0.1.0` made a new team's first CI run fail."""
    team = tmp_path / "team"
    assert runner.invoke(app, ["init", str(team)]).exit_code == 0
    requirement = _install_requirement(team)
    for text in (
        (team / ".github/workflows/rules.yml").read_text(),
        (team / "README.md").read_text(),
    ):
        assert "tracerules==" not in text
        assert "not published on PyPI" in text
    assert f'python -m pip install "{requirement}"' in (team / "README.md").read_text()
    pinned = re.fullmatch(r"tracerules @ git\+(?P<url>.+)@(?P<commit>[0-9a-f]{40})", requirement)
    if pinned is None:  # a checkout that is not a git repository: its path
        assert Path(requirement) == ROOT
        return
    head = _git_out("rev-parse", "HEAD")
    assert pinned["commit"] == head, "the scaffold pins the commit this tracerules runs from"
    origin = _git_out("remote", "get-url", "origin")
    # through `origin` when the checkout has one (a clone: CI's, a developer's), else itself
    expected = ROOT.as_uri() if origin is None else _pip_url(origin)
    assert pinned["url"] == expected
    if pinned["url"].startswith("file://") and Path(pinned["url"][7:]).exists():
        there = pinned["url"][7:]
        exists = subprocess.run(
            ["git", "-C", there, "cat-file", "-e", f"{head}^{{commit}}"], check=False
        )
        assert exists.returncode == 0, f"{head} is not a commit of {there}"


def _git_out(*args: str) -> str | None:
    cmd = ["git", "-C", str(ROOT), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def _pip_url(remote: str) -> str:
    if "://" in remote:
        return remote
    if remote.startswith("git@"):
        host, _, path = remote[4:].partition(":")
        return f"ssh://git@{host}/{path}"
    return (ROOT / remote).resolve().as_uri()


def test_the_scaffolds_own_ci_steps_pass_against_this_checkout(tmp_path: Path) -> None:
    """Every `tracerules` step of the workflow and every pre-commit hook, run as CI runs them,
    with this checkout's tracerules (what the install step installs)."""
    team = tmp_path / "team"
    assert runner.invoke(app, ["init", str(team)]).exit_code == 0
    yaml = YAML(typ="safe")
    steps = yaml.load((team / ".github/workflows/rules.yml").read_text())["jobs"]["check"]["steps"]
    commands = [
        s["run"] for s in steps if s.get("run", "").startswith("tracerules ") and "if" not in s
    ]
    hooks = yaml.load((team / ".pre-commit-config.yaml").read_text())["repos"][0]["hooks"]
    commands += [h["entry"] for h in hooks]
    assert len(commands) == 4
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "NO_COLOR": "1"}
    for command in commands:
        argv = [sys.executable, "-m", "tracerules.cli", *command.split()[1:]]
        done = subprocess.run(argv, cwd=team, env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{command}:\n{done.stdout}{done.stderr}"
    junit = (team / "rule-tests.xml").read_text()
    assert 'failures="0"' in junit and 'errors="0"' in junit


def test_the_install_source_can_be_chosen(tmp_path: Path) -> None:
    team = tmp_path / "team"
    chosen = "tracerules @ git+https://git.example.org/tracerules.git@0123456789abcdef"
    result = runner.invoke(app, ["init", str(team), "--install", chosen])
    assert result.exit_code == 0, result.output
    assert _install_requirement(team) == chosen
    assert f'python -m pip install "{chosen}"' in (team / "README.md").read_text()
