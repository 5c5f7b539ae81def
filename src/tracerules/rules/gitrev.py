"""Rule files as they were at a git revision, written out to a folder to load them from.

Files are read with `git ls-tree` and `git cat-file`, never by checking out: the working tree
is left alone. Symbolic links (such as `examples/rules/topics.yaml -> ../../rules/topics.yaml`)
are followed inside the repository at the same revision, and written as plain copies.
"""

from __future__ import annotations

import posixpath
import subprocess
from pathlib import Path

_MAX_LINKS = 16  # symlink hops followed before giving up (a cycle)


class GitError(RuntimeError):
    """git is missing, the folder is not in a repository, or the revision does not exist."""


def git(cwd: Path, *args: str) -> bytes:
    """Run git in `cwd` and return its output; GitError with git's message on failure."""
    try:
        done = subprocess.run(
            ["git", "-C", str(cwd), *args], capture_output=True, timeout=60, check=False
        )
    except (OSError, subprocess.SubprocessError) as err:
        raise GitError(f"cannot run git: {err}") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip() or f"git {args[0]} failed"
        raise GitError(message)
    return done.stdout


def resolve_revision(folder: Path, rev: str) -> str:
    """The full commit id a revision names (a branch, a tag, HEAD~1, a short id)."""
    try:
        return git(folder, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").decode().strip()
    except GitError:
        raise GitError(f"'{rev}' is not a commit in this repository") from None


def rules_at(rules_dir: Path, rev: str, dest: Path) -> tuple[Path, str]:
    """Write `rules_dir` as it was at `rev` under `dest`, mirroring the repository's layout.

    Returns the folder to load the rules from, and the commit id.
    """
    start = rules_dir if rules_dir.is_dir() else rules_dir.parent
    top = Path(git(start, "rev-parse", "--show-toplevel").decode().strip()).resolve()
    commit = resolve_revision(top, rev)
    try:
        inside = rules_dir.resolve().relative_to(top).as_posix()
    except ValueError:
        raise GitError(f"{rules_dir} is not inside the repository {top}") from None
    out = dest / inside
    if extract(top, commit, inside, out) == 0:
        raise GitError(f"'{inside}' holds no files at {rev}")
    return out, commit


def extract(top: Path, commit: str, src: str, out: Path, hops: int = 0) -> int:
    """Write the files under repository path `src` at `commit` to `out`; returns their count."""
    written = 0
    for mode, kind, sha, path in _tree(top, commit, src):
        if kind != "blob":
            continue  # submodules
        target = out if path == src else out / posixpath.relpath(path, src)
        data = git(top, "cat-file", "blob", sha)
        if mode == "120000":
            linked = posixpath.normpath(posixpath.join(posixpath.dirname(path), data.decode()))
            if linked.startswith("../") or linked == ".." or hops >= _MAX_LINKS:
                continue  # outside the repository, or a cycle: nothing to read at `commit`
            written += extract(top, commit, linked, target, hops + 1)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written += 1
    return written


def _tree(top: Path, commit: str, src: str) -> list[tuple[str, str, str, str]]:
    """(mode, type, object id, path) of every file under `src`, recursively."""
    listing = git(top, "ls-tree", "-r", "-z", "--full-tree", commit, "--", src)
    entries = []
    for raw in listing.split(b"\0"):
        if not raw:
            continue
        meta, _, path = raw.decode().partition("\t")
        mode, kind, sha = meta.split()
        entries.append((mode, kind, sha, path))
    return entries
