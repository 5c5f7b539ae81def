"""Time sky-map decoding, summaries and flattening on every LVK sky map in the shared corpus.

Usage: python bench/skymap_maths.py [CORPUS_DIR] [--repeat N]

CORPUS_DIR defaults to ../shared/corpus beside the project. Inputs are the multi-order FITS
files under skymaps/ and every igwn.gwalert JSON alert (per MANIFEST.tsv) whose embedded sky
map decodes; identical payloads are timed once. Each step is run N times per map and the
median taken; the table then gives the median, and the worst, of those over all maps.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from shared_data import CORPUS as DEFAULT_CORPUS
from shared_data import require_corpus

from tracerules.products.sky import healpix
from tracerules.products.sky.galactic import equatorial_to_galactic
from tracerules.products.sky.skymap import (
    SkyMapError,
    decode_skymap,
    flatten_skymap,
    summarize,
)


def _alert_payloads(corpus: Path) -> dict[str, str]:
    """Base64 sky maps of every igwn.gwalert alert in the manifest that carries a usable one."""
    payloads: dict[str, str] = {}
    with (corpus / "MANIFEST.tsv").open(newline="") as manifest:
        for row in csv.DictReader(manifest, delimiter="\t"):
            if row["gcn_topic"] != "igwn.gwalert":
                continue
            event = json.loads((corpus / row["local_path"]).read_text()).get("event")
            skymap = event.get("skymap") if isinstance(event, dict) else None
            if not skymap:
                continue
            try:
                decode_skymap(skymap)
            except SkyMapError:  # user-guide display examples truncate the payload
                continue
            payloads[row["local_path"]] = skymap
    return payloads


def _inputs(corpus: Path) -> dict[str, str | bytes]:
    """Every distinct sky map: FITS bytes by file, then alert payloads by alert."""
    maps: dict[str, str | bytes] = {
        str(path.relative_to(corpus)): path.read_bytes()
        for path in sorted((corpus / "skymaps").glob("*.fits"))
    }
    maps.update(_alert_payloads(corpus))
    distinct: dict[str, str | bytes] = {}
    seen: set[str] = set()
    for name, data in maps.items():
        digest = hashlib.sha256(data if isinstance(data, bytes) else data.encode()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            distinct[name] = data
    return distinct


def _median_ms(step: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _time_one(data: str | bytes, repeat: int) -> dict[str, float]:
    skymap = decode_skymap(data)
    return {
        "decode": _median_ms(lambda: decode_skymap(data), repeat),
        "summary": _median_ms(lambda: summarize(skymap, ephemeris=False), repeat),
        "decode+summary": _median_ms(
            lambda: summarize(decode_skymap(data), ephemeris=False), repeat
        ),
        "sun+moon": _median_ms(lambda: summarize(skymap), repeat)
        - _median_ms(lambda: summarize(skymap, ephemeris=False), repeat),
        "flatten 64": _median_ms(lambda: flatten_skymap(skymap, 64), repeat),
        "flatten 512": _median_ms(lambda: flatten_skymap(skymap, 512), repeat),
        "centres+gal 64": _median_ms(
            lambda: equatorial_to_galactic(*healpix.pixel_centres(64)), repeat
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    require_corpus(args.corpus, "the CORPUS_DIR argument")

    start = time.perf_counter()
    maps = _inputs(args.corpus)  # also imports astropy.io.fits: the cold cost is paid here
    print(f"{len(maps)} distinct sky maps, loaded in {time.perf_counter() - start:.2f} s")
    start = time.perf_counter()
    summarize(decode_skymap(next(iter(maps.values()))))  # first ephemeris imports coordinates
    print(
        f"first summary with Sun/Moon (imports astropy.coordinates): "
        f"{time.perf_counter() - start:.2f} s\n"
    )

    results = {name: _time_one(data, args.repeat) for name, data in maps.items()}
    for name, timing in results.items():
        print(f"{name}\n  " + ", ".join(f"{k} {v:.1f} ms" for k, v in timing.items()))
    print(f"\nmedian (max) over {len(results)} maps, {args.repeat} runs each:")
    for step in next(iter(results.values())):
        values = [timing[step] for timing in results.values()]
        print(f"  {step:<16} {statistics.median(values):8.2f} ms  ({max(values):.2f} ms)")


if __name__ == "__main__":
    main()
