"""Service health in the store: what `tracerules run` records and `tracerules status` reads.

The service and `status` are separate processes, so everything status shows goes through the
store's `service_state` table (one JSON object per key) and `consumer_offsets`. Stream health
comes from the GCN heartbeat: OK under 5 s since the last one, DELAYED under 60 s, FAILURE
beyond, and FAILURE when none was ever seen.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from tracerules import __version__
from tracerules.dsl.convert import to_time
from tracerules.dsl.values import Missing
from tracerules.runtime.service.disk import disk_report
from tracerules.runtime.sources.notices import Notice
from tracerules.runtime.store.dialect import store_errors, store_file
from tracerules.runtime.store.history import counts
from tracerules.runtime.store.lock import SERVICE_LOCK, SESSION_NAME
from tracerules.runtime.store.store import Store
from tracerules.timetext import utc_text

LOG = logging.getLogger("tracerules.service")
REST_S = 5.0  # after a status write failed, the next ones wait this long

HEARTBEAT_TOPIC: Final = "gcn.heartbeat"
OK_BELOW_S: Final = 5.0
DELAYED_BELOW_S: Final = 60.0
SERVICE_STALE_S: Final = 10.0  # a running service records a beat every second
# A heartbeat dated more than this after it was published (or received) claims the future:
# it would hold stream health at OK for ever. Clocks on the GCN side are NTP-synchronised.
AHEAD_LIMIT_S: Final = 60.0
# GCN publishes one heartbeat a second and keeps them for days; one made over a week before
# it was published is not a heartbeat of this stream.
BEHIND_LIMIT_S: Final = 7 * 86400.0


def iso(when: float | None) -> str | None:
    if when is None:
        return None
    stamp = utc_text(when, "%Y-%m-%dT%H:%M:%S")
    if not stamp[:1].isdigit():
        return stamp
    return f"{stamp}.{int(when % 1 * 1000):03d}Z"


@dataclass(frozen=True)
class StreamHealth:
    state: str  # OK, DELAYED, FAILURE
    age: float | None  # seconds since the last heartbeat was made
    reason: str


def stream_health(last_heartbeat: float | None, now: float) -> StreamHealth:
    """OK under 5 s since the last heartbeat, DELAYED under 60 s, FAILURE beyond or never."""
    if last_heartbeat is None:
        return StreamHealth("FAILURE", None, "no heartbeat was ever seen")
    if not math.isfinite(last_heartbeat) or last_heartbeat > now + AHEAD_LIMIT_S:
        return StreamHealth("FAILURE", None, "the last heartbeat's time is not plausible")
    age = max(0.0, now - last_heartbeat)
    if age < OK_BELOW_S:
        return StreamHealth("OK", age, f"last heartbeat {age:.1f} s ago")
    if age < DELAYED_BELOW_S:
        return StreamHealth("DELAYED", age, f"last heartbeat {age:.1f} s ago (over 5 s)")
    return StreamHealth("FAILURE", age, f"last heartbeat {age:.0f} s ago (over 60 s)")


def heartbeat_time(notice: Notice) -> float | Missing:
    """When a heartbeat was made, from its `alert_datetime`; a Missing with the reason when
    the payload has none that is plausible (never an exception: the consumer must go on)."""
    try:
        doc = json.loads(notice.payload)
    except (ValueError, RecursionError):
        return Missing("a heartbeat must be a JSON object (malformed or too deeply nested)")
    if not isinstance(doc, dict):
        return Missing(f"a heartbeat must be a JSON object, not {type(doc).__name__}")
    made = to_time(doc.get("alert_datetime"))
    if isinstance(made, Missing):
        return Missing(f"alert_datetime: {made.reason}")
    return plausible(made, notice)


def plausible(made: float, notice: Notice) -> float | Missing:
    """`made` if it could date a heartbeat published at the notice's time, else the reason."""
    published = notice.time
    if not math.isfinite(made):
        return Missing("alert_datetime is not a finite time")
    if made > published + AHEAD_LIMIT_S:
        return Missing(f"alert_datetime is {made - published:.0f} s after it was published")
    if made < published - BEHIND_LIMIT_S:
        return Missing(f"alert_datetime is {published - made:.0f} s before it was published")
    return made


def member_key(host: str, pid: int) -> str:
    """The service_state key of one service of a team (PostgreSQL): its own partitions and
    beat, which the others' records under the shared keys would overwrite."""
    return f"member {host} {pid}"


class Recorder:
    """Writes the service's state for `status`; used from the consumer thread only."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._values: dict[str, dict[str, Any]] = {}
        self._last_failure = -1e9
        here = member_key(socket.gethostname(), os.getpid())
        self.member = here if store.is_postgresql else None  # SQLite: one service per store
        self._rest_until = -1e9

    def put(self, key: str, **values: Any) -> None:
        """Merge `values` into the JSON object stored under `key`. Best effort: a store that
        refuses the write (a full disk) keeps the values for the next put."""
        try:
            value = self._values.get(key)
            if value is None and self._resting():
                return
            if value is None:  # read from the store once; later puts merge into this copy
                value = self._values[key] = self.store.service_state(key)
            value.update(values)
            if not self._resting():
                self.store.put_service_state(key, value, time.time())
        except store_errors() as err:
            self._not_recorded(err)

    def _resting(self) -> bool:
        """Whether status writes are paused after a failure: a PostgreSQL server away costs
        each write its connect timeout, which the notices waiting behind would pay."""
        return time.monotonic() < self._rest_until

    def _not_recorded(self, err: Exception) -> None:
        """A status write the store refused (a full disk, its server away): said once in 30 s,
        and never a reason to stop consuming."""
        now = time.monotonic()
        self._rest_until = now + REST_S
        if now - self._last_failure > 30:
            self._last_failure = now
            LOG.warning("status not recorded", extra={"fields": {"error": str(err)}})

    def started(self, **info: Any) -> None:
        now = time.time()
        self._values["service"] = {}
        self.put(
            "service",
            state="running",
            pid=os.getpid(),
            host=socket.gethostname(),
            version=__version__,
            started=now,
            beat=now,
            assignment=[],
            **info,
        )

    def beat(self) -> None:
        now = time.time()
        self.put("service", beat=now)
        if self.member is not None:
            self.put(self.member, beat=now)

    def assigned(self, shown: list[str] | None, partitions: list[str]) -> None:
        """The partitions this service holds after Kafka assigned it `shown` (with their
        start offsets; None: some were revoked). None held: it waits in the group."""
        now = time.time()
        if shown is not None:
            self.put("service", assignment=shown, assigned_at=now)
        if self.member is not None:
            self.put(self.member, partitions=partitions, assigned_at=now)

    def stopped(self, reason: str) -> None:
        self.put("service", state="stopped", stopped=time.time(), reason=reason)
        if self.member is not None:  # it left the group: nobody need wait for its session
            self.put(self.member, partitions=[], left=time.time())

    def kafka(self, connected: bool, brokers: Mapping[str, str]) -> None:
        if self._resting():
            return
        try:
            old = self._values.get("kafka") or self.store.service_state("kafka")
        except store_errors() as err:
            self._not_recorded(err)
            return
        since = old.get("since") if old.get("connected") == connected else time.time()
        self.put("kafka", connected=connected, since=since, brokers=dict(brokers))

    def kafka_error(self, message: str) -> None:
        now = time.time()
        info = self._values.get("kafka") or {}
        if info.get("last_error") == message and now - float(info["last_error_at"]) < 1.0:
            return  # librdkafka repeats a connection error at every retry
        if "connected" not in info:  # no statistics yet: the broker was never reached
            self.put("kafka", connected=False, since=now)
        self.put("kafka", last_error=message, last_error_at=now)

    def topic_error(self, topic: str, message: str) -> None:
        if self._resting():
            return
        try:
            self.store.topic_error(topic, message, time.time())
        except store_errors() as err:
            self._not_recorded(err)

    def heartbeat(self, notice: Notice) -> str | None:
        """Count a heartbeat and date the stream by it; the reason when it is not usable."""
        made = heartbeat_time(notice)
        if isinstance(made, Missing):
            return made.reason
        old = self._values.get("heartbeat") or self.store.service_state("heartbeat")
        count = int(old.get("count", 0)) + 1
        with self.store.transaction():
            if made >= _finite(old.get("time")):
                self.put("heartbeat", time=made, received=notice.received, count=count)
            else:  # an old heartbeat, read again: it says nothing about the stream now
                self.put("heartbeat", count=count)
            self.store.count_heartbeat(notice.topic, len(notice.payload), notice.received)
        return None

    def offsets(self, group: str, rows: Sequence[Any]) -> None:
        """The group's lag per partition; none (between assignments) keeps the last known."""
        if not rows or self._resting():
            return
        try:
            self.store.replace_offsets(group, rows, time.time())
        except store_errors() as err:
            self._not_recorded(err)


def _finite(value: Any) -> float:
    """A stored time, or 0 when it is not a finite number (a store older than this check)."""
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return 0.0


def record_products(store: Store, folder: Path) -> None:
    """Where file products go, so that `tracerules serve` finds them without being told."""
    store.put_service_state("products", {"dir": str(folder.resolve())}, time.time())


def recorded_products(store: Store) -> Path | None:
    """The products folder the last service or dry run with this store wrote into."""
    folder = store.service_state("products").get("dir")
    return Path(folder) if isinstance(folder, str) and folder else None


def remembered_group(store: Store) -> str | None:
    """The consumer group this store was last run with: the group id persists with it."""
    group = store.service_state("group").get("id")
    return str(group) if group else None


# -- status ----------------------------------------------------------------------------------


def stream_of(store: Store, now: float) -> StreamHealth:
    """The stream's health from the last heartbeat the service recorded: what `status` and
    the dashboard both show, so that they never disagree (none seen is FAILURE in both)."""
    beat = store.service_state("heartbeat").get("time")
    return stream_health(float(beat) if isinstance(beat, int | float) else None, now)


def service_info(store: Store, now: float) -> dict[str, Any]:
    """The service's recorded state, with `running` (it beat lately) and a one-line summary."""
    info = store.service_state("service")
    beat = info.get("beat")
    running = info.get("state") == "running" and beat is not None and now - beat < SERVICE_STALE_S
    if not info:
        summary = "never ran with this store"
    elif running:
        summary = f"running (pid {info.get('pid')} on {info.get('host')})"
    elif info.get("state") == "running":
        summary = f"not responding: last beat {now - float(beat or 0):.0f} s ago (crashed?)"
    else:
        summary = f"stopped at {iso(info.get('stopped'))}: {info.get('reason', '')}".rstrip(": ")
    return {**info, "running": running, "summary": summary}


def last_death(store: Store, within: float, now: float) -> float | None:
    """The last beat of the latest service of the team that died (its PostgreSQL session is
    gone, and it never recorded leaving the group) less than `within` seconds ago."""
    alive = {member_key(s.host, s.pid) for s in store.service_sessions(SERVICE_LOCK, SESSION_NAME)}
    beats = [
        float(state["beat"])
        for key, state in store.service_states("member ").items()
        if key not in alive and not state.get("left") and isinstance(state.get("beat"), float)
        and now - float(state["beat"]) < within
    ]  # fmt: skip
    return max(beats, default=None)


def services(store: Store) -> list[dict[str, Any]]:
    """Every service on a PostgreSQL store, as PostgreSQL sees their sessions (a dead one's
    ends with it): host, pid, connected since, and as each recorded them, the partitions
    Kafka assigned it and its last beat. `active` consumes partitions; `standby` is in the
    group with none (a one-partition topic has one consumer); `waiting` has not joined yet
    (a relisten holds the store)."""
    found = []
    for s in store.service_sessions(SERVICE_LOCK, SESSION_NAME):
        member = store.service_state(member_key(s.host, s.pid))
        partitions = [str(p) for p in member.get("partitions") or []]
        role = "active" if partitions else "standby" if s.joined else "waiting"
        found.append(
            {
                "host": s.host,
                "pid": s.pid,
                "role": role,
                "since": s.since,
                "partitions": partitions,
                "last_heartbeat": member.get("beat"),
            }
        )
    return sorted(found, key=lambda f: (f["role"] != "active", f["since"]))


def _kafka(store: Store, running: bool) -> dict[str, Any]:
    info = store.service_state("kafka")
    if not info:
        return {"connected": None, "summary": "no connection recorded yet"}
    if not running:  # what the service saw last says nothing about now
        info["connected"] = None
        summary = "unknown: the service is not running"
    elif info.get("connected"):
        summary = f"connected since {iso(info.get('since'))}"
    else:
        summary = f"DISCONNECTED since {iso(info.get('since'))}"
    if info.get("last_error"):
        summary += f"; last error {iso(info.get('last_error_at'))}: {info['last_error']}"
    return {**info, "summary": summary}


def _lag(store: Store, group: str | None) -> dict[str, Any]:
    parts = [r._asdict() for r in store.consumer_offsets(group)]
    known = [p["lag"] for p in parts if p["lag"] is not None]
    return {
        "group": group,
        "total": sum(known) if known else None,
        "at": max((p["at"] for p in parts), default=None),
        "partitions": parts,
    }


def latest_decisions(store: Store, limit: int) -> list[dict[str, Any]]:
    out = [r._asdict() for r in store.latest_decisions(limit)]
    for item in out:
        item["actions"] = [a._asdict() for a in store.decision_actions(item["id"])]
    return out


GOOD_STATUSES: Final = ("evaluated", "unsubscribed")  # read and handled: the topic works


def error_is_current(last_error_at: float | None, last_good: float | None) -> bool:
    """A topic's last error still stands unless a good notice came after it."""
    if last_error_at is None:
        return False
    return last_good is None or last_good < last_error_at


def last_good_notice(store: Store, topic: str, after: float) -> float | None:
    """When the topic's latest well-read notice after `after` arrived, if any."""
    return store.last_notice_with_status(topic, after, GOOD_STATUSES)


def topic_health(store: Store, row: dict[str, Any]) -> dict[str, Any]:
    """A topic_stats row with `error_current`, and `recovered`: when a good notice came after."""
    at = row.get("last_error_at")
    good = None
    if row.get("last_error") and at is not None:
        good = last_good_notice(store, row["topic"], float(at))
    row["error_current"] = bool(row.get("last_error")) and error_is_current(at, good)
    row["recovered"] = good if row.get("last_error") and not row["error_current"] else None
    return row


def snapshot(store: Store, now: float | None = None, decisions: int = 10) -> dict[str, Any]:
    """Everything `tracerules status` shows, as plain data."""
    now = time.time() if now is None else now
    service = service_info(store, now)
    heartbeat = store.service_state("heartbeat")
    health = stream_of(store, now)
    topics = [topic_health(store, asdict(r)) for r in store.topic_stats()]
    totals = counts(store)
    local = store_file(store.path)  # a PostgreSQL server's disk is not ours to report
    folders = [local.resolve().parent] if local else []
    if service.get("out"):
        folders.append(Path(str(service["out"])))
    lag = _lag(store, service.get("group"))
    return {
        "store": store.location,
        "now": now,
        "service": service,
        "services": services(store),
        "stream": {
            "health": health.state,
            "reason": health.reason,
            "age": health.age,
            "last_heartbeat": heartbeat.get("time"),
            "received": heartbeat.get("received"),
            "heartbeats": heartbeat.get("count", 0),
        },
        "kafka": _kafka(store, service["running"]),
        "disk": disk_report(folders, store.service_state("disk"), now),
        "rules": store.service_state("rules"),
        "lag": lag,
        "topics": topics,
        "dead_letters": totals["dead_letters"],
        "counts": totals,
        "decisions": latest_decisions(store, decisions),
    }
