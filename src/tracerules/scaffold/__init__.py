"""The files `tracerules init` writes: a rules repository for a new observatory team.

They live next to this module. A leading `dot-` in a name stands for a leading `.` (hidden
files are easy to lose in packaging), `{{version}}` becomes this tracerules' version,
`{{install}}` the pip requirement tracerules is installed from and `{{install_note}}` a
sentence saying where that is (see install.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from tracerules import __version__
from tracerules.scaffold.install import InstallSource

_SKIP = ("__init__.py", "__pycache__")


def templates(source: InstallSource) -> list[tuple[str, bytes]]:
    """(path in the new repository, content) of every scaffold file, sorted by path."""
    values = {
        b"{{version}}": __version__,
        b"{{install}}": source.requirement,
        b"{{install_note}}": source.note,
    }
    out = []
    for parts, node in _walk(files(__name__), ()):
        dest = "/".join("." + p[4:] if p.startswith("dot-") else p for p in parts)
        data = node.read_bytes()
        for marker, value in values.items():
            data = data.replace(marker, value.encode())
        out.append((dest, data))
    return sorted(out)


def _walk(
    node: Traversable, parts: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], Traversable]]:
    for child in node.iterdir():
        if child.name in _SKIP or child.name.endswith(".py"):
            continue
        if child.is_dir():
            yield from _walk(child, (*parts, child.name))
        else:
            yield (*parts, child.name), child


def conflicts(directory: Path) -> list[str]:
    """What is already in `directory` (empty when it is missing or empty)."""
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir())


def write(directory: Path, source: InstallSource) -> list[Path]:
    """Write the scaffold into `directory` (created if needed), replacing files of the same
    name and leaving every other file alone. Returns the files written."""
    written = []
    for rel, data in templates(source):
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written.append(target)
    return written
