"""Observation arbitration per observatory (behaviour.md section 3), inside the store's lock.

An observation in progress can be overridden only by a higher priority (lower number). At
equal priority the new request re-points only when it is further than the trigger's threshold
from the current pointing. Otherwise it is a clash. Test and live observations never clash.
The caller holds a BEGIN IMMEDIATE transaction, so two decisions cannot both start.

A request may have several pointings (the MWA's four GW sweet spots). Its distance from the
current observation is the largest, over its pointings, of the distance to the nearest current
pointing: a request re-points when at least one of its pointings is new. The current
observation's pointings are those its action planned (`actions.request`, key `_plan`); the
`ra`/`dec` columns keep the first one.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from tracerules.dsl.builtins import separation
from tracerules.runtime.store.actions import ObservationRow


class Outcome(str, Enum):
    START = "start"  # the observatory was free
    OVERRIDE = "override"  # a higher priority took over
    REPOINT = "repoint"  # equal priority, far enough away
    CLASH = "clash"  # refused: recorded, not run


class Observations(Protocol):
    """Where observations are recorded: the store (`runtime.store.actions.ActionRows`)."""

    def start_observation(self, obs: ObservationRow) -> None: ...


@dataclass(frozen=True)
class Request:
    observatory: str
    test: bool
    priority: int
    pointings: tuple[tuple[float, float], ...]  # (ra, dec) degrees; empty when unknown
    repoint: float  # degrees
    duration: float  # seconds
    trigger: str
    event_id: str

    @property
    def first(self) -> tuple[float | None, float | None]:
        return self.pointings[0] if self.pointings else (None, None)


def planned(row: sqlite3.Row) -> dict[str, Any]:
    """What the current observation's action planned (pointings, kind), if it says."""
    try:
        plan = json.loads(row["planned"] or "{}").get("_plan")
    except (ValueError, AttributeError):
        return {}
    return plan if isinstance(plan, dict) else {}


def planned_kind(row: sqlite3.Row) -> str:
    kind = planned(row).get("kind")
    return kind if isinstance(kind, str) else ""


def pointings_of(row: sqlite3.Row) -> tuple[tuple[float, float], ...]:
    given = planned(row).get("pointings")
    if isinstance(given, list) and given:
        return tuple((float(ra), float(dec)) for ra, dec in given)
    if row["ra"] is None or row["dec"] is None:
        return ()
    return ((float(row["ra"]), float(row["dec"])),)


def repoint_distance(
    new: tuple[tuple[float, float], ...], current: tuple[tuple[float, float], ...]
) -> float:
    """Max over the new pointings of the distance (deg) to the nearest current pointing."""
    return max(min(separation(c[0], c[1], n[0], n[1]) for c in current) for n in new)


def arbitrate(
    store: Observations, req: Request, current: sqlite3.Row | None, action_id: int, now: float
) -> tuple[Outcome, str]:
    """Decide against `current` (the observatory's current observation, which the caller has
    read), and if the request wins, record it as the observatory's current observation."""
    outcome, reason = _judge(current, req)
    if outcome is not Outcome.CLASH:
        ra, dec = req.first
        store.start_observation(
            ObservationRow(
                req.observatory,
                req.test,
                action_id,
                req.trigger,
                req.event_id,
                req.priority,
                ra,
                dec,
                now,
                now + req.duration,
            )
        )
    return outcome, reason


def _judge(current: sqlite3.Row | None, req: Request) -> tuple[Outcome, str]:
    kind = "test" if req.test else "live"
    if current is None:
        return Outcome.START, f"{req.observatory} ({kind}) was free"
    who = f"{current['trigger']}/{current['event_id']} (priority {current['priority']})"
    if req.priority < current["priority"]:
        return Outcome.OVERRIDE, f"priority {req.priority} overrides {who}"
    if req.priority > current["priority"]:
        return Outcome.CLASH, f"{who} has higher priority than {req.priority}"
    current_pointings = pointings_of(current)
    if not req.pointings or not current_pointings:
        return Outcome.CLASH, f"{who} is observing and a position is unknown"
    distance = repoint_distance(req.pointings, current_pointings)
    if distance > req.repoint:
        return Outcome.REPOINT, (
            f"{distance:.3f} deg from {who}'s pointing, beyond the {req.repoint:.3f} deg threshold"
        )
    return Outcome.CLASH, (
        f"{distance:.3f} deg from {who}'s pointing, within the {req.repoint:.3f} deg threshold"
    )
