"""Observation arbitration per observatory (behaviour.md section 3), inside the store's lock.

An observation in progress can be overridden only by a higher priority (lower number). At
equal priority the new request re-points only when it is further than the trigger's threshold
from the current pointing. Otherwise it is a clash. Test and live observations never clash.
The caller holds a BEGIN IMMEDIATE transaction, so two decisions cannot both start.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from enum import Enum

from tracerules.dsl.builtins import separation


class Outcome(str, Enum):
    START = "start"  # the observatory was free
    OVERRIDE = "override"  # a higher priority took over
    REPOINT = "repoint"  # equal priority, far enough away
    CLASH = "clash"  # refused: recorded, not run


@dataclass(frozen=True)
class Request:
    observatory: str
    test: bool
    priority: int
    ra: float | None
    dec: float | None
    repoint: float  # degrees
    duration: float  # seconds
    trigger: str
    event_id: str


def arbitrate(
    db: sqlite3.Connection, req: Request, action_id: int, now: float
) -> tuple[Outcome, str]:
    """Decide, and if the request wins, record it as the observatory's current observation."""
    current = db.execute(
        "SELECT * FROM observations WHERE observatory=? AND test=? AND until>?",
        (req.observatory, int(req.test), now),
    ).fetchone()
    outcome, reason = _judge(current, req)
    if outcome is not Outcome.CLASH:
        db.execute(
            "INSERT OR REPLACE INTO observations (observatory, test, action, trigger, event_id, "
            "priority, ra, dec, started, until) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                req.observatory,
                int(req.test),
                action_id,
                req.trigger,
                req.event_id,
                req.priority,
                req.ra,
                req.dec,
                now,
                now + req.duration,
            ),
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
    if None in (req.ra, req.dec, current["ra"], current["dec"]):
        return Outcome.CLASH, f"{who} is observing and a position is unknown"
    assert req.ra is not None and req.dec is not None
    distance = separation(current["ra"], current["dec"], req.ra, req.dec)
    if distance > req.repoint:
        return Outcome.REPOINT, (
            f"{distance:.3f} deg from {who}'s pointing, beyond the {req.repoint:.3f} deg threshold"
        )
    return Outcome.CLASH, (
        f"{distance:.3f} deg from {who}'s pointing, within the {req.repoint:.3f} deg threshold"
    )
