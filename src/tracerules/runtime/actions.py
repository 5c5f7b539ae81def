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
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracerules.dsl.templates import ENV_REF
from tracerules.dsl.values import Missing
from tracerules.products.observation import ObservationPlan, ObservatoryMixin, PlanningContext
from tracerules.products.registry import ActionOutcome, ActionRequest
from tracerules.rules.compile import CompiledAction, CompiledTrigger, RuleSet
from tracerules.runtime.arbitration import (
    Outcome,
    Request,
    arbitrate,
    current_observation,
    planned_kind,
)
from tracerules.runtime.decisions import ARBITRATION_PREFIX, ActionRecord, Decision, Source
from tracerules.runtime.store import Store

# Secrets that may appear in any log line, besides those an action refers to.
ALWAYS_SECRET = ("GCN_KAFKA_CLIENT_SECRET",)


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


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def secrets_of(config: Any) -> list[str]:
    """Values of every ${env:NAME} the action refers to, plus the always-secret ones."""
    names = set(ENV_REF.findall(config.model_dump_json())) | set(ALWAYS_SECRET)
    return [os.environ[n] for n in names if os.environ.get(n)]


@dataclass
class RunResult:
    action_id: int
    status: str
    log: str


class Dispatcher:
    """Runs pending actions: claim, run with a timeout and retries, record the outcome."""

    def __init__(
        self,
        store: Store,
        rules: Callable[[], RuleSet],
        out_dir: Path,
        clock: Callable[[], float] = time.time,
        dry_run: bool = False,
    ) -> None:
        self.store, self.rules, self.out_dir, self.clock = store, rules, out_dir, clock
        # In a dry run, actions that talk to services write what they would send instead.
        self.dry_run = dry_run

    def claim(self, action_id: int | None = None) -> Any:
        """Atomically take one pending action (a given one, or the oldest)."""
        with self.store.transaction() as db:
            where = "id=? AND status='pending'" if action_id else "status='pending'"
            params: tuple[Any, ...] = (action_id,) if action_id else ()
            row = db.execute(
                f"SELECT * FROM actions WHERE {where} ORDER BY id LIMIT 1", params
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE actions SET status='running', attempts=attempts+1, updated_at=? WHERE id=?",
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
            extras={"files": self._earlier_files(row), "dry_run": self.dry_run},
        )
        secrets = secrets_of(action.config)
        attempts = 1 + action.config.retries
        log: list[str] = []
        for attempt in range(attempts):
            outcome = self._attempt(action, request, action.config.timeout)
            log += outcome.log
            if outcome.ok:
                return self._finish(row, True, log, outcome.files, secrets)
            if attempt + 1 < attempts:
                delay = min(2.0**attempt, 30.0)
                log.append(f"attempt {attempt + 1} failed; retrying in {delay:.0f} s")
                time.sleep(delay)
        return self._finish(row, False, log, [], secrets)

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

    def _finish(
        self, row: Any, ok: bool, log: list[str], files: list[str], secrets: Iterable[str] = ()
    ) -> RunResult:
        status = "done" if ok else "failed"
        text = redact("\n".join(log), secrets)
        with self.store.transaction() as db:
            db.execute(
                "UPDATE actions SET status=?, log=log || ?, files=?, updated_at=? WHERE id=?",
                (status, text + "\n", json.dumps(files), self.clock(), row["id"]),
            )
        return RunResult(row["id"], status, text)
