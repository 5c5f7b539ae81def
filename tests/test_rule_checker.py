"""The checker process a reload is loaded in first (runtime/service/checker.py): reused across
reloads, replaced when it hangs, dies or was killed, and never the cause of a refusal that the
rules did not earn. And the watcher's settling: a file written in two steps is loaded once,
whole.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service_harness import SERVICE_RULES, wait_until
from tracerules.errors import RuleError
from tracerules.rules.compile import RuleSet
from tracerules.runtime.service.checker import RuleChecker
from tracerules.runtime.service.watch import RuleWatcher

# A real process that starts like the checker, reads a request and dies by a segfault, as a
# parser crash would.
SEGFAULTS = (
    "import os, signal, sys; print('ready', flush=True); sys.stdin.readline(); "
    "os.kill(os.getpid(), signal.SIGSEGV)"
)


def gone(pid: int) -> bool:
    """No such process, or only its exit status left (a zombie its parent has not reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


@pytest.fixture
def rules_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    shutil.copytree(SERVICE_RULES, folder)
    return folder


@pytest.fixture
def checker() -> Iterator[RuleChecker]:
    made = RuleChecker(timeout=2.0)
    yield made
    made.close()


def test_one_checker_answers_every_reload(checker: RuleChecker, rules_folder: Path) -> None:
    assert checker.check([rules_folder]) is None
    first = checker.pid
    (rules_folder / "service.yaml").write_text("schema_version: 1\ntriggers: [{id: x}]\n")
    assert checker.check([rules_folder]) is None  # came back: the service's load reports it
    assert checker.check([rules_folder]) is None
    assert first is not None and checker.pid == first


def test_a_checker_that_stops_answering_is_a_refusal_and_is_replaced(
    checker: RuleChecker, rules_folder: Path
) -> None:
    assert checker.check([rules_folder]) is None
    stuck = checker.pid
    assert stuck is not None
    os.kill(stuck, signal.SIGSTOP)  # a parser that never returns
    refused = checker.check([rules_folder])
    assert isinstance(refused, RuleError)
    (problem,) = refused.diagnostics
    assert problem.code == "E000" and "took over 2 s" in problem.message
    assert problem.span.line == 1 and str(rules_folder) in problem.span.path
    assert gone(stuck)
    assert checker.check([rules_folder]) is None  # the next reload has a new checker
    assert checker.pid not in (None, stuck)


def test_a_checker_that_dies_on_a_rule_set_refuses_it(rules_folder: Path) -> None:
    crashing = RuleChecker(argv=[sys.executable, "-c", SEGFAULTS])
    try:
        refused = crashing.check([rules_folder])
    finally:
        crashing.close()
    assert isinstance(refused, RuleError)
    assert [d.code for d in refused.diagnostics] == ["E000"]
    assert f"crashed (signal {signal.SIGSEGV.value})" in refused.diagnostics[0].message


def test_a_checker_killed_between_reloads_is_replaced_without_a_refusal(
    checker: RuleChecker, rules_folder: Path
) -> None:
    assert checker.check([rules_folder]) is None
    killed = checker.pid
    assert killed is not None
    os.kill(killed, signal.SIGKILL)  # the OOM killer, an operator: not the rules' doing
    wait_until(lambda: gone(killed), 5, "the kill")
    assert checker.check([rules_folder]) is None
    assert checker.pid not in (None, killed)


def test_the_checker_ignores_a_ctrl_c_meant_for_the_service(
    checker: RuleChecker, rules_folder: Path
) -> None:
    assert checker.check([rules_folder]) is None
    pid = checker.pid
    assert pid is not None and os.getpgid(pid) != os.getpgid(0)  # not in the terminal's group
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGHUP)
    assert checker.check([rules_folder]) is None
    assert checker.pid == pid


def test_the_watcher_has_a_checker_before_the_first_reload_and_ends_it(
    rules_folder: Path,
) -> None:
    watcher = RuleWatcher([rules_folder], interval=60.0)
    watcher.start()
    pid = wait_until(lambda: watcher.checker.pid, 20, "a checker started with the watcher")
    watcher.request()
    assert isinstance(wait_until(watcher.take, 20, "the reload"), RuleSet)
    assert watcher.checker.pid == pid
    watcher.stop()
    assert watcher.checker.pid is None
    wait_until(lambda: gone(pid), 5, "the checker to leave")


def test_a_file_written_in_two_steps_is_loaded_once_whole(rules_folder: Path) -> None:
    rule_file = rules_folder / "service.yaml"
    whole = rule_file.read_bytes() + b"\n# edited\n"
    half = whole[: len(whole) // 2]
    watcher = RuleWatcher([rules_folder], interval=0.02)
    watcher.start()
    try:
        rule_file.write_bytes(half)  # an editor that writes in two steps, 0.1 s apart
        time.sleep(0.1)
        rule_file.write_bytes(whole)
        loaded = wait_until(watcher.take, 20, "the reload")
        assert isinstance(loaded, RuleSet), loaded
        assert len(loaded.triggers) == 3
        time.sleep(0.5)
        assert watcher.take() is None  # the half file was never loaded on its own
    finally:
        watcher.stop()
