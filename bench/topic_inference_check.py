"""Check topic inference against the shared corpus and count the November 2023 archive by topic.

Usage::

    python bench/topic_inference_check.py [--corpus PATH] [--show N]

Part 1 runs :func:`tracerules.runtime.sources.topics.infer_topic` on every XML and JSON file of the
corpus ``MANIFEST.tsv`` and compares the result with the manifest's ``gcn_topic``. A manifest
topic counts as *known* when it is a bare topic name; values with a note (guesses, "planned",
"n/a", ...) are reported separately. Part 2 streams
``archives/gcn-voevents-2023-11.tar.bz2`` (never unpacked to disk) and prints the number of
notices per inferred topic, plus the packet type numbers that are not in the GCN table.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

from lxml import etree
from shared_data import CORPUS, require_archive, require_corpus

from tracerules.runtime.sources.topics import (
    GCN_PACKET_TYPES,
    infer_topic,
    packet_type_of,
    topic_for_voevent,
)

DEFAULT_CORPUS = CORPUS
ARCHIVE = "archives/gcn-voevents-2023-11.tar.bz2"
BARE_TOPIC = re.compile(r"^(gcn|igwn)\.[A-Za-z0-9_.]+$")


def manifest_check(corpus: Path, show: int) -> None:
    with (corpus / "MANIFEST.tsv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["format"] in ("xml", "json")]
    agree: Counter[str] = Counter()
    disagree: list[tuple[str, str, str | None]] = []
    no_inference: list[tuple[str, str]] = []
    noted: Counter[tuple[str, str | None]] = Counter()
    t0 = time.perf_counter()
    for row in rows:
        topic = infer_topic((corpus / row["local_path"]).read_bytes())
        expected = row["gcn_topic"]
        if not BARE_TOPIC.match(expected):
            noted[(expected, topic)] += 1
        elif topic == expected:
            agree[row["format"]] += 1
        elif topic is None:
            no_inference.append((row["local_path"], expected))
        else:
            disagree.append((row["local_path"], expected, topic))
    elapsed = time.perf_counter() - t0
    known = sum(agree.values()) + len(disagree) + len(no_inference)
    print(f"== MANIFEST: {len(rows)} XML/JSON files in {elapsed:.2f} s")
    print(f"known manifest topic: {known}")
    print(f"  agree:           {sum(agree.values())} ({dict(agree)})")
    print(f"  disagree:        {len(disagree)}")
    for path, expected, topic in disagree[:show]:
        print(f"    {path}\n      manifest {expected}  inferred {topic}")
    print(f"  not inferred:    {len(no_inference)}")
    for path, expected in no_inference[:show]:
        print(f"    {path}  (manifest {expected})")
    print(f"manifest topic with a note (guess / planned / n/a): {sum(noted.values())}")
    for (expected, topic), n in sorted(noted.items(), key=lambda kv: (-kv[1], kv[0][0])):
        print(f"  {n:4d}  {expected[:90]}  -> inferred {topic}")


def archive_check(corpus: Path) -> None:
    path = corpus / ARCHIVE
    topics: Counter[str] = Counter()
    unknown_types: Counter[int | None] = Counter()
    n_files = 0
    n_bytes = 0
    parse_errors = 0
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    t0 = time.perf_counter()
    with tarfile.open(path, mode="r|bz2") as archive:
        for member in archive:
            if not member.isfile():
                continue
            handle = archive.extractfile(member)
            if handle is None:
                continue
            payload = handle.read()
            n_files += 1
            n_bytes += len(payload)
            try:
                root = etree.fromstring(payload, parser)
            except etree.XMLSyntaxError:
                parse_errors += 1
                topics["(unparseable)"] += 1
                continue
            topic = topic_for_voevent(root)
            topics[topic or "(none)"] += 1
            packet_type = packet_type_of(root)
            if packet_type not in GCN_PACKET_TYPES:
                unknown_types[packet_type] += 1
    elapsed = time.perf_counter() - t0
    print(f"\n== ARCHIVE {ARCHIVE}: {n_files} notices, {n_bytes / 1e6:.1f} MB, {elapsed:.1f} s")
    print(f"parse errors: {parse_errors}")
    print(f"distinct topics: {len(topics)}")
    for topic, n in topics.most_common():
        print(f"  {n:6d}  {topic}")
    print("packet types not in GCN_PACKET_TYPES (published as gcn.classic.voevent.UNKNOWN):")
    for packet_type, n in unknown_types.most_common():
        print(f"  {n:6d}  {packet_type}")

    # Spot check: infer_topic on raw bytes gives the same answer as on the parsed root.
    with tarfile.open(path, mode="r|bz2") as archive:
        for i, member in enumerate(archive):
            handle = archive.extractfile(member) if member.isfile() else None
            if handle is None:
                continue
            payload = handle.read()
            assert infer_topic(payload) == topic_for_voevent(payload), member.name
            if i >= 200:
                break


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(os.environ.get("TRACERULES_CORPUS", DEFAULT_CORPUS))
    ap.add_argument("--corpus", type=Path, default=default, help=f"default: {default}")
    ap.add_argument("--show", type=int, default=50, help="list at most N files per category")
    ap.add_argument("--skip-archive", action="store_true")
    args = ap.parse_args()
    corpus: Path = require_corpus(args.corpus, "--corpus PATH")
    if not args.skip_archive:
        require_archive(corpus / ARCHIVE, "--corpus PATH (or --skip-archive)")
    manifest_check(corpus, args.show)
    if not args.skip_archive:
        archive_check(corpus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
