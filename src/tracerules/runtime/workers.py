"""Action workers: run planned actions off the consumer loop, so a hung API never stalls it.

Each worker has its own store connection and a `Dispatcher`: it claims the oldest pending
action atomically, runs it with the action's timeout and retries, and records the outcome.

Crash recovery. A worker's claim marks the action 'running' and records its owner
(host/pid/process start time) in the same transaction. An action still 'running' whose owner
process is gone was cut off by a crash: it goes back to 'pending' and runs again (its
idempotency key is unchanged, and file products are written atomically to the same path, so a
rerun replaces rather than adds). An action claimed without an owner (run inline by another
command) is treated the same once its whole run budget (timeout x attempts, plus backoff and
a grace period) has passed. After `MAX_CLAIMS` claims an action is failed instead. An action
whose owner is alive is never touched, so no action runs twice at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from tracerules.rules.compile import RuleSet
from tracerules.runtime.actions import Dispatcher
from tracerules.runtime.store import Store

MAX_CLAIMS: Final = 3
UNOWNED_GRACE_S: Final = 60.0
RECOVER_EVERY_S: Final = 2.0
_HOST: Final = socket.gethostname()


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell reused pids apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def owner_token(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{_HOST}/{pid}/{_start_ticks(pid) or '-'}"


def owner_alive(token: str) -> bool | None:
    """Whether the process behind `token` still runs; None when it cannot be known."""
    host, _, rest = token.partition("/")
    pid_text, _, ticks = rest.partition("/")
    if host != _HOST or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    if ticks != "-":
        return _start_ticks(pid) == ticks
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_budget(rules: RuleSet, trigger_id: str, position: int) -> float:
    """The longest a live worker can take over an action: every attempt plus the backoffs."""
    trigger = rules.trigger(trigger_id)
    if trigger is None or position >= len(trigger.actions):
        return 0.0
    config = trigger.actions[position].config
    backoff = sum(min(2.0**i, 30.0) for i in range(config.retries))
    return config.timeout * (1 + config.retries) + backoff


def recover(store: Store, rules: RuleSet, now: float | None = None) -> list[int]:
    """Return actions cut off by a crashed process to 'pending' (or fail them); their ids."""
    now = time.time() if now is None else now
    requeued = []
    for row in store.query(
        "SELECT id, trigger, position, attempts, owner, updated_at FROM actions "
        "WHERE status='running'"
    ):
        owner = row["owner"]
        alive = owner_alive(owner) if owner else None
        if alive:
            continue
        budget = run_budget(rules, row["trigger"], row["position"]) + UNOWNED_GRACE_S
        if alive is None and now - row["updated_at"] < budget:
            continue
        why = f"process {owner} died" if alive is False else "no live owner"
        if row["attempts"] >= MAX_CLAIMS:
            status, note = "failed", f"abandoned {row['attempts']} times ({why}): given up"
        else:
            status, note = "pending", f"requeued: it was running when {why}"
        with store.transaction() as db:
            changed = db.execute(
                "UPDATE actions SET status=?, owner=NULL, log=log || ?, updated_at=? "
                "WHERE id=? AND status='running' AND updated_at=?",
                (status, note + "\n", now, row["id"], row["updated_at"]),
            ).rowcount
        if changed:
            requeued.append(int(row["id"]))
    return requeued


class ActionWorkers:
    """A few threads that claim and run pending actions until stopped."""

    def __init__(
        self,
        store_path: str,
        rules: Callable[[], RuleSet],
        out_dir: Path,
        count: int = 2,
        log: logging.Logger | None = None,
    ) -> None:
        self.store_path, self.rules, self.out_dir = store_path, rules, out_dir
        self.count = max(1, count)
        self.log = log or logging.getLogger("tracerules.actions")
        self.token = owner_token()
        self._cond = threading.Condition()
        self._generation = 0
        self._busy = 0
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._recover_lock = threading.Lock()
        self._last_recover = 0.0

    def start(self) -> None:
        for index in range(self.count):
            thread = threading.Thread(
                target=self._loop, name=f"tracerules-action-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        """New actions were planned: claim them now rather than at the next poll."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def busy(self) -> bool:
        with self._cond:
            return self._busy > 0

    def stop(self, grace: float = 10.0) -> bool:
        """Let running actions finish within `grace` seconds; False if some did not."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def _loop(self) -> None:
        store = Store(self.store_path)
        dispatcher = Dispatcher(store, self.rules, self.out_dir)
        try:
            while True:
                with self._cond:
                    if self._stopping:
                        return
                    generation = self._generation
                self._recover(store)
                with store.transaction():  # the claim and its owner commit together
                    row = dispatcher.claim()
                    if row is not None:
                        store.db.execute(
                            "UPDATE actions SET owner=? WHERE id=?", (self.token, row["id"])
                        )
                if row is None:
                    self._wait(generation)
                    continue
                self._run(store, dispatcher, row)
        except Exception:  # a broken store: the consumer loop sees it too
            self.log.exception("action worker stopped")
        finally:
            store.close()

    def _wait(self, generation: int) -> None:
        """Sleep until woken (new actions since `generation`), stopped, or a second passed."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._stopping or self._generation != generation, timeout=1.0
            )

    def _run(self, store: Store, dispatcher: Dispatcher, row: Any) -> None:
        with self._cond:
            self._busy += 1
        started = time.perf_counter()
        try:
            result = dispatcher.run(row)
        finally:
            with self._cond:
                self._busy -= 1
        self.log.info(
            "action",
            extra={
                "fields": {
                    "action_id": row["id"],
                    "key": row["idempotency_key"],
                    "trigger": row["trigger"],
                    "event_id": row["event_id"],
                    "type": row["type"],
                    "status": result.status,
                    "attempt": row["attempts"] + 1,
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                    "log": result.log[-500:],
                }
            },
        )

    def _recover(self, store: Store) -> None:
        if time.monotonic() - self._last_recover < RECOVER_EVERY_S:
            return
        if not self._recover_lock.acquire(blocking=False):
            return
        try:
            self._last_recover = time.monotonic()
            requeued = recover(store, self.rules())
            if requeued:
                self.log.warning("actions recovered", extra={"fields": {"ids": requeued}})
        finally:
            self._recover_lock.release()
