"""Stream and service status for the header of every page, from what the service records.

`tracerules run` keeps its state in the store's `service_state` table (one JSON object per
key: `heartbeat`, `service`). Stream health follows behaviour.md: OK under 5 s since the last
GCN heartbeat, DELAYED under 60 s, FAILURE beyond. A store without that table, or without a
heartbeat yet, shows "no heartbeat seen".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from tracerules.web.access import ReadOnlyStore

OK_BELOW_S: Final = 5.0
DELAYED_BELOW_S: Final = 60.0
SERVICE_STALE_S: Final = 10.0  # the service records a beat every second while it runs


@dataclass(frozen=True)
class Status:
    stream: str  # OK, DELAYED, FAILURE, NONE
    text: str
    running: bool  # the service is running: pages refresh themselves
    service: str


def _state(store: ReadOnlyStore, key: str) -> dict[str, Any]:
    raw = store.scalar("SELECT value FROM service_state WHERE key=?", (key,))
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def stream_state(last: float | None, now: float) -> tuple[str, str]:
    if last is None:
        return "NONE", "no heartbeat seen"
    age = max(0.0, now - last)
    if age < OK_BELOW_S:
        return "OK", f"heartbeat {age:.1f} s ago"
    if age < DELAYED_BELOW_S:
        return "DELAYED", f"heartbeat {age:.0f} s ago"
    return "FAILURE", f"no heartbeat for {_ago(age)}"


def _ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def status(store: ReadOnlyStore, now: float) -> Status:
    if not store.has_table("service_state"):
        return Status("NONE", "no heartbeat seen", False, "no service has run with this store")
    beat = _state(store, "heartbeat").get("time")
    stream, text = stream_state(float(beat) if isinstance(beat, int | float) else None, now)
    service = _state(store, "service")
    last = service.get("beat")
    running = (
        service.get("state") == "running"
        and isinstance(last, int | float)
        and now - last < SERVICE_STALE_S
    )
    if running:
        summary = f"service running (pid {service.get('pid')} on {service.get('host')})"
    elif service:
        summary = f"service {service.get('state', 'unknown')}, not running"
    else:
        summary = "no service has run with this store"
    return Status(stream, text, running, summary)
