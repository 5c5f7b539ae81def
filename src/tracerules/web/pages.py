"""What each dashboard page shows: plain data for its template, read from the store."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

from tracerules.dsl.convert import to_time
from tracerules.dsl.values import Missing
from tracerules.report import browse, model
from tracerules.rules.compile import RuleSet
from tracerules.runtime.engine.decisions import Factor
from tracerules.runtime.store import history
from tracerules.runtime.store.history import EventView
from tracerules.runtime.store.read import NOTICE_STATUSES
from tracerules.runtime.store.store import Store
from tracerules.web.current import ConditionsMemo, last_decisions

EVENTS_PER_PAGE: Final = 20
NOTICES_PER_PAGE: Final = 50
ACTIONS_PER_PAGE: Final = 50
REPLAY_AT_MOST: Final = 200  # notices per event replayed for current conditions on a page


class BadFilterError(ValueError):
    """A filter the page cannot use; shown to the reader instead of the results."""


def pages(total: int, per_page: int, page: int) -> dict[str, int]:
    last = max(1, math.ceil(total / per_page))
    return {"page": min(max(1, page), last), "last": last, "total": total, "per": per_page}


def overview(store: Store, summary: model.Summary) -> dict[str, Any]:
    recent, _ = browse.event_summaries(store, limit=12)
    actions, _ = browse.action_log(store, limit=8)
    return {"summary": summary, "recent": recent, "actions": actions}


def trigger(
    store: Store,
    rules: RuleSet | None,
    trigger_id: str,
    page: int,
    memo: ConditionsMemo | None = None,
    infos: list[model.TriggerInfo] | None = None,
) -> dict[str, Any] | None:
    """One trigger's page; `infos` are the triggers with their counts, when already known."""
    known = infos if infos is not None else model.triggers(store, rules)
    info = next((t for t in known if t.id == trigger_id), None)
    if info is None:
        return None
    paging = pages(info.stats.events, EVENTS_PER_PAGE, page)
    # Newest first: page 1 is the last slice of history's oldest-first order.
    end = info.stats.events - (paging["page"] - 1) * EVENTS_PER_PAGE
    start = max(0, end - EVENTS_PER_PAGE)
    views = history.events(store, trigger=trigger_id, limit=end - start, offset=start)
    views.reverse()
    return {
        "info": info,
        "rule_text": _rule_text(info.rule_file),
        "commit": rules.git_commit if rules else None,
        "revisions": _revisions(store, trigger_id),
        "events": views,
        "current": _current(store, rules, trigger_id, views, memo or ConditionsMemo(0)),
        "paging": paging,
    }


def _rule_text(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8") if path else None
    except OSError:
        return None


def _revisions(store: Store, trigger_id: str) -> list[dict[str, Any]]:
    return [r._asdict() for r in store.rule_revisions(trigger_id)]


def _current(
    store: Store,
    rules: RuleSet | None,
    trigger_id: str,
    views: list[EventView],
    memo: ConditionsMemo,
) -> dict[str, tuple[Factor, ...] | None]:
    """Current conditions per event id: the notices replayed under the rules of today."""
    if rules is None or rules.trigger(trigger_id) is None:
        return {}
    from tracerules.runtime.engine.engine import Engine

    engine = Engine(rules, store, dry_run=True)
    latest = last_decisions(store, rules, (v.event_id for v in views))

    def replay(event_id: str) -> Callable[[], tuple[Factor, ...] | None]:
        def run() -> tuple[Factor, ...] | None:
            replayed = engine.current_conditions(trigger_id, event_id)
            return replayed[0] if replayed else None

        return run

    out: dict[str, tuple[Factor, ...] | None] = {}
    for view in views:
        if len(view.notices) > REPLAY_AT_MOST:
            out[view.event_id] = None
            continue
        key = memo.key(rules, trigger_id, view.event_id, latest.get(view.event_id, 0))
        out[view.event_id] = memo.get(key, replay(view.event_id))
    return out


def notices(
    store: Store, rules: RuleSet | None, params: dict[str, str], page: int
) -> dict[str, Any]:
    error = None
    try:
        fmt = params.get("format") or None
        if fmt not in (None, "json", "xml"):
            raise BadFilterError("format is json or xml")
        status = params.get("status") or None
        if status not in (None, *NOTICE_STATUSES):
            raise BadFilterError(f"status is one of {', '.join(NOTICE_STATUSES)}")
        since = _time(params.get("since"), "since")
        until = _time(params.get("until"), "until")
    except BadFilterError as err:
        error, fmt, status, since, until = str(err), None, None, None, None
    f = browse.NoticeFilter(
        params.get("topic") or None, fmt, since, until, params.get("event_id") or None
    )
    f.status = status
    f.limit = NOTICES_PER_PAGE
    f.offset = (max(1, page) - 1) * NOTICES_PER_PAGE
    result = browse.notices(store, f, rules)
    return {
        "result": result,
        "params": params,
        "query": urlencode([(k, v) for k, v in sorted(params.items()) if v]),
        "error": error,
        "statuses": NOTICE_STATUSES,
        "paging": pages(result.total, NOTICES_PER_PAGE, page),
    }


def _time(text: str | None, name: str) -> float | None:
    if not text:
        return None
    value = to_time(text)
    if isinstance(value, Missing):
        raise BadFilterError(f"{name}: {text!r} is not an ISO 8601 time (e.g. 2023-11-01T12:00)")
    return float(value)


def notice(store: Store, rules: RuleSet | None, notice_id: int) -> dict[str, Any] | None:
    shown = browse.notice(store, notice_id, rules)
    return {"notice": shown, "id": notice_id} if shown else None


def log(store: Store, page: int) -> dict[str, Any]:
    _, total = browse.action_log(store, limit=0)
    paging = pages(total, ACTIONS_PER_PAGE, page)
    rows, _ = browse.action_log(store, ACTIONS_PER_PAGE, (paging["page"] - 1) * ACTIONS_PER_PAGE)
    return {"actions": rows, "observations": browse.observations(store), "paging": paging}
