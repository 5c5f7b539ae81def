"""Rule sets are loaded first in a checker process, then in the service.

The loader's guard should stop any hostile rule file (size, encoding, nesting, aliases); this
is the net under it: a parser that crashes its process or never returns costs a refused reload
and a new checker, not the service.

The checker is a fresh interpreter (`python -m tracerules.runtime.service.checker`), not a fork
of the service: a fork of a process with Kafka and worker threads can inherit a lock another
thread held, and hang. A watching service starts it at once (one run without watching, at
the first SIGHUP) and keeps it for every reload, so a reload pays for one load there, not
for a process. It runs in its own session
(a Ctrl-C or a terminal hangup meant for the service does not reach it) and leaves when its
input closes, or when one check outlives twice the parent's timeout (SIGALRM), so a killed
service never leaves one behind for long.

Protocol: `ready` out once the loader is imported; then one JSON list of paths per line in, and
`done` out once the set was loaded and compiled, whatever it found (the service's own load
reports the problems).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import tracerules
from tracerules.errors import Diagnostic, RuleError, Span

CHECK_TIMEOUT_S = 20.0  # the guard answers any file in well under 2 s
START_TIMEOUT_S = 60.0  # a new interpreter importing the loader, on a busy machine
READY = b"ready\n"
ANSWER = b"done\n"


def checker_argv() -> list[str]:
    return [sys.executable, "-m", "tracerules.runtime.service.checker", str(CHECK_TIMEOUT_S * 2)]


class RuleChecker:
    """Loads a rule set in the checker process: None when it came back, else why not."""

    def __init__(self, timeout: float = CHECK_TIMEOUT_S, argv: Sequence[str] | None = None):
        self.timeout = timeout
        self.argv = list(argv or checker_argv())
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Have a checker ready before the first reload (the watcher starts one at once, so
        that reload is answered as quickly as the next); a failure waits for that reload."""
        if self._proc is None or self._proc.poll() is not None:
            self.close()
            with contextlib.suppress(OSError):
                self._spawn()

    def check(self, paths: Sequence[str | Path]) -> RuleError | None:
        where = Span(", ".join(str(p) for p in paths), 1, 1)
        request = (json.dumps([str(p) for p in paths]) + "\n").encode()
        try:
            proc = self._sent(request)
        except OSError as err:  # no process to be had (out of memory, of pids): not checked
            return _refusal(f"the rules could not be checked: {err}", where)
        answer = _reply(proc, self.timeout)
        if answer == ANSWER:
            return None
        timed_out = answer is None and proc.poll() is None
        self.close()
        if timed_out:
            return _refusal(f"loading the rules took over {self.timeout:.0f} s", where)
        if proc.returncode < 0:
            return _refusal(f"loading the rules crashed (signal {-proc.returncode})", where)
        return _refusal(f"loading the rules stopped the checker (exit {proc.returncode})", where)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(1.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def _sent(self, request: bytes) -> subprocess.Popen[bytes]:
        """The request, written to the running checker; to a new one if that one has gone
        (killed from outside since the last reload: not this rule set's doing)."""
        for fresh in (False, True):
            if fresh or self._proc is None or self._proc.poll() is not None:
                self.close()
                self._proc = self._spawn()
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.write(request)
                self._proc.stdin.flush()
                return self._proc
            except BrokenPipeError:
                if fresh:
                    raise
        raise AssertionError("unreachable")

    def _spawn(self) -> subprocess.Popen[bytes]:
        """A new checker, once it has imported the loader (which the first reload should not
        count against its timeout)."""
        env = dict(os.environ)
        here = str(Path(tracerules.__file__).resolve().parents[1])  # this very tracerules
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        self._proc = proc
        if _reply(proc, START_TIMEOUT_S) != READY:
            self.close()
            raise OSError(f"the checker did not start within {START_TIMEOUT_S:.0f} s")
        return proc


def _reply(proc: subprocess.Popen[bytes], timeout: float) -> bytes | None:
    """The checker's next line; b"" if it died (then `returncode` says how), None if it said
    nothing within `timeout`."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    got = b""
    while not got.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0.0))
        if not ready:
            return None
        chunk = os.read(fd, 64)
        if not chunk:
            proc.wait()
            return b""
        got += chunk
    return got


def _refusal(message: str, where: Span) -> RuleError:
    return RuleError([Diagnostic("E000", message, where)])


# -- the checker process ----------------------------------------------------------------------


def serve(alarm_s: float) -> None:
    """Answer each request line until the input closes."""
    from tracerules.rules.compile import compile_loaded
    from tracerules.rules.loader import load_paths

    warnings.simplefilter("ignore")  # ruamel warns about reused anchors: nobody reads them here
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    sys.stdout.buffer.write(READY)
    sys.stdout.buffer.flush()
    for line in sys.stdin.buffer:
        signal.alarm(max(int(alarm_s), 1))  # a hang the parent gave up on ends here too
        with contextlib.suppress(Exception):  # a bug in loading: the service's load reports it
            compile_loaded(load_paths(json.loads(line)))
        signal.alarm(0)
        sys.stdout.buffer.write(ANSWER)
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    serve(float(sys.argv[1]) if len(sys.argv) > 1 else CHECK_TIMEOUT_S * 2)
