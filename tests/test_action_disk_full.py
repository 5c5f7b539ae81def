"""A full disk met by an action reaches `status` from the outcome the action returns (its
errno), never from words in its log: a remote server that answers "disk is full" says
nothing about our disk.

A real local HTTP server, a real SQLite store and the service's action workers.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from tests.conftest import gbm_rules, sequence
from tests.loopback import Loopback, serve
from tests.sql import full_and_not_full_errors
from tracerules.products.actions import registry
from tracerules.products.actions.registry import (
    ActionConfig,
    ActionOutcome,
    ActionRequest,
    ActionType,
)
from tracerules.runtime.dispatch.workers import ActionWorkers, disk_full
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.store.store import Store

FULL = "tr-test-full-disk"


class FullConfig(ActionConfig):
    type: Literal["tr-test-full-disk"]


def _write_to_a_full_disk(config: FullConfig, request: ActionRequest) -> ActionOutcome:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def server() -> Iterator[Loopback]:
    with serve() as loop:
        yield loop


@pytest.fixture
def full_disk_type() -> Iterator[None]:
    registry.register(ActionType(FULL, FullConfig, _write_to_a_full_disk, "a test type"))
    yield
    registry._TYPES.pop(FULL, None)


def _errors_seen(tmp_path: Path, store: Store, actions: str) -> list[BaseException]:
    """Plan the actions for one real notice, let the workers run them; what they reported."""
    rules = gbm_rules(tmp_path, "gbm-disk", actions)
    engine = Engine(rules, store, run_actions=False, out_dir=tmp_path / "out")
    engine.process(sequence("fermi_gbm_json")[1])
    seen: list[BaseException] = []
    workers = ActionWorkers(store.path, lambda: rules, tmp_path / "out", on_error=seen.append)
    workers.start()
    try:
        deadline = time.monotonic() + 20
        while any(a.status in ("pending", "running") for a in store.action_log()):
            assert time.monotonic() < deadline, store.action_log()
            time.sleep(0.05)
    finally:
        assert workers.stop(5)
    assert {a.status for a in store.action_log()} == {"failed"}
    return seen


def test_a_server_answering_disk_is_full_is_not_our_full_disk(
    server: Loopback, store: Store, tmp_path: Path
) -> None:
    server.script["/full"] = [(500, b"database or disk is full [Errno 28]", 0.0)]
    hook = f"""      - type: webhook
        url: "{server.url}/full"
        attempts: 1
        backoff: 0
"""
    assert _errors_seen(tmp_path, store, hook) == []
    (action,) = store.action_log()
    assert "disk is full" in action.log  # the words are there; the disk is not full


def test_an_action_meeting_a_full_disk_is_reported_by_its_errno(
    store: Store, tmp_path: Path, full_disk_type: None
) -> None:
    seen = _errors_seen(tmp_path, store, f"      - type: {FULL}\n")
    assert seen and all(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in seen)


def test_a_store_error_is_a_full_disk_by_its_code_not_its_words(tmp_path: Path) -> None:
    full, other = full_and_not_full_errors(tmp_path)
    assert "full" in str(full) and "full" in str(other)
    assert disk_full(full)
    assert not disk_full(other)  # "no such table: full"
    assert disk_full(OSError(errno.ENOSPC, "No space left on device"))
