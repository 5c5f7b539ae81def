"""Reading decisions back from the store: events with their notices, factors and actions.

Dry-run reports, rule tests, diffs, the operator commands and the dashboard all read here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from tracerules.dsl.values import Vote
from tracerules.runtime.engine.decisions import ActionRecord, Conclusion, Decision, Factor, Source
from tracerules.runtime.sources.order import in_notice_order
from tracerules.runtime.store.store import Store


@dataclass(frozen=True)
class NoticeRef:
    id: int
    topic: str
    received: float
    created: float | None
    name: str | None
    partition: int
    offset: int
    status: str


@dataclass
class EventView:
    pk: int
    trigger: str
    event_id: str
    event_time: float | None
    notices: list[NoticeRef] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)

    @property
    def last(self) -> Decision | None:
        return self.decisions[-1] if self.decisions else None

    @property
    def passed(self) -> bool:
        return any(d.passed for d in self.decisions)


def _decision(row: Any) -> Decision:
    return Decision(
        row["trigger"],
        row["event_id"],
        Source(row["source"]),
        row["at"],
        row["mode"],
        Vote(row["votes"]),
        Conclusion(row["conclusion"]),
        (),
        row["seq"],
        row["notice_id"],
        row["error"],
        row["id"],
        row["rule_file"],
        row["rule_revision"],
        row["rule_commit"],
        row["actor"],
    )


def attach(store: Store, decisions: list[Decision]) -> None:
    """Fill in factors and actions for decisions read from the store."""
    by_id = {d.id: d for d in decisions}
    if not by_id:
        return
    marks = ",".join("?" * len(by_id))
    factors: dict[int, list[Factor]] = {}
    for r in store.query(
        f"SELECT * FROM factors WHERE decision IN ({marks}) ORDER BY decision, position",
        tuple(by_id),
    ):
        factors.setdefault(r["decision"], []).append(
            Factor(r["name"], Vote(r["vote"]), bool(r["inherited"]), r["reason"], r["detail"])
        )
    for decision_id, items in factors.items():
        by_id[decision_id].factors = tuple(items)
    for r in store.query(
        f"SELECT * FROM actions WHERE decision IN ({marks}) ORDER BY id", tuple(by_id)
    ):
        by_id[r["decision"]].actions.append(
            ActionRecord(
                r["id"],
                r["position"],
                r["type"],
                r["label"],
                r["status"],
                r["idempotency_key"],
                r["log"],
                json.loads(r["files"]),
            )
        )


def count_events(store: Store, trigger: str | None = None) -> int:
    if trigger is None:
        return int(store.scalar("SELECT count(*) FROM events") or 0)
    return int(store.scalar("SELECT count(*) FROM events WHERE trigger=?", (trigger,)) or 0)


def iter_events(store: Store, trigger: str | None = None, page: int = 200) -> Iterator[EventView]:
    """Every event, oldest first, read a page at a time: memory follows the page, not the
    archive."""
    offset = 0
    while batch := events(store, trigger=trigger, limit=page, offset=offset):
        yield from batch
        offset += len(batch)


NOTICE_STATUSES: Final = ("new", "evaluated", "unsubscribed", "dead", "duplicate")


def statuses(store: Store, notices: Sequence[tuple[int, float]]) -> dict[int, str]:
    """The status of each (notice id, received) from the status index, never the row.

    `status` is stored after the payload, so reading it from the row walks the payload's
    overflow pages: 2 ms for each 1 MB LVK alert. The index `notices_by_status` (status,
    received) holds it beside the row id, and (status, received, id) finds it in a few seeks.
    """
    if not notices:
        return {}
    ids = sorted({n[0] for n in notices})
    times = sorted({n[1] for n in notices})
    found = {
        int(r[0]): str(r[1])
        for r in store.query(
            "SELECT id, status FROM notices INDEXED BY notices_by_status "
            f"WHERE status IN ({','.join('?' * len(NOTICE_STATUSES))}) "
            f"AND received IN ({','.join('?' * len(times))}) "
            f"AND id IN ({','.join('?' * len(ids))})",
            (*NOTICE_STATUSES, *times, *ids),
        )
    }
    for notice_id in set(ids) - set(found):  # a status this list does not know yet
        found[notice_id] = str(store.scalar("SELECT status FROM notices WHERE id=?", (notice_id,)))
    return found


def events(
    store: Store,
    trigger: str | None = None,
    since: float | None = None,
    until: float | None = None,
    event_id: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[EventView]:
    """Events with everything about them, oldest first."""
    where, params = ["1=1"], []
    for clause, value in (
        ("trigger=?", trigger),
        ("event_id=?", event_id),
        ("coalesce(event_time, first_seen)>=?", since),
        ("coalesce(event_time, first_seen)<=?", until),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    sql = (
        f"SELECT * FROM events WHERE {' AND '.join(where)} "
        "ORDER BY coalesce(event_time, first_seen), id"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
    views = {
        r["id"]: EventView(r["id"], r["trigger"], r["event_id"], r["event_time"])
        for r in store.query(sql, tuple(params))
    }
    if not views:
        return []
    marks = ",".join("?" * len(views))
    rows = store.query(
        "SELECT en.event, n.id, n.topic, n.received, n.created, n.name, n.partition, "
        f'n."offset" FROM event_notices en JOIN notices n ON n.id = en.notice_id '
        f"WHERE en.event IN ({marks}) ORDER BY en.event, en.seq",
        tuple(views),
    )
    status = statuses(store, [(r["id"], r["received"]) for r in rows])
    for r in rows:
        views[r["event"]].notices.append(
            NoticeRef(
                r["id"],
                r["topic"],
                r["received"],
                r["created"],
                r["name"],
                r["partition"],
                r["offset"],
                status[r["id"]],
            )
        )
    decisions = [
        _decision(r)
        for r in store.query(
            f"SELECT * FROM decisions WHERE event IN ({marks}) ORDER BY id", tuple(views)
        )
    ]
    attach(store, decisions)
    event_of = {
        r["id"]: r["event"]
        for r in store.query(
            f"SELECT id, event FROM decisions WHERE event IN ({marks})", tuple(views)
        )
    }
    for decision in decisions:
        views[event_of[decision.id]].decisions.append(decision)
    return list(views.values())


def counts(store: Store) -> dict[str, Any]:
    """Totals for summaries: notices by status, decisions by conclusion, actions by status."""

    def grouped(sql: str) -> dict[str, int]:
        return {r[0]: r[1] for r in store.query(sql)}

    return {
        "notices": grouped("SELECT status, count(*) FROM notices GROUP BY status"),
        "decisions": grouped("SELECT conclusion, count(*) FROM decisions GROUP BY conclusion"),
        "actions": grouped("SELECT status, count(*) FROM actions GROUP BY status"),
        "events": store.scalar("SELECT count(*) FROM events") or 0,
        "dead_letters": store.scalar("SELECT count(*) FROM dead_letters") or 0,
    }


def iter_decisions(store: Store, trigger: str | None = None) -> Iterator[Decision]:
    rows = store.query(
        "SELECT * FROM decisions" + (" WHERE trigger=?" if trigger else "") + " ORDER BY id",
        (trigger,) if trigger else (),
    )
    decisions = [_decision(r) for r in rows]
    attach(store, decisions)
    yield from decisions


def sequence(store: Store, notice_id: int) -> int:
    """A notice's place (from 0) among the stored notices of its topic that have no Kafka
    offset, in notice order (`runtime.order`): what `{offset}` is for a replayed notice. It
    depends only on which notices were stored, not on their order or packaging (folder, tar,
    NDJSON)."""
    peers = (
        "FROM notices n JOIN notices o ON o.topic = n.topic "
        'WHERE n.id = ? AND o."offset" < 0 AND o.duplicate_of IS NULL AND o.id != n.id AND '
    )
    earlier = int(store.scalar(f"SELECT count(*) {peers} o.received < n.received", (notice_id,)))
    ties = store.query(
        f"SELECT o.id, o.received, o.sha256, o.payload {peers} o.received = n.received",
        (notice_id,),
    )
    if not ties:
        return earlier
    own = store.notice(notice_id)
    assert own is not None  # it has peers, so it exists
    ordered = in_notice_order(
        (r["id"], r["received"], bytes(r["payload"]), r["sha256"]) for r in [own, *ties]
    )
    return earlier + ordered.index(notice_id)
