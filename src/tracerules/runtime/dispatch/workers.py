"""Action workers: run planned actions off the consumer loop, so a hung API never stalls it.

Isolation. Each destination (an observatory, a web host, a Kafka cluster, a program, the
local disk: `destinations.destination_of` the action as planned) has its own lane of worker
threads, started when an action for it first appears. A lane claims only its own
destination's actions, so an endpoint that answers 500 and then hangs delays nothing but the
actions sent to it.

Resilience. A lane never dies: an error (a store that refuses writes, a full disk) is logged
and recorded, the action it was running goes back to pending, and the lane carries on after
a pause. A failed action is tried again on the retry policy's backoff while its event has
not expired (`runtime.retry`).

Crash recovery. A worker's claim marks the action 'running' and records its owner
(host/pid/process start time) in the same transaction; a command or plugin script records
its own process too. An action still 'running' whose owner process is gone was cut off by a
crash: once the process it started (if any) has ended as well, it goes back to 'pending' and
runs again (its idempotency key is unchanged, and file products are written atomically to
the same path, so a rerun replaces rather than adds). An action claimed without an owner (run
inline by another command) is treated the same once its whole run budget (its retry
policy's `budget`: every attempt timing out, plus the waits; and a grace period) has passed.
After `MAX_CLAIMS` crashes an action is failed instead: its claims (`attempts`) less those that
ended with a recorded outcome sending it back to pending (`finished_runs`, counted by the
store, never read from the log's wording). An action whose owner or child is
alive is never touched, so no action runs twice at once.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from tracerules.errors import exception_tail
from tracerules.products.actions.process import stop_children
from tracerules.rules.compile import RuleSet
from tracerules.runtime.dispatch.dispatcher import Dispatcher
from tracerules.runtime.dispatch.frozen import FROZEN, Frozen
from tracerules.runtime.dispatch.retry import wait_after
from tracerules.runtime.store.dialect import store_disk_full, store_errors
from tracerules.runtime.store.store import Store

MAX_CLAIMS: Final = 3
UNOWNED_GRACE_S: Final = 60.0
RECOVER_EVERY_S: Final = 2.0
IDLE_WAIT_S: Final = 1.0  # a lane looks for ready work at least this often
REQUEUED: Final = "requeued: it was running when"
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


def _kill_group(token: str) -> None:
    """SIGKILL the process group of a child recorded as `token` (it leads its own group)."""
    pid = int(token.split("/")[1])
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def run_budget(store: Store, rules: RuleSet, row: Any) -> float:
    """The longest a live worker can take over a stored action: its retry policy's budget
    (every attempt timing out, plus the waits between them)."""
    frozen = FROZEN.of(store, rules, row)
    return frozen.policy.budget if isinstance(frozen, Frozen) else 0.0


def recover(store: Store, rules: RuleSet, now: float | None = None) -> list[int]:
    """Return actions cut off by a crashed process to 'pending' (or fail them); their ids."""
    now = time.time() if now is None else now
    requeued = []
    for row in store.running_actions():
        owner = row["owner"]
        alive = owner_alive(owner) if owner else None
        if alive:
            continue
        budget = run_budget(store, rules, row) + UNOWNED_GRACE_S
        if row["child"] and owner_alive(row["child"]):
            if now - row["updated_at"] < budget:
                continue  # its first copy still runs: never start a second beside it
            _kill_group(row["child"])  # past its time limit, with nobody to enforce it
        if alive is None and now - row["updated_at"] < budget:
            continue
        why = f"process {owner} died" if alive is False else "no live owner"
        why += _reached(row)
        crashes = int(row["attempts"]) - int(row["finished_runs"])  # this one included
        if crashes >= MAX_CLAIMS:
            status, note = "failed", f"abandoned {crashes} times ({why}): given up"
        else:
            status, note = "pending", f"{REQUEUED} {why}"
        if store.requeue_action(int(row["id"]), status, note + "\n", now, row["updated_at"]):
            requeued.append(int(row["id"]))
    return requeued


def _reached(row: Any) -> str:
    """Whether the cut-off run's request may have reached its receiver (its sending was
    recorded before it went out): then the rerun sends the same Idempotency-Key again."""
    if row["sending_at"] is None:
        return " before anything was sent"
    return (
        f" after a request went out with Idempotency-Key {row['idempotency_key']}; it is sent "
        "again with the same key, which a receiver that honours it drops"
    )


def disk_full(err: BaseException) -> bool:
    """A full disk, from the OS (ENOSPC, EDQUOT) or from SQLite."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return store_disk_full(err)


class ActionWorkers:
    """Lanes of threads, one lane per destination, that claim and run pending actions."""

    def __init__(
        self,
        store_path: str,
        rules: Callable[[], RuleSet],
        out_dir: Path,
        count: int = 2,
        log: logging.Logger | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.store_path, self.rules, self.out_dir = store_path, rules, out_dir
        self.count = max(1, count)  # threads per destination
        self.log = log or logging.getLogger("tracerules.actions")
        self.on_error = on_error or (lambda err: None)
        self.token = owner_token()
        self._cond = threading.Condition()
        self._generation = 0
        self._busy = 0
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._lanes: set[str] = set()
        self._recover_lock = threading.Lock()
        self._last_recover = 0.0

    def start(self) -> None:
        self._spawn("scout", self._scout)

    def wake(self) -> None:
        """New actions were planned: claim them now rather than at the next poll."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def busy(self) -> bool:
        with self._cond:
            return self._busy > 0

    def lanes(self) -> set[str]:
        with self._cond:
            return set(self._lanes)

    def stopping(self) -> bool:
        return self._stopping

    def stop(self, grace: float = 10.0) -> bool:
        """Let running actions finish within `grace` seconds, then stop the processes they
        started (SIGTERM, then SIGKILL); False if some action still did not return."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + grace
        self._join(deadline)
        if any(t.is_alive() for t in self._threads):
            stopped = stop_children()
            if stopped:
                self.log.warning("stopped running commands", extra={"fields": {"n": stopped}})
            self._join(time.monotonic() + 5.0)
        return not any(t.is_alive() for t in self._threads)

    def _join(self, deadline: float) -> None:
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- threads -------------------------------------------------------------------------------

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"tracerules-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _forever(self, step: Callable[[Store], bool]) -> None:
        """Call `step` until stopped; it returns False when it found nothing to do. No error
        ends the thread: it is logged, and the thread goes on after a growing pause."""
        store: Store | None = None
        failures = 0
        while not self._stopping:
            with self._cond:
                generation = self._generation
            try:
                store = store or Store(self.store_path)
                worked = step(store)
                failures = 0
            except Exception as err:
                failures += 1
                self._failed(err, failures)
                worked = False
                time.sleep(min(wait_after(failures), 10.0))
            if not worked:
                self._wait(generation)
        if store is not None:
            store.close()

    def _failed(self, err: Exception, failures: int) -> None:
        fields = {"error": exception_tail(err), "disk_full": disk_full(err)}
        if failures == 1 or failures % 30 == 0:
            self.log.error("action worker error; carrying on", extra={"fields": fields})
        with contextlib.suppress(Exception):  # recording it may fail for the same reason
            self.on_error(err)

    def _wait(self, generation: int) -> None:
        """Sleep until woken (new actions since `generation`), stopped, or a second passed."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._stopping or self._generation != generation, timeout=IDLE_WAIT_S
            )

    def _scout(self) -> None:
        """Recover crashed actions; start a lane for every destination with ready work."""
        self._forever(self._scout_step)

    def _scout_step(self, store: Store) -> bool:
        self._recover(store)
        dispatcher = Dispatcher(store, self.rules, self.out_dir)
        keys = {dispatcher.destination(r) for r in dispatcher.ready()}
        with self._cond:
            new = keys - self._lanes
            self._lanes |= new
        for key in sorted(new):
            for index in range(self.count):
                self._spawn(f"action-{key}-{index}", self._lane_of(key))
        return False

    def _lane_of(self, key: str) -> Callable[[], None]:
        return lambda: self._lane(key)

    def _lane(self, key: str) -> None:
        dispatchers: dict[int, Dispatcher] = {}

        def step(store: Store) -> bool:
            dispatcher = dispatchers.get(id(store))
            if dispatcher is None:
                dispatcher = Dispatcher(
                    store, self.rules, self.out_dir, retry_later=True, stopping=self.stopping
                )
                dispatchers[id(store)] = dispatcher
            row = self._claim(store, dispatcher, key)
            if row is None:
                return False
            self._run(store, dispatcher, row)
            return True

        self._forever(step)

    def _claim(self, store: Store, dispatcher: Dispatcher, key: str) -> Any:
        for ready in dispatcher.ready():
            if dispatcher.destination(ready) != key:
                continue
            row = dispatcher.claim(ready["id"], owner=self.token)  # claim and owner together
            if row is not None:
                return row
        return None

    def _run(self, store: Store, dispatcher: Dispatcher, row: Any) -> None:
        with self._cond:
            self._busy += 1
        started = time.perf_counter()
        try:
            result = dispatcher.run(row)
        except Exception as err:  # e.g. the store refused the outcome: never leave it running
            self._release(store, row, err)
            raise
        finally:
            with self._cond:
                self._busy -= 1
        if result.status != "done" and result.disk_full:
            self.on_error(OSError(errno.ENOSPC, "No space left on device (an action)"))
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

    def _release(self, store: Store, row: Any, err: Exception) -> None:
        """Put an action whose run broke back to pending, trying until the store takes it."""
        note = f"interrupted: {exception_tail(err)}; it runs again\n"
        for attempt in range(1, 1000):
            try:
                now = time.time()
                store.release_action(int(row["id"]), now + wait_after(attempt), note, now)
                return
            except store_errors():
                if self._stopping:
                    return  # a restart's recovery requeues it (this owner is gone then)
                time.sleep(min(wait_after(attempt), 10.0))

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
