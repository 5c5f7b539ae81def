"""The dashboard's page times with a month of real GCN traffic and LVK sky maps in the store.

Fills a store with a dry run of ../shared/corpus/archives/gcn-voevents-2023-11.tar.bz2 (about
30k notices) through the example rules (or, without the archive, with 30,000 notices made
from tests/data/notices), plus --skymap-events LVK superevents of three igwn.gwalert alerts
each (PRELIMINARY, INITIAL, UPDATE), every alert with its own ~1 MB sky map (real maps from
tests/data/skymaps, their FITS OBJECT renamed, so no two alerts share a map). Serves it with
uvicorn on a loopback port and times every page: the first (cold) request, then the median
and the worst of --requests more. Target: a median under 200 ms for every page.

    python bench/dashboard.py [--requests 7] [--archive PATH] [--rules examples/rules]
                              [--skymap-events 40] [--store FILE (kept; reused when it exists)]
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import json
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.dashboard_server.Server

from tests.dashboard_server import Server  # noqa: E402
from tests.sql import sql_value  # noqa: E402
from tracerules.rules.compile import load_ruleset  # noqa: E402
from tracerules.runtime.engine.replay import replay  # noqa: E402
from tracerules.runtime.sources.files import iter_notices  # noqa: E402
from tracerules.runtime.sources.notices import Notice  # noqa: E402
from tracerules.runtime.store.store import Store  # noqa: E402
from tracerules.web.app import create_app  # noqa: E402

ARCHIVE = ROOT.parent / "shared" / "corpus" / "archives" / "gcn-voevents-2023-11.tar.bz2"
SKYMAPS = ROOT / "tests" / "data" / "skymaps"
TARGET_MS = 200.0
SYNTHETIC = 30_000
SKYMAP_EVENTS = 40
STAGES = ("PRELIMINARY", "INITIAL", "UPDATE")


def synthetic() -> Iterator[Notice]:
    """Real notices from tests/data, repeated a minute apart with distinct payload bytes."""
    base = list(iter_notices([ROOT / "tests" / "data" / "notices"]))
    for i in range(SYNTHETIC):
        n = base[i % len(base)]
        shift = 60.0 * (i // len(base))
        yield Notice(
            n.topic,
            n.payload + b" " * (1 + i // len(base)),  # a new payload hash: not a duplicate
            0,
            i,
            None if n.created is None else n.created + shift,
            n.received + shift,
            "archive",
            n.name,
        )


def renamed_map(skymap: str, name: str) -> str:
    """The base64 FITS sky map with its OBJECT keyword set to `name`: another map's bytes."""
    from astropy.io import fits

    with fits.open(io.BytesIO(base64.b64decode(skymap))) as hdus:
        hdus[1].header["OBJECT"] = name
        out = io.BytesIO()
        hdus.writeto(out)
    return base64.b64encode(out.getvalue()).decode()


def skymap_alerts(count: int) -> Iterator[Notice]:
    """`count` superevents in Nov 2023, three alerts each, every alert with its own map.

    Three in four are BNS-like CBC alerts (the MS260605l map, renamed S...: they pass the
    gocart filters and write products), one in four a Burst (the S230528ay map).
    """
    cbc = json.loads((SKYMAPS / "igwn_gwalert_preliminary.json").read_text())
    burst = json.loads((SKYMAPS / "S230528ay-preliminary.json").read_text())
    letters = (
        "".join(p)
        for n in (1, 2)
        for p in itertools.product("abcdefghijklmnopqrstuvwxyz", repeat=n)
    )
    for i, suffix in zip(range(count), letters, strict=False):
        template = burst if i % 4 == 3 else cbc
        superevent = f"S2311{1 + i % 28:02d}{suffix}"
        t0 = 1698796800.0 + i * 64_800.0  # 2023-11-01, then every 18 h
        for k, stage in enumerate(STAGES):
            alert = json.loads(json.dumps(template))
            made = t0 + 60.0 + 1800.0 * k
            alert.update(
                superevent_id=superevent,
                alert_type=stage,
                time_created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(made)),
            )
            alert["event"]["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0))
            alert["event"]["skymap"] = renamed_map(template["event"]["skymap"], f"{superevent}-{k}")
            payload = json.dumps(alert).encode()
            yield Notice("igwn.gwalert", payload, 0, i * 3 + k, made, made, "bench", None)


def fill(path: Path, archive: Path, rules: list[Path], skymap_events: int) -> None:
    if path.exists():
        print(f"reusing {path}")
        return
    notices = iter_notices([archive]) if archive.exists() else synthetic()
    what = archive.name if archive.exists() else f"{SYNTHETIC:,} synthesised notices"
    start = time.perf_counter()
    everything = itertools.chain(notices, skymap_alerts(skymap_events))
    result = replay(load_ruleset(rules), everything, store_path=path)
    result.close()
    what += f" and {skymap_events * len(STAGES)} LVK alerts with sky maps"
    print(f"filled {path} with {what} in {time.perf_counter() - start:.1f} s")


def pages(path: Path) -> list[str]:
    db = Store(path)
    try:
        triggers = sorted(db.event_triggers())
        busiest = sql_value(
            db, "SELECT trigger FROM events GROUP BY trigger ORDER BY count(*) DESC"
        )
        topic = sql_value(db, "SELECT topic FROM notices GROUP BY topic ORDER BY count(*) DESC")
        event = sql_value(db, "SELECT event_id FROM events ORDER BY notices DESC")
        biggest = sql_value(db, "SELECT id FROM notices ORDER BY size DESC")
        day = sql_value(db, "SELECT date(min(received), 'unixepoch', '+14 days') FROM notices")
    finally:
        db.close()
    q = urllib.parse.quote
    return [
        "/",
        "/triggers",
        *(f"/triggers/{q(t)}" for t in triggers),
        f"/triggers/{q(busiest)}?page=3",
        *(f"/triggers/{q(t)}?page=2" for t in triggers if t.startswith("lvk-")),
        "/notices",
        "/notices?format=xml",
        f"/notices?topic={q(topic)}&page=5",
        f"/notices?event_id={q(event)}",
        f"/notices?since={day}&until={day}T23:59:59",
        "/notices?topic=igwn.gwalert",
        "/notices?status=dead",
        f"/notices/{biggest}",
        "/notices/1",
        "/log",
        "/log?page=2",
    ]


def timed(url: str, requests: int) -> list[float]:
    times = []
    for _ in range(requests + 1):
        start = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as response:
            response.read()
            assert response.status == 200, url
        times.append((time.perf_counter() - start) * 1000)
    return times  # the first one is cold: it fills the caches


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=7)
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    parser.add_argument("--rules", type=Path, action="append")
    parser.add_argument("--store", type=Path)
    parser.add_argument("--skymap-events", type=int, default=SKYMAP_EVENTS)
    args = parser.parse_args()
    rules = args.rules or [ROOT / "examples" / "rules"]
    with tempfile.TemporaryDirectory(prefix="tracerules-bench-") as tmp:
        path = args.store or Path(tmp) / "store.sqlite"
        fill(path, args.archive, rules, args.skymap_events)
        db = Store(path)
        totals = db.totals()
        print(f"store: {sum(totals.notices.values()):,} notices, {totals.events:,} events")
        db.close()
        server = Server(create_app(path, rules))
        try:
            medians = time_pages(server.url, pages(path), args.requests)
        finally:
            server.stop()
    compare(medians, sky_triggers(rules))
    slow = sum(m >= TARGET_MS for m in medians.values())
    print(f"target < {TARGET_MS:.0f} ms per page: {'met' if not slow else f'{slow} page(s) over'}")
    return 1 if slow else 0


def time_pages(base: str, paths: list[str], requests: int) -> dict[str, float]:
    """Each page's median; the floor is a page that only reads the cached summary."""
    timed(base + "/triggers", requests)  # warms the server, the summary and the templates
    floor = statistics.median(timed(base + "/triggers", requests)[1:])
    print(f"floor: /triggers (the cached summary only) {floor:.1f} ms median")
    print(f"{'page':58} {'cold ms':>8} {'median ms':>10} {'max ms':>8} {'x floor':>8}")
    medians = {}
    for page in paths:
        cold, *times = timed(base + page, requests)
        medians[page] = median = statistics.median(times)
        flag = "" if median < TARGET_MS else "  << over target"
        print(
            f"{page[:58]:58} {cold:8.1f} {median:10.1f} {max(times):8.1f} "
            f"{median / floor:8.1f}{flag}"
        )
    return medians


def sky_triggers(rules: list[Path]) -> set[str]:
    return {t.id for t in load_ruleset(rules).triggers if "igwn.gwalert" in t.topics}


def compare(medians: dict[str, float], sky: set[str]) -> None:
    """Trigger pages whose events carry sky maps against those of VOEvents only."""
    groups: dict[bool, list[float]] = {True: [], False: []}
    for page, median in medians.items():
        if page.startswith("/triggers/"):
            name = urllib.parse.unquote(page.split("/")[2].split("?")[0])
            groups[name in sky].append(median)
    if groups[True] and groups[False]:
        with_maps, without = (statistics.median(groups[k]) for k in (True, False))
        print(
            f"trigger pages, median of medians: with sky maps {with_maps:.1f} ms, "
            f"VOEvents only {without:.1f} ms (ratio {with_maps / without:.2f})"
        )


if __name__ == "__main__":
    raise SystemExit(main())
