"""`tracerules status`: what the service recorded in the store, as text or JSON."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from tracerules.cli.run import StoreOpt
from tracerules.timetext import utc_text

EXIT_HEALTHY, EXIT_DEGRADED, EXIT_NO_STORE = 0, 1, 2


def status(
    store: StoreOpt = "tracerules.sqlite",
    output: Annotated[str, typer.Option("--format", "-f", help="text or json")] = "text",
    decisions: Annotated[int, typer.Option("--decisions", min=0, help="latest decisions")] = 10,
) -> None:
    """Stream health from the heartbeat, Kafka connection, lag, topics, dead letters, decisions.

    Exit status: 0 healthy (service running, Kafka connected, stream OK, disk not full), 1 degraded,
    2 no store at that path.
    """
    from tracerules.cli.operator import UsageError, connect_store
    from tracerules.runtime.service.health import snapshot
    from tracerules.runtime.store.dialect import display_location, store_exists

    if output not in ("text", "json"):
        raise typer.BadParameter("text or json", param_hint="--format")
    if not store_exists(store):
        typer.echo(
            f"error: no store at {display_location(store)} (see --store / TRACERULES_STORE)",
            err=True,
        )
        raise typer.Exit(EXIT_NO_STORE)
    try:  # read-only: beside a running service, or on a read-only file
        db = connect_store(store, read_only=True)
    except UsageError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(EXIT_NO_STORE) from None
    try:
        data = snapshot(db, decisions=decisions)
    finally:
        db.close()
    healthy = (
        bool(data["service"]["running"] and data["kafka"].get("connected"))
        and data["stream"]["health"] == "OK"
        and data["disk"]["state"] == "OK"
    )
    data["healthy"] = healthy
    typer.echo(json.dumps(data, indent=2, default=str) if output == "json" else render(data))
    raise typer.Exit(EXIT_HEALTHY if healthy else EXIT_DEGRADED)


def _when(value: Any) -> str:
    if value is None:
        return "never"
    return utc_text(value, "%Y-%m-%d %H:%M:%SZ")


def _size(count: Any) -> str:
    value = float(count or 0)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return ""


def render(data: dict[str, Any]) -> str:
    service, stream, kafka = data["service"], data["stream"], data["kafka"]
    lines = [f"store         {data['store']}", f"service       {service['summary']}"]
    if service.get("group"):
        lines.append(f"              group {service['group']}, start {service.get('start')}")
    beat = stream["last_heartbeat"]
    lines.append(
        f"stream        {stream['health']}: {stream['reason']}"
        + (f" (made {_when(beat)}, {stream['heartbeats']} seen)" if beat else "")
    )
    lines.append(
        f"kafka         {kafka['summary']}"
        + (f" [{service['kafka']}]" if service.get("kafka") else "")
    )
    lines += _services(data.get("services", []))
    lines.append(f"disk          {data['disk']['summary']}")
    lines += _rules(data["rules"])
    lines += _lag(data["lag"])
    totals = data["counts"]
    lines.append(f"dead letters  {data['dead_letters']}")
    for name in ("notices", "actions"):
        shown = ", ".join(f"{k} {v}" for k, v in sorted(totals[name].items())) or "none"
        lines.append(f"{name:<13} {shown}")
    lines += ["", *_topics(data["topics"]), "", *_decisions(data["decisions"])]
    return "\n".join(lines)


def _services(services: list[dict[str, Any]]) -> list[str]:
    """Every service on a PostgreSQL store (none listed for SQLite: one service per file)."""
    return [
        f"{'services' if i == 0 else '':<13} {s['role']} pid {s['pid']} on {s['host']}, "
        f"connected {_when(s['since'])}"
        + (f", consuming {' '.join(s['partitions'])}" if s["partitions"] else "")
        + (f", last beat {_when(s['last_heartbeat'])}" if s["last_heartbeat"] else "")
        for i, s in enumerate(services)
    ]


def _rules(rules: dict[str, Any]) -> list[str]:
    if not rules:
        return ["rules         not loaded by a service yet"]
    out = [
        f"rules         {len(rules.get('triggers', []))} triggers from "
        f"{len(rules.get('files', []))} files, loaded {_when(rules.get('loaded_at'))}"
        + (f", git {rules['git_commit']}" if rules.get("git_commit") else "")
    ]
    if rules.get("last_error"):
        out.append(f"              last reload REFUSED at {_when(rules.get('last_error_at'))}:")
        out += [f"                {problem}" for problem in rules["last_error"][:5]]
    return out


def _lag(lag: dict[str, Any]) -> list[str]:
    if lag["total"] is None:
        return ["lag           unknown (no offsets recorded yet)"]
    parts = lag["partitions"]
    out = [f"lag           {lag['total']} over {len(parts)} partitions (at {_when(lag['at'])})"]
    out += [
        f"                {p['topic']}:{p['partition']} position {p['position']} "
        f"committed {p['committed']} high {p['high']} lag {p['lag']}"
        for p in parts
        if p["lag"]
    ]
    return out


def _topics(topics: list[dict[str, Any]]) -> list[str]:
    if not topics:
        return ["no topics seen yet"]
    width = max(len(t["topic"]) for t in topics)
    out = [f"{'topic':<{width}}  {'count':>7}  {'bytes':>9}  {'last seen':<20}  last error"]
    for t in topics:
        error = ""  # an error a later good notice followed is over: not shown
        if t.get("error_current"):
            error = f"{_when(t['last_error_at'])}: {t['last_error']}"
        out.append(
            f"{t['topic']:<{width}}  {t['count']:>7}  {_size(t['bytes']):>9}  "
            f"{_when(t['last_seen']):<20}  {error[:100]}"
        )
    return out


def _decisions(decisions: list[dict[str, Any]]) -> list[str]:
    if not decisions:
        return ["no decisions yet"]
    out = ["latest decisions"]
    for d in decisions:
        acts = ", ".join(f"{a['label']} {a['status']}" for a in d["actions"])
        out.append(
            f"  #{d['id']} {_when(d['at'])} {d['trigger']} {d['event_id'] or '-'} "
            f"{d['conclusion']}"
            + (f" [{acts}]" if acts else "")
            + (f" ({d['error']})" if d["error"] else "")
        )
    return out
