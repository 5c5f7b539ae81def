"""Actions: planned inside the decision's transaction, run afterwards, each exactly once.

Planning inserts one row per action with an idempotency key (trigger, event, decision, action):
a redelivered notice finds the key taken and plans nothing. Observation requests are
arbitrated in the same transaction. Running claims a pending row atomically, so two workers
never run one action; logs have secrets redacted before they are stored.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracerules.dsl.values import Missing
from tracerules.products.actions.observation import (
    ObservationPlan,
    ObservatoryMixin,
    PlanningContext,
)
from tracerules.products.actions.registry import ActionOutcome, ActionRequest
from tracerules.rules.compile import CompiledAction, CompiledTrigger, RuleSet
from tracerules.runtime.dispatch.retry import next_try, quick_retries
from tracerules.runtime.engine.arbitration import (
    Outcome,
    Request,
    arbitrate,
    current_observation,
    planned_kind,
)
from tracerules.runtime.engine.decisions import ARBITRATION_PREFIX, ActionRecord, Decision, Source
from tracerules.runtime.secrets import redact, rule_secrets
from tracerules.runtime.store.store import Store


def plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """Template values as JSON-safe data: missing values become '-'."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Missing):
            out[key] = "-"
        elif isinstance(value, str | int | float | bool) or value is None:
            out[key] = value
        else:
            out[key] = str(value)
    return out


def _status(
    trigger: CompiledTrigger,
    action: CompiledAction,
    decision: Decision,
    dry_run: bool,
    products: bool,
) -> str:
    if dry_run or decision.source is Source.DRY_RUN:
        return "pending" if products and action.kind.writes_files else "dry-run"
    return "pending" if trigger.mode == "live" else "pretend"


def _observation(
    action: CompiledAction,
    trigger: CompiledTrigger,
    event_id: str,
    ctx: PlanningContext,
) -> tuple[Request, ObservationPlan] | None:
    config = action.config
    if not isinstance(config, ObservatoryMixin) or not config.observatory:
        return None
    try:
        planned = config.plan_observation(ctx)
    except Exception as err:  # a broken sky map refuses this request, never the decision
        tail = traceback.format_exception_only(type(err), err)[-1].strip()
        planned = ObservationPlan((), config.duration, refused=f"planning failed: {tail}")
    request = Request(
        config.observatory,
        config.is_test(ctx.values),
        trigger.priority,
        planned.pointings,
        config.repoint,
        planned.duration,
        trigger.id,
        event_id,
    )
    return request, planned


def _arbitrated(
    db: Any, request: Request, planned: ObservationPlan, action_id: int, now: float
) -> tuple[str, str, ObservationPlan]:
    """Arbitrate a planned observation: (status, log line, the plan as it will run)."""
    if planned.refused is not None:
        return "refused", f"refused before the request: {planned.refused}", planned
    running = current_observation(db, request.observatory, request.test, now)
    outcome, reason = arbitrate(db, request, action_id, now)
    status = "clash" if outcome is Outcome.CLASH else "pending"
    if running is not None and outcome is not Outcome.CLASH:
        # The request may depend on what it replaces (an MWA buffer is dumped only once).
        details = {**planned.details, "replaces": planned_kind(running)}
        planned = dataclasses.replace(planned, details=details)
    return status, f"{ARBITRATION_PREFIX}{outcome.value}: {reason}", planned


def _earlier_plans(store: Store, trigger: str, event_id: str, before: int) -> list[dict[str, Any]]:
    """Plans of the trigger's earlier observation actions for the event that were not refused
    or refused by arbitration (planned, running or done; in a dry run, as planned), oldest
    first."""
    rows = store.db.execute(
        "SELECT request FROM actions WHERE trigger=? AND event_id=? AND id<? "
        "AND status IN ('pending', 'running', 'done', 'dry-run') ORDER BY id",
        (trigger, event_id, before),
    ).fetchall()
    plans = (json.loads(r["request"] or "{}").get("_plan") for r in rows)
    return [p for p in plans if isinstance(p, dict)]


def plan(
    store: Store,
    trigger: CompiledTrigger,
    decision: Decision,
    values: Mapping[str, Any],
    dry_run: bool,
    products: bool = False,
    extra: Callable[[str], Any] | None = None,
    sites: Mapping[str, Any] | None = None,
) -> list[ActionRecord]:
    """Insert the actions of a PASS decision; the caller holds the transaction.

    An observation is planned (pointings, end, refusal) on the decision's clock, from the
    notice's extras (its sky map) and the rule set's sites, then arbitrated.
    """
    assert decision.id is not None and decision.event_id is not None
    request = json.dumps(plain(values))
    # A manual retrigger of the same event state reuses its key, so running it twice acts once.
    tag = f"manual-{decision.seq}" if decision.source is Source.MANUAL else str(decision.seq)
    records = []
    for position, action in enumerate(trigger.actions):
        key = f"{trigger.id}/{decision.event_id}/{tag}/{position}"
        status = _status(trigger, action, decision, dry_run, products)
        now = decision.at
        cur = store.db.execute(
            "INSERT OR IGNORE INTO actions (decision, trigger, event_id, idempotency_key, "
            "position, type, label, status, request, notice_id, created_at, updated_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                decision.id,
                trigger.id,
                decision.event_id,
                key,
                position,
                action.kind.name,
                action.config.label(),
                status,
                request,
                decision.notice_id,
                now,
                now,
            ),
        )
        if not cur.rowcount:
            continue  # this decision already planned it: a redelivery must not act twice
        action_id = int(cur.lastrowid or 0)
        record = ActionRecord(
            action_id, position, action.kind.name, action.config.label(), status, key
        )
        ctx = PlanningContext(
            values,
            now,
            extra or (lambda name: None),
            action.sites or sites or {},  # the sites the action names, resolved at load
            functools.partial(_earlier_plans, store, trigger.id, decision.event_id, action_id),
        )
        # A dry run arbitrates as the service would, so its clashes are the service's clashes.
        arbitrated = status in ("pending", "dry-run")
        obs = _observation(action, trigger, decision.event_id, ctx) if arbitrated else None
        if obs is not None:
            ruled, record.log, planned = _arbitrated(store.db, *obs, action_id, now)
            record.status = status if ruled == "pending" else ruled  # dry-run stays dry-run
            planned_request = json.dumps({**plain(values), "_plan": planned.as_json()})
            store.db.execute(
                "UPDATE actions SET status=?, log=?, request=? WHERE id=?",
                (record.status, record.log + "\n", planned_request, action_id),
            )
        records.append(record)
    return records


@dataclass
class RunResult:
    action_id: int
    status: str
    log: str


def retryable(outcome: ActionOutcome) -> bool:
    """Whether trying again can help: not after a refusal (a 4xx) or a setup mistake."""
    return bool(outcome.detail.get("retryable", True)) if outcome.detail else True


class Dispatcher:
    """Runs pending actions: claim, run with a timeout and retries, record the outcome.

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

    def secrets(self) -> list[str]:
        """Every action's secrets, not only this one's: its output may show another's."""
        rules = self.rules()
        return rule_secrets(a.config for t in rules.triggers for a in t.actions)

    def ready(self, limit: int = 500) -> list[Any]:
        """Pending actions whose retry time has come, oldest first (id, trigger, position,
        type)."""
        return self.store.query(
            "SELECT id, trigger, position, type FROM actions WHERE status='pending' "
            "AND (retry_at IS NULL OR retry_at <= ?) ORDER BY id LIMIT ?",
            (self.clock(), limit),
        )

    def claim(self, action_id: int | None = None) -> Any:
        """Atomically take one ready pending action (a given one, or the oldest)."""
        with self.store.transaction() as db:
            ready = "status='pending' AND (retry_at IS NULL OR retry_at <= ?)"
            where = f"id=? AND {ready}" if action_id else ready
            params: tuple[Any, ...] = (action_id, self.clock()) if action_id else (self.clock(),)
            row = db.execute(
                f"SELECT * FROM actions WHERE {where} ORDER BY id LIMIT 1", params
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE actions SET status='running', attempts=attempts+1, retry_at=NULL, "
                "child=NULL, updated_at=? WHERE id=?",
                (self.clock(), row["id"]),
            )
            return row

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
        trigger = self.rules().trigger(row["trigger"])
        if trigger is None or row["position"] >= len(trigger.actions):
            return self._finish(row, False, ["the trigger no longer defines this action"], [])
        action = trigger.actions[row["position"]]
        payload_row = self.store.notice(row["notice_id"]) if row["notice_id"] else None
        request = ActionRequest(
            trigger.id,
            row["event_id"],
            row["decision"],
            row["idempotency_key"],
            json.loads(row["request"]),
            bytes(payload_row["payload"]) if payload_row else b"",
            self.out_dir,
            extras={
                "files": self._earlier_files(row),
                "dry_run": self.dry_run,
                "on_child": self._child_recorder(row),
            },
        )
        log: list[str] = []

        def attempt() -> ActionOutcome:
            outcome = self._attempt(action, request, action.config.timeout)
            log.extend(outcome.log)
            return outcome

        def note(number: int, delay: float) -> None:
            log.append(f"attempt {number} failed; retrying in {delay:.0f} s")

        policy = quick_retries(
            1 + action.config.retries,
            lambda o: not o.ok and retryable(o) and not self.stopping(),
            self.sleep,
            on_retry=note,
        )
        outcome: ActionOutcome = policy(attempt)
        expires = self._expires(trigger, row)
        files = outcome.files if outcome.ok else []  # a failed run's files are not its products
        return self._finish(row, outcome.ok, log, files, retryable(outcome), expires)

    def _child_recorder(self, row: Any) -> Callable[[int], None]:
        """Record the process an action starts: a restarted service waits for it to end
        rather than start a second copy beside it."""
        from tracerules.runtime.dispatch.workers import owner_token  # workers imports this module

        def record(pid: int) -> None:
            with self.store.transaction() as db:
                db.execute("UPDATE actions SET child=? WHERE id=?", (owner_token(pid), row["id"]))

        return record

    def _expires(self, trigger: CompiledTrigger, row: Any) -> float | None:
        """When the action's event expires: the event time (else the decision's) + expiry."""
        found = self.store.query(
            "SELECT e.event_time, d.at FROM decisions d LEFT JOIN events e ON e.id = d.event "
            "WHERE d.id=?",
            (row["decision"],),
        )
        if not found:
            return None
        start = found[0]["event_time"] if found[0]["event_time"] is not None else found[0]["at"]
        return None if start is None else float(start) + trigger.expiry

    def _earlier_files(self, row: Any) -> list[str]:
        """Files written by this decision's earlier actions (plugins build on them)."""
        rows = self.store.query(
            "SELECT files FROM actions WHERE decision=? AND position<? AND status='done' "
            "ORDER BY position",
            (row["decision"], row["position"]),
        )
        return [name for r in rows for name in json.loads(r["files"] or "[]")]

    @staticmethod
    def _attempt(action: CompiledAction, request: ActionRequest, timeout: float) -> ActionOutcome:
        box: list[ActionOutcome] = []

        def target() -> None:
            try:
                box.append(action.kind.run(action.config, request))
            except Exception as err:  # one failing action never stops the others
                tail = traceback.format_exception_only(type(err), err)[-1].strip()
                box.append(ActionOutcome(False, [f"failed: {tail}"]))

        worker = threading.Thread(target=target, daemon=True, name=f"action-{action.kind.name}")
        worker.start()
        worker.join(timeout)
        if not box:
            return ActionOutcome(False, [f"timed out after {timeout:g} s"])
        return box[0]

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

    def _finish(
        self,
        row: Any,
        ok: bool,
        log: list[str],
        files: list[str],
        can_retry: bool = False,
        expires: float | None = None,
    ) -> RunResult:
        status, retry_at, note = self._verdict(row, ok, can_retry, expires)
        text = redact("\n".join([*log, *([note] if note else [])]), self.secrets())
        with self.store.transaction() as db:
            db.execute(
                "UPDATE actions SET status=?, log=log || ?, files=?, retry_at=?, "
                "updated_at=? WHERE id=?",
                (status, text + "\n", json.dumps(files), retry_at, self.clock(), row["id"]),
            )
        return RunResult(row["id"], status, text)
