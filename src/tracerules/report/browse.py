"""Read-only views of the store for people: notices, one notice, topics, the action log.

The operator commands and the dashboard both read here; they only lay the data out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from tracerules.rules.compile import RuleSet
from tracerules.runtime.store.history import statuses
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
    return [r[0] for r in store.query("SELECT topic FROM topic_stats ORDER BY topic")]


def _where(f: NoticeFilter, topics: list[str], rules: RuleSet | None) -> tuple[str, list[Any]]:
    clauses: list[str] = ["1=1"]
    params: list[Any] = []
    if f.topic:
        clauses.append("n.topic=?")
        params.append(f.topic)
    if f.format:
        chosen = [t for t in topics if topic_format(t, rules) == f.format]
        clauses.append(f"n.topic IN ({','.join('?' * len(chosen)) or 'NULL'})")
        params += chosen
    if f.since is not None:
        clauses.append("n.received>=?")
        params.append(f.since)
    if f.until is not None:
        clauses.append("n.received<=?")
        params.append(f.until)
    if f.status:
        clauses.append("n.status=?")
        params.append(f.status)
    if f.event_id:
        clauses.append(
            "n.id IN (SELECT en.notice_id FROM event_notices en JOIN events e "
            "ON e.id = en.event WHERE e.event_id=?)"
        )
        params.append(f.event_id)
    return " AND ".join(clauses), params


def notices(store: Store, f: NoticeFilter, rules: RuleSet | None = None) -> NoticePage:
    """Notices matching the filter, newest first, with the events they belong to."""
    topics = known_topics(store)
    where, params = _where(f, topics, rules)
    total = int(store.scalar(f"SELECT count(*) FROM notices n WHERE {where}", tuple(params)))
    rows = store.query(
        'SELECT n.id, n.topic, n.partition, n."offset", n.created, n.received, n.source, '
        "n.name, n.size, d.reason AS dead_reason FROM notices n "
        "LEFT JOIN dead_letters d ON d.notice_id = n.id "
        f"WHERE {where} ORDER BY n.received DESC, n.id DESC LIMIT ? OFFSET ?",
        (*params, int(f.limit), int(f.offset)),
    )
    out = [dict(r) for r in rows]
    status = statuses(store, [(r["id"], r["received"]) for r in out])  # not from the row
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
    marks = ",".join("?" * len(by_id))
    for e in store.query(
        "SELECT en.notice_id, e.trigger, e.event_id FROM event_notices en "
        f"JOIN events e ON e.id = en.event WHERE en.notice_id IN ({marks}) ORDER BY e.trigger",
        tuple(by_id),
    ):
        by_id[e["notice_id"]]["events"].append({"trigger": e[1], "event_id": e[2]})


def notice(store: Store, notice_id: int, rules: RuleSet | None = None) -> dict[str, Any] | None:
    """One notice: its envelope, its payload pretty-printed, and what was decided on it."""
    row = store.notice(notice_id)
    if row is None:
        return None
    envelope = {k: row[k] for k in row.keys() if k != "payload"}  # noqa: SIM118 (sqlite3.Row)
    envelope["format"] = topic_format(row["topic"], rules)
    dead = store.scalar("SELECT reason FROM dead_letters WHERE notice_id=?", (notice_id,))
    decisions = [
        dict(r)
        for r in store.query(
            "SELECT id, trigger, event_id, seq, source, conclusion, votes, error, at "
            "FROM decisions WHERE notice_id=? ORDER BY id",
            (notice_id,),
        )
    ]
    return {
        "envelope": envelope,
        "dead_letter": dead,
        "decisions": decisions,
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
    dead: dict[str, int] = {
        r[0]: r[1]
        for r in store.query(
            "SELECT n.topic, count(*) FROM dead_letters d JOIN notices n ON n.id = d.notice_id "
            "GROUP BY n.topic"
        )
    }
    subscribed = {t: [x.id for x in ts] for t, ts in (rules.by_topic.items() if rules else ())}
    from tracerules.runtime.service.health import topic_health

    stats = store.query("SELECT * FROM topic_stats")
    rows = {r["topic"]: topic_health(store, dict(r)) for r in stats}
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
    total = int(store.scalar("SELECT count(*) FROM actions") or 0)
    rows = store.query(
        "SELECT a.id, a.trigger, a.event_id, a.type, a.label, a.status, a.attempts, a.log, "
        "a.files, a.idempotency_key, a.created_at, a.updated_at, d.source, d.actor, "
        "d.conclusion FROM actions a JOIN decisions d ON d.id = a.decision "
        "ORDER BY a.id DESC LIMIT ? OFFSET ?",
        (int(limit), int(offset)),
    )
    out = [dict(r) for r in rows]
    for row in out:
        row["files"] = json.loads(row["files"] or "[]")
    return out, total


def observations(store: Store) -> list[dict[str, Any]]:
    """Observations in progress (or last started) per observatory, live and test."""
    return [
        dict(r)
        for r in store.query(
            "SELECT o.*, a.status FROM observations o LEFT JOIN actions a ON a.id = o.action "
            "ORDER BY o.observatory, o.test"
        )
    ]


def event_summaries(
    store: Store, trigger: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """Events newest first, one row each: counts, latest conclusion, whether one passed."""
    where, params = ("WHERE e.trigger=?", (trigger,)) if trigger else ("", ())
    total = int(store.scalar(f"SELECT count(*) FROM events e {where}", params) or 0)
    rows = store.query(
        "SELECT e.id, e.trigger, e.event_id, e.event_time, e.first_seen, e.last_seen, e.notices, "
        "(SELECT count(*) FROM decisions d WHERE d.event = e.id) AS decisions, "
        "(SELECT count(*) FROM decisions d WHERE d.event = e.id AND d.conclusion = 'PASS') "
        "AS passes, "
        "(SELECT d.conclusion FROM decisions d WHERE d.event = e.id ORDER BY d.id DESC LIMIT 1) "
        "AS latest, "
        "(SELECT count(*) FROM actions a JOIN decisions d ON d.id = a.decision "
        "WHERE d.event = e.id) AS actions "
        f"FROM events e {where} ORDER BY coalesce(e.event_time, e.first_seen) DESC, e.id DESC "
        "LIMIT ? OFFSET ?",
        (*params, int(limit), int(offset)),
    )
    return [dict(r) for r in rows], total
