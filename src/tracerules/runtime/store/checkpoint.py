"""WAL checkpoints off the service's hot path (SQLite stores only).

A SQLite store in WAL mode appends commits to the write-ahead log and copies them back into
the database file in a checkpoint, which syncs both files to disk. By default the checkpoint
runs inside the commit that takes the log past 1000 pages: in the service that is a notice's
commit, and every few dozen notices one of them waited for the syncs (20 to 60 ms on a busy
disk, the p99 of bench/latency.py). `BackgroundCheckpoints` runs passive checkpoints (which
never block a writer) on its own connection and thread instead, once a second, and raises the
service connection's own threshold to a backstop.

The backstop is needed because the log restarts from its beginning only when a commit finds
it wholly copied back: under a steady stream of commits every background checkpoint overlaps
one, and the log file would grow without end. At BACKSTOP_BYTES of log the service's commit
checkpoints as before, but the background has already copied nearly everything, so it is a
short one; the same holds should this thread stall.

A bulk store (a replay, `Store.batch`) runs them too, every tenth of a second: its batches
commit megabytes at a time, and the copy back then overlaps the next batch's evaluation on
the second core instead of stopping it every 40 MB.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # the store starts them for its batches: no import cycle at run time
    from tracerules.runtime.store.store import Store

LOG = logging.getLogger("tracerules.store")
INTERVAL_S: Final = 1.0
BULK_INTERVAL_S: Final = 0.1
BACKSTOP_BYTES: Final = 40 << 20  # 10,240 pages of 4 kB, 2,560 of a bulk store's 16 kB
DEFAULT_PAGES: Final = 1000  # SQLite's wal_autocheckpoint


class BackgroundCheckpoints:
    """Passive WAL checkpoints of a SQLite store every `interval` seconds, on a side thread.
    Nothing to do for a PostgreSQL or in-memory store."""

    def __init__(self, store: Store, interval: float = INTERVAL_S) -> None:
        self.store, self.interval = store, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None
        self._threshold = DEFAULT_PAGES  # the connection's own, put back by stop()

    @property
    def applies(self) -> bool:
        return not self.store.is_postgresql and self.store.path != ":memory:"

    def start(self) -> None:
        if not self.applies or self._thread is not None:
            return
        self._threshold = self._pragma("wal_autocheckpoint")
        self._set_threshold(max(self._threshold, BACKSTOP_BYTES // self._pragma("page_size")))
        self._thread = threading.Thread(target=self._run, name="wal-checkpoints", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; the store's own commits checkpoint as they did before `start`."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=10)
        self._thread = None
        self._set_threshold(self._threshold)

    def _set_threshold(self, pages: int) -> None:
        # A setting of this connection only, harmless inside another thread's transaction.
        self.store.db.execute(f"PRAGMA wal_autocheckpoint={pages}").fetchall()

    def _pragma(self, name: str) -> int:
        return int(self.store.db.execute(f"PRAGMA {name}").fetchone()[0])

    def _run(self) -> None:
        # timeout: a passive checkpoint never waits for a writer, only for its own connection
        # to read the schema; a short one keeps stop() prompt.
        db = sqlite3.connect(self.store.path, timeout=1.0, isolation_level=None)
        try:
            while not self._stop.wait(self.interval):
                self.checkpoint(db)
        finally:
            db.close()

    def checkpoint(self, db: sqlite3.Connection) -> tuple[int, int, int] | None:
        """One passive checkpoint: (busy, pages in the log, pages copied back), or None when
        it failed (reported once per different error, retried at the next interval)."""
        try:
            # fetchall: a statement left unfinished would hold a read lock on the log and
            # keep it from ever restarting.
            busy, log, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
        except sqlite3.Error as err:
            if str(err) != self._last_error:
                LOG.warning("background checkpoint failed", extra={"fields": {"error": str(err)}})
            self._last_error = str(err)
            return None
        self._last_error = None
        return int(busy), int(log), int(copied)
