"""Read-only views of the store for people: notices, one notice, topics, the action log.

The operator commands and the dashboard both read here; they only lay the data out.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from tracerules.rules.compile import RuleSet
from tracerules.runtime.store.browse import NoticeQuery
from tracerules.runtime.store.store import Store

PAYLOAD_CHARS: Final = 200_000  # pretty payloads beyond this are cut (sky maps are ~1 MB)
LONG_STRING: Final = 240  # JSON strings longer than this (base64 sky maps) are shortened


@dataclass
class NoticeFilter:
    topic: str | None = None
    format: str | None = None  # json or xml
    since: float | None = None  # received, POSIX seconds
    until: float | None = None
    event_id: str | None = None
    limit: int = 50
    offset: int = 0
    status: str | None = None  # new, evaluated, unsubscribed, dead (dead letters), duplicate


@dataclass
class NoticePage:
    rows: list[dict[str, Any]]
    total: int
    filter: NoticeFilter
    topics: list[str] = field(default_factory=list)


def topic_format(topic: str, rules: RuleSet | None) -> str:
    """A topic's payload format: from the topic registry, else from its name."""
    spec = rules.topics.get(topic) if rules else None
    if spec is not None:
        return spec.format
    return "xml" if ".voevent." in topic or topic.endswith(".voevent") else "json"


def known_topics(store: Store) -> list[str]:
    return store.topic_names()


def _query(f: NoticeFilter, topics: list[str], rules: RuleSet | None) -> NoticeQuery:
    chosen: list[str] | None = None
    if f.topic:
        chosen = [f.topic]
    if f.format:
        chosen = [t for t in (chosen or topics) if topic_format(t, rules) == f.format]
    return NoticeQuery(
        None if chosen is None else tuple(chosen),
        f.since,
        f.until,
        f.status or None,
        f.event_id or None,
        int(f.limit),
        int(f.offset),
    )


def notices(store: Store, f: NoticeFilter, rules: RuleSet | None = None) -> NoticePage:
    """Notices matching the filter, newest first, with the events they belong to."""
    topics = known_topics(store)
    query = _query(f, topics, rules)
    total = store.count_notices(query)
    out = [r._asdict() for r in store.notice_rows(query)]
    status = store.notice_statuses([(r["id"], r["received"]) for r in out])  # not from the row
    for row in out:
        row["status"] = status[row["id"]]
        row["format"] = topic_format(row["topic"], rules)
    _attach_events(store, out)
    return NoticePage(out, total, f, topics)


def _attach_events(store: Store, rows: list[dict[str, Any]]) -> None:
    by_id = {r["id"]: r for r in rows}
    for r in by_id.values():
        r["events"] = []
    if not by_id:
        return
    for notice_id, trigger, event_id in store.notice_events(list(by_id)):
        by_id[notice_id]["events"].append({"trigger": trigger, "event_id": event_id})


def notice(store: Store, notice_id: int, rules: RuleSet | None = None) -> dict[str, Any] | None:
    """One notice: its envelope, its payload pretty-printed, and what was decided on it."""
    row = store.notice(notice_id)
    if row is None:
        return None
    envelope = {k: row[k] for k in row.keys() if k != "payload"}  # noqa: SIM118 (sqlite3.Row)
    envelope["format"] = topic_format(row["topic"], rules)
    return {
        "envelope": envelope,
        "dead_letter": store.dead_letter_reason(notice_id),
        "decisions": [r._asdict() for r in store.notice_decisions(notice_id)],
        "payload": pretty_payload(bytes(row["payload"])),
    }


def pretty_payload(payload: bytes) -> str:
    """JSON indented (long strings shortened), XML re-indented, anything else as text."""
    from tracerules.runtime.sources.notices import NoticeError, parse_xml

    head = payload.lstrip()[:1]
    text: str
    try:
        if head in (b"{", b"["):
            text = json.dumps(_shorten(json.loads(payload)), indent=2, ensure_ascii=False)
        elif head == b"<":
            from lxml import etree

            doc = parse_xml(payload)  # hardened: no DTD, no entities, no network
            etree.indent(doc, space="  ")
            text = etree.tostring(doc, encoding="unicode", pretty_print=True)
        else:
            text = payload.decode("utf-8", "replace")
    except (NoticeError, ValueError, TypeError, RecursionError):  # shown as it is
        text = payload.decode("utf-8", "replace")
    if len(text) > PAYLOAD_CHARS:
        text = text[:PAYLOAD_CHARS] + f"\n... ({len(text) - PAYLOAD_CHARS:,} more characters)"
    return text


def _shorten(value: Any) -> Any:
    if isinstance(value, str) and len(value) > LONG_STRING:
        return f"{value[:LONG_STRING]}... ({len(value):,} characters)"
    if isinstance(value, dict):
        return {k: _shorten(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten(v) for v in value]
    return value


def topics(store: Store, rules: RuleSet | None) -> list[dict[str, Any]]:
    """Per topic: count, bytes, last seen, dead letters, last error, and who subscribes."""
    dead = store.dead_letters_by_topic()
    subscribed = {t: [x.id for x in ts] for t, ts in (rules.by_topic.items() if rules else ())}
    from tracerules.runtime.service.health import topic_health

    rows = {r.topic: topic_health(store, asdict(r)) for r in store.topic_stats()}
    for topic in subscribed:
        rows.setdefault(topic, {"topic": topic, "count": 0, "bytes": 0, "last_seen": None})
    out = []
    for topic in sorted(rows):
        row = rows[topic]
        row["dead_letters"] = dead.get(topic, 0)
        row["triggers"] = subscribed.get(topic, [])
        row["format"] = topic_format(topic, rules)
        row["status"] = _topic_status(row)
        out.append(row)
    return out


def _topic_status(row: dict[str, Any]) -> str:
    if row.get("error_current"):
        return "error"
    if not row["triggers"]:
        return "stored only" if row["count"] else "unused"
    return "subscribed" if row["count"] else "never seen"


def action_log(store: Store, limit: int = 50, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Actions newest first, with the decision that started them (logs already redacted)."""
    out = [r._asdict() for r in store.action_log(limit, offset)]
    for row in out:
        row["files"] = json.loads(row["files"] or "[]")
    return out, store.count_actions()


def observations(store: Store) -> list[dict[str, Any]]:
    """Observations in progress (or last started) per observatory, live and test."""
    return [r._asdict() for r in store.observations()]


def event_summaries(
    store: Store, trigger: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """Events newest first, one row each: counts, latest conclusion, whether one passed."""
    rows = store.event_summaries(trigger, limit, offset)
    return [r._asdict() for r in rows], store.count_events(trigger)
