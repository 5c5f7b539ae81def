"""Running a child process for an action: an argv list (never a shell), a timeout that kills.

The child gets only the environment its action declares (plus PATH, HOME, LANG, LC_ALL, TZ).
The child starts in its own session (process group), so a timeout kills it together with
anything it spawned; its exit code is the verdict, whatever it prints on stderr.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
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


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)  # the child's own group: it and its children
        else:  # pragma: no cover - Windows has no process groups of this kind
            proc.kill()
    except ProcessLookupError:
        pass


def run_process(
    argv: Sequence[str],
    *,
    timeout: float,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> ProcessResult:
    """Run ``argv`` to completion or until ``timeout`` seconds, then kill its process group.

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
