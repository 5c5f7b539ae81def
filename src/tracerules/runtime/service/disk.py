"""Disk space for `status`: a full disk is a degraded state, not a silent stall.

The store and the output folder are checked where they live (free bytes, from statvfs), and
the service records the last time a worker met a full disk (ENOSPC, or SQLite's "database
or disk is full"): either makes the disk FULL until space returns and the record ages.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from tracerules.errors import exception_tail

LOW_BYTES: Final = 1 << 20  # under 1 MiB free, no product or store page can be relied on
RECENT_S: Final = 30.0  # a recorded full disk counts this long


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int | None:
    try:
        return int(shutil.disk_usage(_existing(path)).free)
    except OSError:
        return None


def disk_report(paths: Iterable[Path], recorded: Mapping[str, Any], now: float) -> dict[str, Any]:
    """{'state': 'OK' | 'FULL', 'places': [...], 'summary': ...} for these folders."""
    free = {str(p): free_bytes(p) for p in dict.fromkeys(paths)}
    known = {path: n for path, n in free.items() if n is not None}
    low = {path: n for path, n in known.items() if n < LOW_BYTES}
    full_at = recorded.get("full_at")
    age = now - float(full_at) if isinstance(full_at, int | float) else None
    recent = age is not None and age < RECENT_S
    if low:
        summary = "FULL: " + ", ".join(f"{path} has {n} bytes free" for path, n in low.items())
    elif recent:
        summary = f"FULL {age:.0f} s ago: {recorded.get('error', '')}"
    else:
        summary = "OK: " + ", ".join(f"{n / 1e6:.0f} MB free at {p}" for p, n in known.items())
    places = [{"path": path, "free": n} for path, n in free.items()]
    return {"state": "FULL" if low or recent else "OK", "places": places, "summary": summary}


class DiskWatch:
    """What the service's threads met, for the consumer thread to record at its next beat."""

    def __init__(self, folders: Iterable[Path]) -> None:
        self.folders = tuple(folders)
        self._seen: tuple[float, str] | None = None  # set from any thread
        self._was_full = False

    def saw(self, err: BaseException) -> None:
        self._seen = (time.time(), exception_tail(err))

    def has_room(self) -> bool:
        return all((free_bytes(f) or 0) >= LOW_BYTES for f in self.folders)

    def record(self, put: Callable[..., None]) -> None:
        """A full disk met since the last call, or room again after one."""
        seen, self._seen = self._seen, None
        if seen is not None:
            put("disk", full_at=seen[0], error=seen[1])
            self._was_full = True
        elif self._was_full and self.has_room():
            put("disk", full_at=None, error=None, room_again_at=time.time())
            self._was_full = False
