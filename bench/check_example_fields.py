"""Scratch check: do the example rules' selectors hit real notices?

For every trigger in examples/rules, read the corpus notices of its topics (from
../shared/corpus/MANIFEST.tsv), extract the fields, vote the conditions, and print per field
how often it is present (with an example value and the most common reason when missing) and
per condition the vote counts. It also replays each event's notices in notice-time order
with vote inheritance and expiry, as behaviour.md section 2 describes, to show how the
notices group into events and what each event concludes.

    python bench/check_example_fields.py [--corpus ../shared/corpus] [--rules examples/rules]
                                         [--trigger ID] [--events]

The corpus is not part of the project: this is an exploratory script, not a test.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree
from shared_data import CORPUS, require_corpus

from tracerules.dsl.context import Context
from tracerules.dsl.values import Missing, Vote
from tracerules.rules.compile import CompiledTrigger, load_ruleset

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)


def _time(text: str) -> float | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass
class Notice:
    path: str
    topic: str
    guessed: bool
    time: float | None
    event_key: str
    doc: Any = None
    error: str | None = None


def read_manifest(corpus: Path) -> dict[str, list[Notice]]:
    by_topic: dict[str, list[Notice]] = defaultdict(list)
    with (corpus / "MANIFEST.tsv").open(newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            raw = row["gcn_topic"].strip()
            if not raw or raw.startswith("("):
                continue
            topic = raw.split()[0]
            when = _time(row["notice_time"]) or _time(row["event_time"])
            by_topic[topic].append(
                Notice(row["local_path"], topic, " " in raw, when, row["event_key"])
            )
    return by_topic


def parse(notice: Notice, corpus: Path, fmt: str) -> None:
    if notice.doc is not None or notice.error is not None:
        return
    data = (corpus / notice.path).read_bytes()
    try:
        if fmt == "json":
            notice.doc = json.loads(data)
        else:
            notice.doc = etree.fromstring(data, _PARSER)
    except Exception as err:  # a scratch report, not a service
        notice.error = f"{type(err).__name__}: {str(err)[:80]}"


def show(value: Any, width: int = 38) -> str:
    if isinstance(value, float) and value > 1e8 and math.isfinite(value):
        try:  # probably a time (POSIX seconds)
            text = datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")
            return text.replace("+00:00", "Z")
        except (OverflowError, OSError, ValueError):
            pass
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


@dataclass
class FieldStats:
    present: int = 0
    example: Any = None
    reasons: Counter[str] = field(default_factory=Counter)


def conclude(factors: dict[str, Vote | None]) -> str:
    votes = list(factors.values())
    if any(v is None or v is Vote.FAIL or v is Vote.UNKNOWN for v in votes):
        return "FAIL"
    if any(v is Vote.MAYBE for v in votes):
        return "MAYBE"
    return "PASS"


def check_trigger(  # noqa: PLR0915 - one linear report, easier to read in one piece
    trigger: CompiledTrigger,
    notices: list[Notice],
    corpus: Path,
    show_events: bool,
    ignore: frozenset[str] = frozenset(),
) -> None:
    fields = {f.name: FieldStats() for f in trigger.fields}
    votes: dict[str, Counter[str]] = {c.name: Counter() for c in trigger.conditions}
    unknown_why: dict[str, Counter[str]] = {c.name: Counter() for c in trigger.conditions}
    errors: dict[str, Counter[str]] = {c.name: Counter() for c in trigger.conditions}
    read = failed = guessed = no_id = 0
    # Replay in notice-time order, as the engine would see them.
    ordered = sorted(notices, key=lambda n: (n.time is None, n.time or 0.0, n.path))
    events: dict[Any, dict[str, Any]] = {}
    for notice in ordered:
        parse(notice, corpus, trigger.format)
        if notice.error is not None:
            failed += 1
            continue
        read += 1
        guessed += notice.guessed
        now = notice.time if notice.time is not None else 0.0
        ctx = Context(
            values={"topic": notice.topic, "trigger": trigger.id, "received": now, "created": now},
            now=now,
        )
        try:
            trigger.extract(notice.doc, ctx)
        except Exception as err:  # an engine bug: report it, keep going
            print(f"    !! {trigger.id}: extract crashed on {notice.path}: {err!r}")
            continue
        for f in trigger.fields:
            value = ctx.values.get(f.name)
            stats = fields[f.name]
            if isinstance(value, Missing):
                stats.reasons[value.reason[:70]] += 1
            else:
                stats.present += 1
                if stats.example is None:
                    stats.example = value
        event_id = ctx.values.get(trigger.event_id)
        own_time = ctx.values.get(trigger.event_time)
        if isinstance(event_id, Missing) or event_id is None:
            no_id += 1
            event = None
        else:
            event = events.setdefault(
                event_id, {"n": 0, "time": None, "keys": set(), "factors": {}, "trail": []}
            )
            if not isinstance(own_time, Missing) and own_time is not None:
                event["time"] = own_time if event["time"] is None else min(event["time"], own_time)
            ctx.values["event_id"] = event_id
            ctx.values["event_time"] = (
                event["time"] if event["time"] is not None else Missing("the event has no time yet")
            )
        for cond in trigger.conditions:
            try:
                result = cond.vote(ctx)
            except Exception as err:  # an engine bug: count it, keep going
                result = None
                errors[cond.name][f"{type(err).__name__}: {err}"[:70]] += 1
            if result is None:
                votes[cond.name]["ERROR"] += 1
                vote = Vote.UNKNOWN
            elif isinstance(result, Missing):
                votes[cond.name]["UNKNOWN"] += 1
                unknown_why[cond.name][result.reason[:70]] += 1
                vote = Vote.UNKNOWN
            else:
                votes[cond.name][result.value] += 1
                vote = result
            if event is not None and cond.name not in ignore:
                old = event["factors"].get(cond.name)
                if vote is not Vote.UNKNOWN or old is None:
                    event["factors"][cond.name] = vote
        if event is not None:
            event["n"] += 1
            event["keys"].add(notice.event_key)
            if event["time"] is not None:
                age = now - event["time"]
                expiry = Vote.PASS if age <= trigger.expiry else Vote.MAYBE
            else:
                expiry = Vote.UNKNOWN
            factors = {"(expiry)": expiry, **event["factors"]}
            event["trail"].append(conclude(factors))
            event["factors_now"] = factors
    print(
        f"\n=== {trigger.id}  [{trigger.format}] priority {trigger.priority}, "
        f"{trigger.mode}, expiry {trigger.expiry / 3600:g} h"
    )
    print(f"    topics: {', '.join(trigger.topics)}")
    print(
        f"    notices: {len(notices)} in manifest, {read} read, {failed} unreadable, "
        f"{guessed} with a guessed topic, {no_id} without an event id"
    )
    print("    fields:")
    for name, stats in fields.items():
        frac = stats.present / read if read else 0.0
        common = stats.reasons.most_common(1)
        why = f"  missing: {common[0][0]} (x{common[0][1]})" if common else ""
        example = show(stats.example) if stats.present else "-"
        print(f"      {name:22s} {frac:6.1%}  e.g. {example:40s}{why}")
    print("    conditions (PASS/MAYBE/FAIL/UNKNOWN[/ERROR]):")
    for name, counts in votes.items():
        kinds = ("PASS", "MAYBE", "FAIL", "UNKNOWN") + (("ERROR",) if counts["ERROR"] else ())
        cells = "/".join(str(counts.get(v, 0)) for v in kinds)
        top = unknown_why[name].most_common(1)
        extra = f"  unknown: {top[0][0]} (x{top[0][1]})" if top else ""
        bug = errors[name].most_common(1)
        extra += f"  ERROR: {bug[0][0]} (x{bug[0][1]})" if bug else ""
        print(f"      {name:22s} {cells:16s}{extra}")
    finals = Counter(e["trail"][-1] for e in events.values() if e["trail"])
    print(f"    events: {len(events)}; final conclusions {dict(finals)}")
    merged = [e for e in events.values() if len(e["keys"]) > 1]
    if merged:
        print(
            f"    note: {len(merged)} event(s) merge notices the manifest keys differently:"
            f" {[sorted(e['keys']) for e in merged][:3]}"
        )
    if show_events:
        for event_id, ev in sorted(events.items(), key=lambda kv: str(kv[0])):
            last = " ".join(
                f"{k}={v.value[0] if v else '-'}" for k, v in ev.get("factors_now", {}).items()
            )
            print(f"      {show(event_id, 24):24s} n={ev['n']:<3d} {'>'.join(ev['trail'])}")
            print(f"          last factors: {last}")


def main() -> None:
    here = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--rules", type=Path, default=here / "examples" / "rules")
    parser.add_argument("--trigger", action="append", help="only these trigger ids")
    parser.add_argument("--events", action="store_true", help="list every event")
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="CONDITION",
        help="leave this condition out of the event conclusions (e.g. the "
        "real-event test, to see how mock events would fare)",
    )
    args = parser.parse_args()
    ruleset = load_ruleset([args.rules])
    by_topic = read_manifest(require_corpus(args.corpus, "--corpus PATH"))
    for trigger in ruleset.triggers:
        if args.trigger and trigger.id not in args.trigger:
            continue
        notices = [n for t in trigger.topics for n in by_topic.get(t, [])]
        check_trigger(trigger, notices, args.corpus, args.events, frozenset(args.ignore))


if __name__ == "__main__":
    main()
