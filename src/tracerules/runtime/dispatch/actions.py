"""Actions: planned inside the decision's transaction, run afterwards (`dispatcher`), each
exactly once.

Planning inserts one row per action with an idempotency key (trigger, event, decision, action):
a redelivered notice finds the key taken and plans nothing. The row is frozen: it holds the
exact configuration the action runs (`CompiledAction.snapshot`), the rule revision it came
from and its typed values (null for a missing one), so that a reload or a restart with edited rules
never makes it run as another action; one that cannot be rebuilt is `superseded`, not run.
Observation requests are arbitrated in the same transaction. Running claims a pending row
atomically, so two workers never run one action; the dispatcher alone retries it
(`retry.policy_of`); logs have secrets redacted before they are stored.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

from tracerules.dsl.values import Missing
from tracerules.errors import exception_tail
from tracerules.products.actions.observation import (
    ObservationPlan,
    ObservatoryMixin,
    PlanningContext,
)
from tracerules.rules.compile import CompiledAction, CompiledTrigger
from tracerules.runtime.dispatch.dispatcher import SUPERSEDED, Dispatcher, RunResult
from tracerules.runtime.engine.arbitration import Outcome, Request, arbitrate, planned_kind
from tracerules.runtime.engine.decisions import ARBITRATION_PREFIX, ActionRecord, Decision, Source
from tracerules.runtime.store.actions import PlannedRow
from tracerules.runtime.store.store import Store

# The dispatcher is imported from here too (the engine plans and runs through this module).
__all__ = ["SUPERSEDED", "Dispatcher", "RunResult", "plan", "typed", "typed_values"]


def typed(value: Any) -> Any:
    """A template value as typed JSON data: a missing value is null, never a stand-in
    string (a real "-" stays "-"); numbers, text and truth values keep their type."""
    if isinstance(value, Missing) or value is None:
        return None
    if isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): typed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [typed(v) for v in value]
    return str(value)


def typed_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Template values as stored with a planned action (see `typed`)."""
    return {key: typed(value) for key, value in values.items()}


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
        tail = exception_tail(err)
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
    store: Store, request: Request, planned: ObservationPlan, action_id: int, now: float
) -> tuple[str, str, ObservationPlan]:
    """Arbitrate a planned observation: (status, log line, the plan as it will run)."""
    if planned.refused is not None:
        return "refused", f"refused before the request: {planned.refused}", planned
    running = store.current_observation(request.observatory, request.test, now)
    outcome, reason = arbitrate(store, request, running, action_id, now)
    status = "clash" if outcome is Outcome.CLASH else "pending"
    if running is not None and outcome is not Outcome.CLASH:
        # The request may depend on what it replaces (an MWA buffer is dumped only once).
        details = {**planned.details, "replaces": planned_kind(running)}
        planned = dataclasses.replace(planned, details=details)
    return status, f"{ARBITRATION_PREFIX}{outcome.value}: {reason}", planned


def _row(
    trigger: CompiledTrigger,
    action: CompiledAction,
    decision: Decision,
    position: int,
    status: str,
    request: str,
) -> PlannedRow:
    """The row of a planned action: frozen with its configuration and rule revision."""
    assert decision.id is not None and decision.event_id is not None
    frozen = action.snapshot
    return PlannedRow(
        decision.id,
        trigger.id,
        decision.event_id,
        idempotency_key(trigger, decision, position),
        position,
        action.kind.name,
        action.config.label(),
        status,
        request,
        decision.notice_id,
        decision.at,
        frozen.digest,
        frozen.text,
        decision.rule_revision or trigger.revision,
        decision.rule_commit,
        trigger.expiry,
    )


def idempotency_key(trigger: CompiledTrigger, decision: Decision, position: int) -> str:
    """`trigger/event/decision/action`. A notice's decision names its actions by position.
    A manual retrigger of the same event state reuses its keys, so running it twice acts
    once; it names each action by its configuration (and which copy of it), so that after
    a reload that inserts, moves or edits actions, an action already run for that state is
    not run again and a new one is not mistaken for it."""
    if decision.source is not Source.MANUAL:
        return f"{trigger.id}/{decision.event_id}/{decision.seq}/{position}"
    digest = trigger.actions[position].snapshot.digest
    copy = sum(a.snapshot.digest == digest for a in trigger.actions[:position])
    slot = digest[:16] + (f".{copy + 1}" if copy else "")
    return f"{trigger.id}/{decision.event_id}/manual-{decision.seq}/{slot}"


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

    Each is stored with the exact configuration it will run and its typed values. An
    observation is planned (pointings, end, refusal) on the decision's clock, from the
    notice's extras (its sky map) and the rule set's sites, then arbitrated.
    """
    assert decision.id is not None and decision.event_id is not None
    stored_values = typed_values(values)
    request = json.dumps(stored_values)
    records = []
    for position, action in enumerate(trigger.actions):
        status = _status(trigger, action, decision, dry_run, products)
        row = _row(trigger, action, decision, position, status, request)
        action_id = store.plan_action(row)
        if action_id is None:
            continue  # this decision already planned it: a redelivery must not act twice
        record = ActionRecord(action_id, position, row.type, row.label, status, row.idempotency_key)
        ctx = PlanningContext(
            values,
            decision.at,
            extra or (lambda name: None),
            action.sites or sites or {},  # the sites the action names, resolved at load
            functools.partial(store.earlier_plans, trigger.id, decision.event_id, action_id),
        )
        # A dry run arbitrates as the service would, so its clashes are the service's clashes.
        arbitrated = status in ("pending", "dry-run")
        obs = _observation(action, trigger, decision.event_id, ctx) if arbitrated else None
        if obs is not None:
            ruled, record.log, planned = _arbitrated(store, *obs, action_id, decision.at)
            record.status = status if ruled == "pending" else ruled  # dry-run stays dry-run
            planned_request = json.dumps({**stored_values, "_plan": planned.as_json()})
            store.set_action_arbitrated(
                action_id, record.status, record.log + "\n", planned_request
            )
        records.append(record)
    return records
