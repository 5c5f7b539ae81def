"""Safe to leave unattended (issue 11): the store lock, secrets, retries, disk full, shutdown.

These run without the broker; the service-level checks are in tests/test_service_torture.py.
"""

from __future__ import annotations

import os
from pathlib import Path

from tracerules.runtime.service import lock_store


def test_a_symlink_to_a_locked_store_finds_it_locked(tmp_path: Path) -> None:
    real = tmp_path / "a" / "store.sqlite"
    first = lock_store(real)
    assert first is not None
    link = tmp_path / "b" / "link.sqlite"
    link.parent.mkdir()
    link.symlink_to(real)
    try:
        assert lock_store(link) is None
    finally:
        first.close()
    again = lock_store(link)
    assert again is not None
    again.close()


def test_a_hard_link_to_a_locked_store_finds_it_locked(tmp_path: Path) -> None:
    real = tmp_path / "store.sqlite"
    first = lock_store(real)
    assert first is not None
    other = tmp_path / "elsewhere"
    other.mkdir()
    os.link(real, other / "same.sqlite")
    try:
        assert lock_store(other / "same.sqlite") is None
    finally:
        first.close()
