"""One service per store: an exclusive lock on the store file itself (SQLite), or
PostgreSQL's advisory lock (a standby waits for it)."""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

LOG = logging.getLogger("tracerules.store")


def lock_store(store: Path) -> IO[bytes] | None:
    """Hold an exclusive flock on the store file itself for this process's life: one `run` or
    `echo` per store, since each engine caches the state of the events it touches. None if
    another process holds it.

    The lock belongs to the file, not to the name it was given: a symlink or a hard link to
    the same store finds it taken (flock locks the inode). SQLite's own locks are POSIX record
    locks, which flock does not interfere with on Linux.
    """
    real = Path(os.path.realpath(store))
    real.parent.mkdir(parents=True, exist_ok=True)
    handle = real.open("ab")  # creates an empty store (SQLite accepts one), never truncates
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


# One active service per PostgreSQL store, for now: the engine keeps the state of the events
# it touches in memory, so two engines deciding on one store at once could each trust a stale
# copy. A second `tracerules run` on the same database waits as a standby instead of being
# refused: PostgreSQL releases a session's advisory lock the moment its connection ends (a
# kill -9 closes the socket), and the standby then takes over, resuming from the consumer
# group's committed offsets. Lifting this for several active services needs the engine to
# lock event rows itself (issue 15, next step).
SERVICE_LOCK = 0x7472_7275  # "trru"
SESSION_NAME = "tracerules run"  # application_name prefix: `status` finds every service by it


def session_name() -> str:
    """`tracerules run HOST PID`: what PostgreSQL shows of this service (63 bytes at most)."""
    return f"{SESSION_NAME} {socket.gethostname()[:40]} {os.getpid()}"


class DatabaseLock:
    """PostgreSQL's session advisory lock on a dedicated connection, held while it is open."""

    def __init__(self, url: str) -> None:
        from tracerules.runtime.store.reach import open_connection

        self._url = url
        self._conn = open_connection(url, autocommit=True, application_name=session_name())
        self._released = False

    def try_acquire(self) -> bool:
        row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (SERVICE_LOCK,)).fetchone()
        return bool(row and row[0])

    def holder(self) -> str:
        """Who holds it: the active service's client address and backend pid, for the log."""
        row = self._conn.execute(
            "SELECT coalesce(a.client_addr::text, 'local'), a.pid FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
            "AND l.objid = %s AND l.granted AND a.datname = current_database()",
            (SERVICE_LOCK,),
        ).fetchone()
        return "unknown" if row is None else f"{row[0]} (backend pid {row[1]})"

    def watch(self, on_lost: Callable[[str], None], every_s: float = 2.0) -> threading.Thread:
        """Check the lock's connection every `every_s`. If it is gone (a server restart, a
        network cut), so is the lock: take it back once the server answers again, and go on
        (the service's store writes wait for the server meanwhile). If another service took
        it first, it may be active already: `on_lost` is called once, and the service must
        stop rather than run beside it."""

        def check() -> None:
            while not self._released:
                time.sleep(every_s)
                try:
                    if not self._released:
                        self._conn.execute("SELECT 1")
                except Exception as err:  # psycopg's, or a connection closed meanwhile
                    lost = None if self._released else self._retake(str(err), every_s)
                    if lost is not None:
                        on_lost(lost)
                        return

        thread = threading.Thread(target=check, name="store-lock-watch", daemon=True)
        thread.start()
        return thread

    def _retake(self, why: str, every_s: float) -> str | None:
        """Wait for the server and hold the lock again; why not, if another service has it."""
        from tracerules.runtime.store.reach import StoreUnreachable, open_connection

        LOG.warning(
            "store connection lost; waiting for the server to take the service lock back",
            extra={"fields": {"error": " ".join(why.split())}},
        )
        self._conn.close()
        while not self._released:
            try:
                self._conn = open_connection(
                    self._url, autocommit=True, application_name=session_name()
                )
            except StoreUnreachable:
                time.sleep(every_s)
                continue
            if self._released:  # closed meanwhile: the service is stopping
                self._conn.close()
                return None
            if self.try_acquire():
                LOG.info("store's service lock taken back; going on")
                return None
            return f"lost the store's service lock to another service ({self.holder()})"
        return None

    def close(self) -> None:
        self._released = True
        self._conn.close()


def wait_for_database_lock(
    url: str, on_wait: Callable[[str], None], poll_s: float = 0.2
) -> DatabaseLock:
    """Hold the store's service lock, waiting as a standby while another service has it."""
    lock = DatabaseLock(url)
    told = False
    while not lock.try_acquire():
        if not told:
            on_wait(lock.holder())
            told = True
        time.sleep(poll_s)
    return lock
