"""Stream and service status for the header of every page, from what the service records.

`tracerules run` keeps its state in the store's `service_state` table. Stream health is
`runtime.service.health.stream_of`, the very function `tracerules status` calls: OK under 5 s
since the last GCN heartbeat, DELAYED under 60 s, FAILURE beyond and when none was ever seen
(a store without that table, opened read-only and so never migrated, has seen none).
"""

from __future__ import annotations

from dataclasses import dataclass

from tracerules.runtime.service.health import service_info, stream_of
from tracerules.runtime.store.store import Store


@dataclass(frozen=True)
class Status:
    stream: str  # OK, DELAYED, FAILURE
    text: str
    running: bool  # the service is running: pages refresh themselves
    service: str


def status(store: Store, now: float) -> Status:
    stream = stream_of(store, now)
    service = service_info(store, now)
    summary = f"service {service['summary']}"
    return Status(stream.state, stream.reason, bool(service["running"]), summary)
