"""Where a new rules repository installs tracerules from: a source that exists.

tracerules is not on PyPI, so `pip install tracerules==X` fails in a new team's first CI run.
The default is the source this tracerules itself runs from: its git checkout pinned at the
current commit (through the checkout's `origin` remote when it has one, else the checkout
itself as a `file://` URL), or what pip recorded when it installed this copy (PEP 610
`direct_url.json`). `tracerules init --install` overrides it; a team whose CI runs elsewhere
points it at a repository that CI can reach.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import tracerules


@dataclass(frozen=True)
class InstallSource:
    """A pip requirement for tracerules, and a sentence saying where it points."""

    requirement: str
    note: str


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def checkout_root() -> Path | None:
    """The source checkout this tracerules is imported from (src layout), if it is one."""
    root = Path(tracerules.__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file() or 'name = "tracerules"' not in pyproject.read_text():
        return None
    return root


def _pip_git_url(remote: str, root: Path) -> str:
    """A git remote as pip's `git+` wants it: scp-like and bare paths become URLs."""
    if "://" in remote:
        return remote
    if remote.startswith("git@"):
        host, _, path = remote[4:].partition(":")
        return f"ssh://git@{host}/{path}"
    return (root / remote).resolve().as_uri()


def from_checkout(root: Path) -> InstallSource:
    """The checkout at its current commit (through `origin` when it has one), or its path
    when it is not a git repository."""
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return InstallSource(str(root), f"the tracerules source at {root}, a local path")
    remote = _git(root, "remote", "get-url", "origin")
    url = _pip_git_url(remote, root) if remote is not None else root.as_uri()
    where = "" if remote is not None else " (on this machine: CI elsewhere needs --install)"
    return InstallSource(
        f"tracerules @ git+{url}@{commit}",
        f"the tracerules repository {url} at commit {commit[:12]}{where}",
    )


def from_pip_record() -> InstallSource | None:
    """What pip recorded when it installed this copy (a VCS URL at a commit, or a path)."""
    try:
        text = metadata.distribution("tracerules").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    record = json.loads(text)
    url, vcs = record.get("url", ""), record.get("vcs_info")
    if vcs and vcs.get("vcs") == "git" and vcs.get("commit_id"):
        commit = vcs["commit_id"]
        return InstallSource(
            f"tracerules @ git+{url}@{commit}", f"the tracerules repository at commit {commit}"
        )
    if url.startswith("file://") and "dir_info" in record:
        path = url.removeprefix("file://")
        return InstallSource(path, f"the tracerules source at {path} (a local path)")
    return None


def default_source() -> InstallSource | None:
    """Where this tracerules comes from, or None when that cannot be told."""
    root = checkout_root()
    if root is not None:
        return from_checkout(root)
    return from_pip_record()


def given_source(requirement: str) -> InstallSource:
    """A requirement passed with --install (a path, a git URL, or a published version)."""
    return InstallSource(requirement, f"{requirement} (chosen with tracerules init --install)")
