"""One service per store: an exclusive lock on the store file itself."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO


def lock_store(store: Path) -> IO[bytes] | None:
    """Hold an exclusive flock on the store file itself for this process's life: one `run` or
    `echo` per store, since each engine caches the state of the events it touches. None if
    another process holds it.

    The lock belongs to the file, not to the name it was given: a symlink or a hard link to
    the same store finds it taken (flock locks the inode). SQLite's own locks are POSIX record
    locks, which flock does not interfere with on Linux.
    """
    real = Path(os.path.realpath(store))
    real.parent.mkdir(parents=True, exist_ok=True)
    handle = real.open("ab")  # creates an empty store (SQLite accepts one), never truncates
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle
