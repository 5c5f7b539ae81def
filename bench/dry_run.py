"""The whole `tracerules dry-run` command on a month of GCN traffic, against its floor.

Runs the CLI, in a fresh process, on ../shared/corpus/archives/gcn-voevents-2023-11.tar.bz2
with the example rules, reading the tar included. The floor, measured in the same run, is
what any dry run must do at least: read the tar, and parse the notices some trigger
subscribes to with lxml or json, nothing else. Memory: the command's peak RSS on the whole
month and on its first quarter; flat means about the same.

    python bench/dry_run.py [--runs 3] [--archive PATH]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from lxml import etree
from shared_data import ARCHIVE, require, require_archive

from tracerules.rules.compile import load_ruleset
from tracerules.runtime.sources.files import guess_topic

ROOT = Path(__file__).resolve().parents[1]


def floor(archive: Path, subscribed: dict[str, str]) -> tuple[float, int]:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    start, count = time.perf_counter(), 0
    with tarfile.open(archive, "r|*") as tar:
        for member in tar:
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is None:
                continue
            payload = handle.read()
            count += 1
            fmt = subscribed.get(guess_topic(payload) or "")
            try:
                if fmt == "xml":
                    etree.fromstring(payload, parser)
                elif fmt == "json":
                    json.loads(payload)
            except (etree.XMLSyntaxError, ValueError):
                pass
    return time.perf_counter() - start, count


def quarter_archive(archive: Path, folder: Path, count: int) -> Path:
    out = folder / "quarter.tar"
    with tarfile.open(archive, "r|*") as src, tarfile.open(out, "w") as dst:
        for i, member in enumerate(src):
            if i >= count // 4:
                break
            handle = src.extractfile(member) if member.isfile() else None
            if handle is not None:
                dst.addfile(member, handle)
    return out


def run_cli(archive: Path, rules: Path, output: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one `tracerules dry-run` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tracerules.cli",
            "dry-run",
            "--rules",
            str(rules),
            str(archive),
            "--format",
            "json",
            "--output",
            str(output),
            "--quiet",
        ],
        check=True,
    )
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(peak, before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    parser.add_argument("--rules", type=Path, default=ROOT / "examples" / "rules")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    require_archive(args.archive)
    require(args.rules, "the rules folder", "--rules PATH")
    rules = load_ruleset([args.rules])
    subscribed = {t: rules.topics[t].format for t in rules.by_topic}
    ratios, rates = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # The quarter first: the children's peak RSS only ever grows.
        _, total = floor(args.archive, {})
        quarter = quarter_archive(args.archive, folder, total)
        q_elapsed, q_peak = run_cli(quarter, args.rules, folder / "q.json")
        for run in range(args.runs):
            bare, count = floor(args.archive, subscribed)
            elapsed, peak = run_cli(args.archive, args.rules, folder / "out.json")
            ratios.append(elapsed / bare)
            rates.append(count / elapsed)
            print(
                f"run {run + 1}: dry-run {elapsed:.2f} s ({count / elapsed:,.0f} notices/s), "
                f"floor {bare:.2f} s, ratio {elapsed / bare:.2f}"
            )
        events = len(json.loads((folder / "out.json").read_text())["events"])
    print(
        f"median: {statistics.median(rates):,.0f} notices/s, dry-run/floor ratio "
        f"{statistics.median(ratios):.2f} (target <= 2.5); {events} events"
    )
    print(f"peak RSS: whole month {peak:.0f} MB, first quarter {q_peak:.0f} MB ({q_elapsed:.1f} s)")


if __name__ == "__main__":
    main()
