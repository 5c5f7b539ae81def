"""Thin file I/O shared by products: atomic writes and safe relative paths."""

from __future__ import annotations

import errno
import itertools
import os
import tempfile
from pathlib import Path, PurePosixPath

_UNSAFE = str.maketrans({c: "_" for c in ':*?"<>|#\\'})


def out_of_space(err: BaseException) -> bool:
    """Whether an error is a full disk or quota (ENOSPC, EDQUOT): by its errno, not its text."""
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)


def _file_mode() -> int:
    # mkstemp makes 0600 files; products are for sharing, so honour the umask like open() does.
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _file_mode()


def safe_relative(path: str) -> Path:
    """A relative path that cannot escape the output folder, with awkward characters replaced."""
    parts = [p.translate(_UNSAFE) for p in PurePosixPath(path).parts if p not in ("", ".", "/")]
    if not parts or any(p == ".." for p in parts):
        raise ValueError(f"unsafe output path {path!r}")
    return Path(*parts)


def _complete_temporary(target: Path, data: bytes) -> str:
    """`data` in a new temporary file beside `target`, whole and with the products' mode."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            os.fchmod(handle.fileno(), _MODE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(target: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename it into place."""
    tmp = _complete_temporary(target, data)
    try:
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_MAX_SIBLINGS = 1000


def claim_folder(base: Path, token: str, content: bytes) -> Path:
    """The first of ``base``, ``base_2``, ``base_3``, ... that this ``content`` may use.

    A folder belongs to whoever first wrote its ``token`` file: it is ours if that file is
    absent (we then write it) or already holds ``content`` (a replay of the same input), and
    another input's otherwise. Creating the token is atomic and exclusive (a hard link of a
    complete temporary file), so two writers racing for one folder never both win it.
    """
    for number in itertools.count(1):
        if number > _MAX_SIBLINGS:
            raise OSError(f"more than {_MAX_SIBLINGS} inputs claim {base}")
        folder = base if number == 1 else base.with_name(f"{base.name}_{number}")
        if _take(folder / token, content):
            return folder
    raise AssertionError("unreachable")  # pragma: no cover


def _take(target: Path, content: bytes) -> bool:
    tmp = _complete_temporary(target, content)
    try:
        os.link(tmp, target)  # fails if the token exists: the exclusive step
        return True
    except FileExistsError:
        return target.read_bytes() == content
    finally:
        Path(tmp).unlink(missing_ok=True)
