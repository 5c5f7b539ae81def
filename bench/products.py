"""Time the full gw-alert product set on every LVK sample alert with a sky map in the corpus.

Usage: python bench/products.py [CORPUS_DIR] [--nside 64] [--repeat 3]

CORPUS_DIR defaults to ../shared/corpus beside the project. Inputs are the igwn.gwalert JSON
alerts of MANIFEST.tsv whose embedded sky map decodes (the user-guide "display examples"
truncate theirs). Each alert runs the whole product (alert JSON, FITS, meta.yaml, skymap.csv at
--nside, skymap.png) into a scratch folder, --repeat times, with the decoded-map memo cleared
before each run so every run decodes; the table gives medians per part. The first run of the
process is reported apart: it pays the one-off imports (astropy, Matplotlib). Target: at most
1 s per alert.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from shared_data import CORPUS as DEFAULT_CORPUS
from shared_data import require_corpus

from tracerules.products import skymap_functions
from tracerules.products.gw_alert import GwAlertConfig, run
from tracerules.products.registry import ActionRequest
from tracerules.products.skymap import SkyMapError

PARTS = ("decode", "areas", "meta", "csv", "png")
TARGET_S = 1.0


def alerts(corpus: Path) -> list[tuple[str, bytes]]:
    """(manifest path, payload) of every igwn.gwalert alert whose sky map decodes."""
    found = []
    with (corpus / "MANIFEST.tsv").open(newline="") as manifest:
        for row in csv.DictReader(manifest, delimiter="\t"):
            if row["gcn_topic"] != "igwn.gwalert":
                continue
            payload = (corpus / row["local_path"]).read_bytes()
            try:
                if skymap_functions.figures_for_alert(json.loads(payload)) is None:
                    continue  # a retraction
            except SkyMapError:
                continue
            found.append((row["local_path"], payload))
    skymap_functions.forget()
    return found


def run_once(payload: bytes, out: Path, nside: int, index: int) -> tuple[float, dict[str, float]]:
    skymap_functions.forget()
    request = ActionRequest("bench", f"E{index}", index, f"bench/{index}", {}, payload, out)
    started = time.perf_counter()
    outcome = run(GwAlertConfig(type="gw-alert", nside=nside), request)
    elapsed = time.perf_counter() - started
    if not outcome.ok:
        raise RuntimeError("; ".join(outcome.log))
    return elapsed, dict(outcome.detail["seconds"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--nside", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    inputs = alerts(require_corpus(args.corpus, "the CORPUS_DIR argument"))
    if not inputs:
        print(f"no igwn.gwalert alert with a sky map under {args.corpus}", file=sys.stderr)
        return 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="tracerules-bench-") as scratch:
        out = Path(scratch)
        cold, cold_parts = run_once(inputs[0][1], out, args.nside, 0)
        for index, (name, payload) in enumerate(inputs, start=1):
            runs = [run_once(payload, out, args.nside, index) for _ in range(args.repeat)]
            total = statistics.median(t for t, _ in runs)
            parts = {p: statistics.median(d.get(p, 0.0) for _, d in runs) for p in PARTS}
            rows.append((name, len(payload), total, parts))
    print(
        f"gw-alert products at nside {args.nside}: {len(rows)} alerts, median of "
        f"{args.repeat} runs each (ms)\n"
    )
    header = f"{'alert':<58} {'MB':>5} {'total':>7}" + "".join(f"{p:>8}" for p in PARTS)
    print(header)
    print("-" * len(header))
    for name, size, total, parts in rows:
        short = name.split("/", 2)[-1][-58:]
        cells = "".join(f"{parts[p] * 1e3:8.1f}" for p in PARTS)
        print(f"{short:<58} {size / 1e6:5.2f} {total * 1e3:7.1f}{cells}")
    totals = [total for _, _, total, _ in rows]
    medians = "".join(f"{statistics.median(r[3][p] for r in rows) * 1e3:8.1f}" for p in PARTS)
    print("-" * len(header))
    print(f"{'median over alerts':<58} {'':>5} {statistics.median(totals) * 1e3:7.1f}{medians}")
    print(f"{'worst alert':<58} {'':>5} {max(totals) * 1e3:7.1f}")
    first = "".join(f"{cold_parts.get(p, 0.0) * 1e3:8.1f}" for p in PARTS)
    print(f"{'first run in the process (imports)':<58} {'':>5} {cold * 1e3:7.1f}{first}")
    verdict = "meets" if max(totals) <= TARGET_S else "MISSES"
    print(f"\nworst alert {max(totals):.3f} s: {verdict} the {TARGET_S:g} s target")
    return 0 if max(totals) <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
