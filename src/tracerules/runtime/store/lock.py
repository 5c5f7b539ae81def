"""One service per SQLite store: an exclusive lock on the store file itself. On PostgreSQL,
an advisory lock every service holds shared (a relisten holds it exclusive)."""

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


# The services of a team share a PostgreSQL store: each holds this advisory lock *shared*
# for its life, on a connection named after it, so that `status` lists every service by its
# session (PostgreSQL ends it, and the lock, the moment a process dies: a kill -9 closes the
# socket). They decide at once, each on the partitions Kafka assigned it; the database
# serialises what must not happen twice (runtime/store/evaluation.py). A relisten (`echo`)
# wants it *exclusive*: it is refused while a service runs, and a service waits for it.
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
        self._shared = False

    def try_acquire(self, shared: bool = False) -> bool:
        self._shared = shared  # taken back the same way after a lost connection
        function = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        row = self._conn.execute(f"SELECT {function}(%s)", (SERVICE_LOCK,)).fetchone()
        return bool(row and row[0])

    def holder(self) -> str:
        """Who holds it: a holder's client address and backend pid, for the log."""
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
        (the service's store writes wait for the server meanwhile). If a holder that excludes
        this one took it first (a relisten, for a team's service; any service, for a
        relisten), `on_lost` is called once, and the process must stop rather than run
        beside it."""

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
            if self.try_acquire(self._shared):
                LOG.info("store's service lock taken back; going on")
                return None
            return f"lost the store's service lock to another process ({self.holder()})"
        return None

    def close(self) -> None:
        self._released = True
        self._conn.close()


def wait_for_database_lock(
    url: str, on_wait: Callable[[str], None], poll_s: float = 0.2, *, shared: bool = False
) -> DatabaseLock:
    """Hold the store's service lock (`shared`: beside the other services), waiting while a
    holder excludes this one."""
    lock = DatabaseLock(url)
    told = False
    while not lock.try_acquire(shared):
        if not told:
            on_wait(lock.holder())
            told = True
        time.sleep(poll_s)
    return lock
