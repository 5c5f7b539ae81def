"""Rule reloads: watch the rule files, load a changed set in the background, hand it over.

The consumer loop never waits for a reload: a thread polls the files' modification times
(about once a second) or wakes on request (SIGHUP), loads and validates the whole set, and
queues either the new rule set or the error. The loop swaps the set in between two notices.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from tracerules.errors import Diagnostic, RuleError, Span
from tracerules.rules.compile import RuleSet, compile_loaded, load_ruleset
from tracerules.rules.guard import empty_set
from tracerules.rules.loader import discover, load_paths

Fingerprint = tuple[tuple[str, int, int], ...]
SETTLE_S = 0.2  # an editor may write a file in several steps: wait until it stops changing
CHECK_TIMEOUT_S = 20.0  # the guard answers any file in well under 2 s


def fingerprint(paths: Sequence[Path]) -> Fingerprint:
    """Each rule file with its modification time and size; new and deleted files count."""
    files, _ = discover(paths)
    out = []
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue
        out.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(out)


class RuleWatcher:
    """Loads the rules again when a file changes (if `interval` is set) or on `request()`."""

    def __init__(
        self,
        paths: Sequence[Path],
        interval: float | None = 1.0,
        log: logging.Logger | None = None,
        allow_empty: bool = False,
    ) -> None:
        self.paths = list(paths)
        self.interval = interval
        self.allow_empty = allow_empty
        self.log = log or logging.getLogger("tracerules.rules")
        self._seen = fingerprint(self.paths)
        self._asked = threading.Event()
        self._stopping = threading.Event()
        self._results: queue.SimpleQueue[RuleSet | RuleError] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="tracerules-rules", daemon=True)
        self._thread.start()

    def request(self) -> None:
        self._asked.set()

    def take(self) -> RuleSet | RuleError | None:
        """A finished reload, if there is one: the new rule set, or why it was refused."""
        try:
            return self._results.get_nowait()
        except queue.Empty:
            return None

    def stop(self) -> None:
        self._stopping.set()
        self._asked.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            asked = self._asked.wait(self.interval)
            self._asked.clear()
            if self._stopping.is_set():
                return
            now = fingerprint(self.paths)
            if not asked and now == self._seen:
                continue
            self._results.put(self._load())

    def _load(self) -> RuleSet | RuleError:
        while True:  # wait until the files stop changing
            before = fingerprint(self.paths)
            time.sleep(SETTLE_S)
            self._seen = fingerprint(self.paths)
            if self._seen == before:
                break
        try:
            refused = checked_apart(self.paths)
            if refused is not None:
                return refused
            rules = load_ruleset(self.paths)
            empty = empty_set(len(rules.triggers), self.paths)
            return RuleError([empty]) if empty and not self.allow_empty else rules
        except RuleError as err:
            return err
        except Exception as err:  # a bug in loading must not stop the service: keep the old set
            self.log.exception("rules reload crashed")
            where = Span(", ".join(str(p) for p in self.paths), 1, 1)
            return RuleError([Diagnostic("E000", f"reload failed: {err!r}", where)])


def checked_apart(paths: Sequence[Path]) -> RuleError | None:
    """Load the rules once in a forked child first: a parser that crashes the process or never
    returns then costs a refused reload, not the service (the guard in the loader should stop
    both; this is the net under it). None when the child came back, whatever it found."""
    where = Span(", ".join(str(p) for p in paths), 1, 1)
    pid = os.fork()
    if pid == 0:  # the child: load, and leave without running any of the parent's cleanup
        code = 0
        try:
            compile_loaded(load_paths(paths))
        except BaseException:
            code = 1
        os._exit(code)
    deadline = time.monotonic() + CHECK_TIMEOUT_S
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            took = f"loading the rules took over {CHECK_TIMEOUT_S:.0f} s"
            return RuleError([Diagnostic("E000", took, where)])
        time.sleep(0.01)
    if os.WIFSIGNALED(status):
        crash = f"loading the rules crashed (signal {os.WTERMSIG(status)})"
        return RuleError([Diagnostic("E000", crash, where)])
    return None
