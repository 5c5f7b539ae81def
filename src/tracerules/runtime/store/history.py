"""Reading decisions back from the store: events with their notices, factors and actions.

Dry-run reports, rule tests, diffs, the operator commands and the dashboard all read here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tracerules.dsl.values import Vote
from tracerules.runtime.engine.decisions import ActionRecord, Conclusion, Decision, Source
from tracerules.runtime.sources.order import in_notice_order
from tracerules.runtime.store.evaluation import factors_of
from tracerules.runtime.store.read import DecisionRow, EventQuery
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


def _decision(row: DecisionRow) -> Decision:
    return Decision(
        row.trigger,
        row.event_id,
        Source(row.source),
        row.at,
        row.mode,
        Vote(row.votes),
        Conclusion(row.conclusion),
        factors_of(row.factors),
        row.seq,
        row.notice_id,
        row.error,
        row.id,
        row.rule_file,
        row.rule_revision,
        row.rule_commit,
        row.actor,
    )


def attach(store: Store, decisions: list[Decision]) -> None:
    """Fill in the actions of decisions read from the store."""
    by_id = {d.id: d for d in decisions}
    if not by_id:
        return
    ids = [i for i in by_id if i is not None]
    for r in store.action_rows(ids):
        by_id[r.decision].actions.append(
            ActionRecord(
                r.id,
                r.position,
                r.type,
                r.label,
                r.status,
                r.idempotency_key,
                r.log,
                json.loads(r.files),
            )
        )


def iter_events(store: Store, trigger: str | None = None, page: int = 200) -> Iterator[EventView]:
    """Every event, oldest first, read a page at a time: memory follows the page, not the
    archive."""
    offset = 0
    while batch := events(store, trigger=trigger, limit=page, offset=offset):
        yield from batch
        offset += len(batch)


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
    query = EventQuery(trigger, event_id, since, until, limit, offset)
    views = {
        r.id: EventView(r.id, r.trigger, r.event_id, r.event_time) for r in store.event_rows(query)
    }
    if not views:
        return []
    rows = store.notices_of_events(list(views))
    status = store.notice_statuses([(r.id, r.received) for r in rows])
    for r in rows:
        views[r.event].notices.append(
            NoticeRef(
                r.id, r.topic, r.received, r.created, r.name, r.partition, r.offset, status[r.id]
            )
        )
    rows_of_decisions = store.decision_rows(events=list(views))
    decisions = [_decision(r) for r in rows_of_decisions]
    attach(store, decisions)
    for row, decision in zip(rows_of_decisions, decisions, strict=True):
        assert row.event is not None  # selected by event
        views[row.event].decisions.append(decision)
    return list(views.values())


def counts(store: Store) -> dict[str, Any]:
    """Totals for summaries: notices by status, decisions by conclusion, actions by status."""
    return store.totals()._asdict()


def iter_decisions(store: Store, trigger: str | None = None) -> Iterator[Decision]:
    decisions = [_decision(r) for r in store.decision_rows(trigger=trigger)]
    attach(store, decisions)
    yield from decisions


def sequence(store: Store, notice_id: int) -> int:
    """A notice's place (from 0) among the stored notices of its topic that have no Kafka
    offset, in notice order (`runtime.order`): what `{offset}` is for a replayed notice. It
    depends only on which notices were stored, not on their order or packaging (folder, tar,
    NDJSON)."""
    earlier, ties = store.earlier_replayed(notice_id)
    if not ties:
        return earlier
    own = store.notice(notice_id)
    assert own is not None  # it has peers, so it exists
    ordered = in_notice_order(
        [(own["id"], own["received"], bytes(own["payload"]), own["sha256"])]
        + [(r.id, r.received, bytes(r.payload), r.sha256) for r in ties]
    )
    return earlier + ordered.index(notice_id)
