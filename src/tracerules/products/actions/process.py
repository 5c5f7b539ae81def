"""Running a child process for an action: an argv list (never a shell), a timeout that kills.

The child gets only the environment its action declares (plus PATH, HOME, LANG, LC_ALL, TZ).
The child starts in its own session (process group), so a timeout kills it together with
anything it spawned; its exit code is the verdict, whatever it prints on stderr.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TAIL = 2000  # characters of stdout/stderr kept for the action's log
# What a child inherits from the service's environment; everything else it must declare, so
# `argv: [env]` shows no secret of another action or of the Kafka connection.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")


def child_env(declared: Mapping[str, str], *also: str) -> dict[str, str]:
    """The environment of a child: the few inherited variables (and `also`), then its own."""
    names = (*INHERITED, *also)
    return {**{n: os.environ[n] for n in names if n in os.environ}, **declared}


@dataclass(frozen=True, slots=True)
class ProcessResult:
    returncode: int | None  # None when it was killed on timeout
    timed_out: bool
    stdout: str
    stderr: str
    seconds: float

    def log_lines(self) -> list[str]:
        lines = []
        for name, text in (("stdout", self.stdout), ("stderr", self.stderr)):
            if text.strip():
                clipped = text if len(text) <= TAIL else "..." + text[-TAIL:]
                lines.append(f"{name}: {clipped.rstrip()}")
        return lines


_RUNNING: set[subprocess.Popen[bytes]] = set()  # children of this process, for shutdown
_RUNNING_LOCK = threading.Lock()


def _kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)  # the child's own group: it and its children


def running_children() -> int:
    with _RUNNING_LOCK:
        return len(_RUNNING)


def stop_children(grace: float = 3.0) -> int:
    """Shutdown: SIGTERM every running child's process group, SIGKILL what is left after
    `grace` seconds. How many there were. Their actions record the interruption."""
    with _RUNNING_LOCK:
        children = list(_RUNNING)
    for proc in children:
        _kill(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.0, deadline - time.monotonic()))
        _kill(proc)  # the group may outlive its leader
    return len(children)


def run_process(
    argv: Sequence[str],
    *,
    timeout: float,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> ProcessResult:
    """Run ``argv`` to completion or until ``timeout`` seconds, then kill its process group.
    ``on_start`` is told the child's pid as soon as it runs (the dispatcher records it, so a
    restarted service knows whether a first copy is still alive).

    Raises OSError when the program cannot be started (not found, not executable).
    """
    start = time.monotonic()
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=None if env is None else dict(env),
        start_new_session=True,
    )
    with _RUNNING_LOCK:
        _RUNNING.add(proc)
    try:
        if on_start is not None:
            on_start(proc.pid)
        return _wait(proc, stdin, timeout, start)
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(proc)


def _wait(
    proc: subprocess.Popen[bytes], stdin: bytes | None, timeout: float, start: float
) -> ProcessResult:
    timed_out = False
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill(proc)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a grandchild left its own group holding the pipes
            proc.kill()
            out, err = b"", b""
    return ProcessResult(
        None if timed_out else proc.returncode,
        timed_out,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
        time.monotonic() - start,
    )


def inner_timeout(timeout: float) -> float:
    """The child's time limit: a little under the action's, so the kill lands before the
    dispatcher stops waiting and the outcome says what happened."""
    return max(timeout - 1.0, timeout * 0.9)
