"""Running planned actions: claim one, rebuild the action it was planned as, run it under the
one retry policy, record the outcome once.

An action is rebuilt from the configuration stored when it was planned (`frozen`), never
looked up again in the rules loaded now; one that cannot be rebuilt is `superseded`: reported,
not run. The dispatcher alone retries (`retry.policy_of`): an action type makes one attempt
per call, and an attempt still running at its time limit is abandoned, its late result
ignored. Logs have secrets redacted before they are stored.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tracerules.errors import exception_tail
from tracerules.products.actions.io import out_of_space
from tracerules.products.actions.registry import ActionConfig, ActionOutcome, ActionRequest
from tracerules.rules.compile import RuleSet
from tracerules.runtime.dispatch.destinations import FILES
from tracerules.runtime.dispatch.frozen import FROZEN, Frozen, Superseded
from tracerules.runtime.dispatch.retry import next_try, quick_retries
from tracerules.runtime.secrets import redact, rule_secrets
from tracerules.runtime.store.store import Store

LOG = logging.getLogger("tracerules.actions")
# The status of an action that cannot run as it was planned (its configuration cannot be
# rebuilt): reported, never run, never retried.
SUPERSEDED: Final = "superseded"
TAKEN_BACK: Final = "not sent: crash recovery took the action back from this run"


@dataclass
class RunResult:
    action_id: int
    status: str
    log: str
    disk_full: bool = False  # an attempt met a full disk (the action said so, not its log)


def retryable(outcome: ActionOutcome) -> bool:
    """Whether trying again can help: not after a refusal (a 4xx) or a setup mistake."""
    return bool(outcome.detail.get("retryable", True)) if outcome.detail else True


def attempt_once(frozen: Frozen, request: ActionRequest, timeout: float) -> ActionOutcome:
    """One attempt, given `timeout` seconds. An attempt still running then is abandoned: its
    result, whenever it comes, is dropped, so a run records one outcome (the action types
    bound their own work by the same limit: a request's timeout, a child process killed)."""
    box: list[ActionOutcome] = []
    lock = threading.Lock()
    abandoned = False

    def target() -> None:
        try:
            outcome = frozen.kind.run(frozen.config, request)
        except Exception as err:  # one failing action never stops the others
            tail = exception_tail(err)
            outcome = ActionOutcome(False, [f"failed: {tail}"], disk_full=out_of_space(err))
        with lock:
            if not abandoned:
                box.append(outcome)

    worker = threading.Thread(target=target, daemon=True, name=f"action-{frozen.kind.name}")
    worker.start()
    worker.join(timeout)
    with lock:
        abandoned = True
        if box:
            return box[0]
    return ActionOutcome(False, [f"timed out after {timeout:g} s; a late result is ignored"])


class Dispatcher:
    """Runs pending actions: claim, rebuild the action it was planned as, run it under the
    retry policy, record the outcome once.

    With `retry_later` (the service's workers), an action that still fails after its quick
    retries goes back to pending with a `retry_at` on the retry policy's backoff, as long as
    its event has not expired; a run cut short by shutdown (`stopping`) goes back at once.
    """

    def __init__(
        self,
        store: Store,
        rules: Callable[[], RuleSet],
        out_dir: Path,
        clock: Callable[[], float] = time.time,
        dry_run: bool = False,
        *,
        retry_later: bool = False,
        stopping: Callable[[], bool] = lambda: False,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.store, self.rules, self.out_dir, self.clock = store, rules, out_dir, clock
        # In a dry run, actions that talk to services write what they would send instead.
        self.dry_run = dry_run
        self.retry_later, self.stopping, self.sleep = retry_later, stopping, sleep

    def secrets(self, *also: ActionConfig) -> list[str]:
        """Every action's secrets, not only this one's: its output may show another's."""
        rules = self.rules()
        return rule_secrets([*(a.config for t in rules.triggers for a in t.actions), *also])

    def ready(self, limit: int = 500) -> list[Any]:
        """Pending actions whose retry time has come, oldest first."""
        return self.store.ready_actions(self.clock(), limit)

    def frozen(self, row: Any) -> Frozen | Superseded:
        """The action a stored row was planned as."""
        return FROZEN.of(self.store, self.rules(), row)

    def destination(self, row: Any) -> str:
        """Where a stored action goes; a superseded one goes with files (it ends at once)."""
        frozen = self.frozen(row)
        return frozen.destination if isinstance(frozen, Frozen) else FILES

    def claim(self, action_id: int | None = None, owner: str | None = None) -> Any:
        """Atomically take one ready pending action (a given one, or the oldest)."""
        return self.store.claim_action(self.clock(), action_id, owner)

    def run_pending(self, ids: Iterable[int] | None = None) -> list[RunResult]:
        results = []
        targets: Iterable[int | None] = ids if ids is not None else iter(lambda: None, 0)
        for action_id in targets:
            row = self.claim(action_id)
            if row is None:
                if action_id is None:
                    break
                continue
            results.append(self.run(row))
        return results

    def run(self, row: Any) -> RunResult:
        frozen = self.frozen(row)
        if isinstance(frozen, Superseded):
            return self._supersede(row, frozen)
        request = self._request(row)
        log: list[str] = self._resent(row)
        tries: list[int] = []
        disk_full = False

        def attempt() -> ActionOutcome:
            nonlocal disk_full
            tries.append(len(tries) + 1)
            if not self._sending(row, frozen, len(tries)):
                return ActionOutcome(False, [TAKEN_BACK], detail={"retryable": False})
            outcome = attempt_once(frozen, request, frozen.config.timeout)
            log.extend(outcome.log)
            disk_full = disk_full or outcome.disk_full
            return outcome

        def note(number: int, delay: float) -> None:
            log.append(f"attempt {number} failed; retrying in {delay:g} s")

        policy = frozen.policy
        retrying = quick_retries(
            policy.tries,
            lambda o: not o.ok and retryable(o) and not self.stopping(),
            self.sleep,
            first=policy.first,
            on_retry=note,
        )
        outcome: ActionOutcome = retrying(attempt)
        files = outcome.files if outcome.ok else []  # a failed run's files are not its products
        expires = self._expires(row, frozen)
        result = self._finish(row, outcome.ok, log, files, retryable(outcome), expires, frozen)
        result.disk_full = disk_full
        return result

    def _sending(self, row: Any, frozen: Frozen, number: int) -> bool:
        """Record, durably and before it goes out, that an attempt may reach its receiver
        (not for file products, nor in a dry run, where nothing leaves the machine). False
        when the action is no longer this run's: recovery took it back, so nothing is sent."""
        if self.dry_run or frozen.destination == FILES:
            return True
        note = f"sending try {number} with Idempotency-Key {row['idempotency_key']}\n"
        return self.store.record_sending(row["id"], note, self.clock())

    @staticmethod
    def _resent(row: Any) -> list[str]:
        """A run after one that may have reached the receiver (a crash or a failure after
        the request went out) sends the same Idempotency-Key again: say so in its log."""
        if row["sending_at"] is None:
            return []
        return [
            f"resent with the same Idempotency-Key {row['idempotency_key']}: an earlier "
            "attempt may have reached the receiver, which drops a key it has seen"
        ]

    def _request(self, row: Any) -> ActionRequest:
        payload_row = self.store.notice(row["notice_id"]) if row["notice_id"] else None
        return ActionRequest(
            row["trigger"],
            row["event_id"],
            row["decision"],
            row["idempotency_key"],
            json.loads(row["request"]),
            bytes(payload_row["payload"]) if payload_row else b"",
            self.out_dir,
            extras={
                "files": self.store.earlier_files(row["decision"], row["position"]),
                "dry_run": self.dry_run,
                "on_child": self._child_recorder(row),
            },
        )

    def _child_recorder(self, row: Any) -> Callable[[int], None]:
        """Record the process an action starts: a restarted service waits for it to end
        rather than start a second copy beside it."""
        from tracerules.runtime.dispatch.workers import owner_token  # workers imports this module

        return lambda pid: self.store.record_action_child(row["id"], owner_token(pid))

    def _expires(self, row: Any, frozen: Frozen) -> float | None:
        """When the action's event expires: the event time (else the decision's) plus its
        trigger's expiry as planned."""
        expiry = row["expiry"]
        if expiry is None:  # planned before actions were frozen: its trigger, if still there
            trigger = self.rules().trigger(row["trigger"])
            expiry = trigger.expiry if trigger is not None else None
        started = self.store.decision_start(row["decision"])
        if started is None or started[0] is None or expiry is None:
            return None
        return started[0] + float(expiry)

    def _verdict(
        self, row: Any, ok: bool, can_retry: bool, expires: float | None
    ) -> tuple[str, float | None, str | None]:
        """(status, retry_at, a note for the log) after a run."""
        if ok:
            return "done", None, None
        if self.stopping() and self.retry_later:
            return "pending", None, "interrupted by shutdown; it runs again at the next start"
        if not (self.retry_later and can_retry):
            return "failed", None, None
        at = next_try(int(row["attempts"]) + 1, self.clock(), expires)  # row: before the claim
        if at is None:
            return "failed", None, "failed for good: its event expires before another try"
        return "pending", at, f"failed; tried again in {at - self.clock():.0f} s"

    def _supersede(self, row: Any, why: Superseded) -> RunResult:
        revision = row["rule_revision"] or "unknown"
        text = f"superseded: {why.reason} (planned under rule revision {revision}); not run"
        LOG.warning(
            "action superseded",
            extra={"fields": {"action_id": row["id"], "key": row["idempotency_key"], "why": text}},
        )
        return self._record(row, SUPERSEDED, text, [], None)

    def _finish(
        self,
        row: Any,
        ok: bool,
        log: list[str],
        files: list[str],
        can_retry: bool,
        expires: float | None,
        frozen: Frozen,
    ) -> RunResult:
        status, retry_at, note = self._verdict(row, ok, can_retry, expires)
        text = redact("\n".join([*log, *([note] if note else [])]), self.secrets(frozen.config))
        return self._record(row, status, text, files, retry_at)

    def _record(
        self, row: Any, status: str, text: str, files: list[str], retry_at: float | None
    ) -> RunResult:
        """The outcome, recorded once: a row no longer running (taken back by crash
        recovery) keeps what it has."""
        recorded = self.store.finish_action(
            row["id"], status, text + "\n", files, retry_at, self.clock()
        )
        if not recorded:
            LOG.warning(
                "outcome not recorded: the action is no longer running",
                extra={"fields": {"action_id": row["id"], "status": status}},
            )
        return RunResult(row["id"], status, text)
