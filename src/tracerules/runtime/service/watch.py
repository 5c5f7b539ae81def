"""Rule reloads: watch the rule files, load a changed set in the background, hand it over.

The consumer loop never waits for a reload: a thread polls the files' modification times
(about once a second) or wakes on request (SIGHUP), loads and validates the whole set (first in
the checker process, see checker.py), and queues either the new rule set or the error. The loop
swaps the set in between two notices.

A change found by polling is loaded once no rule file was written for SETTLE_S (an editor may
write a file in several steps); a request is loaded at once, since whoever sent it says the
files are ready.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from tracerules.errors import Diagnostic, RuleError, Span
from tracerules.rules.compile import RuleSet, load_ruleset
from tracerules.rules.guard import empty_set
from tracerules.rules.loader import discover
from tracerules.runtime.service.checker import RuleChecker

Fingerprint = tuple[tuple[str, int, int], ...]
SETTLE_S = 0.2  # an editor may write a file in several steps: wait until it stops changing


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
        self.checker = RuleChecker()

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
        self.checker.close()

    def _loop(self) -> None:
        if self.interval is not None:  # watching: a checker ready for the first change
            self.checker.start()
        while not self._stopping.is_set():
            asked = self._asked.wait(self.interval)
            self._asked.clear()
            if self._stopping.is_set():
                return
            now = fingerprint(self.paths)
            if not asked and now == self._seen:
                continue
            if not asked:
                self._settle()
            result = self._load()
            if fingerprint(self.paths) != self._seen:
                # The files changed while they were read (a writer descheduled mid-write, on a
                # busy machine, for longer than SETTLE_S): this answer is for files that no
                # longer exist. Load them again as they are now: the next poll sees the change;
                # without polling, ask again.
                if self.interval is None:
                    self._asked.set()
                continue
            self._results.put(result)

    def _settle(self) -> None:
        """Wait until no rule file was written for SETTLE_S. Polled once a second, a change is
        usually older than that already, and then there is no wait at all."""
        while not self._stopping.is_set():
            before = fingerprint(self.paths)
            quiet = time.time() - max((mtime for _, mtime, _ in before), default=0) / 1e9
            if quiet >= SETTLE_S:
                return
            self._stopping.wait(SETTLE_S - max(quiet, 0.0))
            if quiet < 0 and fingerprint(self.paths) == before:  # a clock ahead of ours
                return

    def _load(self) -> RuleSet | RuleError:
        self._asked.clear()  # a request made before the files are read is answered by this load
        self._seen = fingerprint(self.paths)
        try:
            refused = self.checker.check(self.paths)
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
