"""HEALPix pixel indexing: our numpy against astropy-healpix, on real LVK sky maps.

Usage: python bench/healpix.py [--corpus DIR] [--repeat N]

Issue 12 (item 6): use astropy-healpix for pixel indexing wherever it is as fast as ours (at
most ~1.2x our time). For each indexing function this prints the median CPU time per call of
ours (the project's, or for the NUNIQ split the code it replaced, kept in
tests/healpix_reference.py), of astropy-healpix's public function (as the project calls it,
or as it would), and of the C ufunc behind it without the Quantity wrapping; then the ratios
to ours and what the project uses.

Inputs are real multi-order maps: tests/data/skymaps, the alerts of tests/data/notices/lvk_json
and, when it is there, the shared corpus's skymaps/ (identical maps are timed once; ~17k-19k
pixels, orders 4 to 11). The position grids are those of skymap.png: the all-sky Mollweide
raster (looked up at order 29) and a zoom panel (at the map's deepest order), 50k points each.
The variants run in turn, in alternating order, N times each per map; a row gives the median
over maps of the per-map medians. CPU time, not wall time: it hardly moves when other work
shares the machine. The one-off cost of importing astropy_healpix (it brings
astropy.coordinates) after astropy.io.fits, which decoding a map has paid already, is last.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.healpix_reference: the hand-written code
sys.path.insert(0, str(ROOT / "bench"))

import astropy_healpix as ah  # noqa: E402
import numpy as np  # noqa: E402
from astropy import units  # noqa: E402
from astropy_healpix import _core  # noqa: E402
from shared_data import CORPUS, require  # noqa: E402

from tests import healpix_reference as ref  # noqa: E402
from tracerules.products.sky import healpix, sky_geometry  # noqa: E402
from tracerules.products.sky.skymap import SkyMap, SkyMapError, decode_skymap  # noqa: E402

DATA = ROOT / "tests" / "data"
SWITCH_AT = 1.2  # astropy-healpix is used where it takes at most this times our time
#: What products/sky/ calls for each function now (the decision the figures support).
USED = {
    "uniq_to_order_ipix (NUNIQ split)": "astropy-healpix",
    "uniq_centres (pix2ang, per-pixel order)": "ours",
    "pixel_centres nside 64 (skymap.csv)": "ours",
    "pixel_centres nside 256": "ours",
    "lonlat_to_nest 50k all-sky, order 29": "ours",
    "lonlat_to_nest 50k zoom, deepest order": "ours",
    "nside_to_order (one nside)": "ours",
    "pixel_area (per-pixel order)": "ours",
}
GRID_POINTS = 50_000
Step = Callable[[], object]


def _sources(corpus: Path | None) -> list[bytes | str]:
    found: list[bytes | str] = [p.read_bytes() for p in sorted((DATA / "skymaps").glob("*.fits"))]
    for path in sorted((DATA / "notices" / "lvk_json").glob("*.json")):
        event = json.loads(path.read_text()).get("event")
        if isinstance(event, dict) and event.get("skymap"):
            found.append(event["skymap"])
    if corpus is not None:
        found += [p.read_bytes() for p in sorted((corpus / "skymaps").glob("*.fits"))]
    return found


def real_maps(corpus: Path | None) -> list[SkyMap]:
    """Every distinct decodable map (the user-guide display examples are truncated)."""
    maps, seen = [], set()
    for data in _sources(corpus):
        digest = hashlib.sha256(data if isinstance(data, bytes) else data.encode()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        try:
            maps.append(decode_skymap(data))
        except SkyMapError:
            continue
    return maps


def allsky_grid() -> tuple[Any, Any]:
    """(RA, Dec) of the Mollweide raster cells inside the ellipse, at least 50k of them."""
    width = int(np.sqrt(GRID_POINTS * 8.0 / np.pi)) + 1  # the ellipse covers pi/8 of w x w/2
    _, _, ra, dec, inside = sky_geometry.mollweide_grid(width)
    return ra[inside], dec[inside]


def zoom_grid(skymap: SkyMap) -> tuple[Any, Any]:
    """A 250 x 200 zoom raster, 30 x 24 deg around the map's most probable pixel."""
    ra0, dec0 = healpix.max_probability_position(skymap.uniq, skymap.probdensity)
    dec = np.clip(dec0 + np.linspace(-12.0, 12.0, 200), -89.9, 89.9)
    ra2, dec2 = np.meshgrid(np.mod(ra0 + np.linspace(-15.0, 15.0, 250), 360.0), dec)
    return ra2.ravel(), dec2.ravel()


def _medians(steps: Sequence[Step], repeat: int) -> list[float]:
    """Median CPU seconds of each step, run in turn (in alternating order) so that the load
    of a shared machine falls on all of them alike."""
    times: list[list[float]] = [[] for _ in steps]
    for step in steps:
        step()  # first-call set-up outside the timing
    for run in range(repeat):
        order = list(enumerate(steps))
        for side, step in order if run % 2 else reversed(order):
            start = time.process_time()
            step()
            times[side].append(time.process_time() - start)
    return [statistics.median(t) for t in times]


def _ang2pix(nside: int, ra: Any, dec: Any) -> Any:
    return ah.lonlat_to_healpix(ra * units.deg, dec * units.deg, nside, order="nested")


def _ang2pix_core(nside: int, ra: Any, dec: Any) -> Any:
    return _core.lonlat_to_healpix_nested(np.radians(ra), np.radians(dec), nside)[0]


def _split(uniq: Any) -> tuple[Any, Any]:
    """(nested index, nside as astropy-healpix takes it) of multi-order pixels."""
    order, ipix = healpix.uniq_to_order_ipix(uniq)
    return ipix, np.left_shift(1, order, dtype=np.intc)


def _pix2ang(ipix: Any, nside: Any) -> Any:
    lon, lat = ah.healpix_to_lonlat(ipix, nside, order="nested")
    return lon.to_value(units.deg), lat.to_value(units.deg)


def _pix2ang_core(ipix: Any, nside: Any) -> Any:
    lon, lat = _core.healpix_nested_to_lonlat(ipix, nside, 0.5, 0.5)
    return np.degrees(lon), np.degrees(lat)


def _centres(order: int, core: bool) -> Step:
    ipix, nside = np.arange(12 << (2 * order)), np.intc(1 << order)
    return (lambda: _pix2ang_core(ipix, nside)) if core else (lambda: _pix2ang(ipix, nside))


def cases(skymap: SkyMap, grid: tuple[Any, Any]) -> dict[str, tuple[Step, Step, Step | None]]:
    """(ours, astropy-healpix, its C ufunc without the Quantity wrapping) per function."""
    uniq = skymap.uniq
    order, _ = healpix.uniq_to_order_ipix(uniq)
    nside = np.left_shift(1, order, dtype=np.intc)
    deepest = 1 << int(order.max())
    zoom = zoom_grid(skymap)
    return {
        "uniq_to_order_ipix (NUNIQ split)": (
            lambda: ref.uniq_to_order_ipix(uniq),  # ours before the switch
            lambda: healpix.uniq_to_order_ipix(uniq),  # astropy-healpix, checks included
            None,
        ),
        "uniq_centres (pix2ang, per-pixel order)": (
            lambda: healpix.uniq_centres(uniq),
            lambda: _pix2ang(*_split(uniq)),
            lambda: _pix2ang_core(*_split(uniq)),
        ),
        "pixel_centres nside 64 (skymap.csv)": (
            lambda: healpix.pixel_centres(64),
            _centres(6, core=False),
            _centres(6, core=True),
        ),
        "pixel_centres nside 256": (
            lambda: healpix.pixel_centres(256),
            _centres(8, core=False),
            _centres(8, core=True),
        ),
        "lonlat_to_nest 50k all-sky, order 29": (
            lambda: sky_geometry.lonlat_to_nest(1 << 29, *grid),
            lambda: _ang2pix(1 << 29, *grid),
            lambda: _ang2pix_core(1 << 29, *grid),
        ),
        "lonlat_to_nest 50k zoom, deepest order": (
            lambda: sky_geometry.lonlat_to_nest(deepest, *zoom),
            lambda: _ang2pix(deepest, *zoom),
            lambda: _ang2pix_core(deepest, *zoom),
        ),
        "nside_to_order (one nside)": (
            lambda: healpix.nside_to_order(deepest),
            lambda: ah.nside_to_level(deepest),
            None,
        ),
        "pixel_area (per-pixel order)": (
            lambda: healpix.pixel_area(order),
            lambda: ah.nside_to_pixel_area(nside).to_value(units.sr),
            None,
        ),
    }


def import_cost(runs: int = 3) -> float:
    """Median seconds to import astropy_healpix once astropy.io.fits is imported."""
    code = (
        "import time, astropy.io.fits; t = time.perf_counter(); import astropy_healpix; "
        "print(time.perf_counter() - t)"
    )
    times = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(runs)
    ]
    return statistics.median(times)


def _ratio(ratio: float) -> str:
    return "-" if math.isnan(ratio) else f"{ratio:.2f}"


def _unit(seconds: float) -> str:
    if math.isnan(seconds):  # no such variant
        return f"{'-':>12s}"
    return f"{seconds * 1e3:9.3f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:9.2f} us"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=None, help=f"default {CORPUS} if present")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    corpus = require(args.corpus, "the shared corpus", "--corpus") if args.corpus else None
    if corpus is None and (CORPUS / "skymaps").is_dir():
        corpus = CORPUS
    maps = real_maps(corpus)
    grid = allsky_grid()
    print(
        f"{len(maps)} distinct real sky maps ({', '.join(str(m.uniq.size) for m in maps)} "
        f"pixels); grids of {grid[0].size} and 50000 points; {args.repeat} runs per map"
    )
    rows: dict[str, list[list[float]]] = {}
    for skymap in maps:
        for name, steps in cases(skymap, grid).items():
            timed = _medians([s for s in steps if s is not None], args.repeat)
            rows.setdefault(name, []).append(timed + [float("nan")] * (3 - len(timed)))
    print(
        f"{'median CPU time per call':41s} {'ours':>12s} {'astropy-healpix':>15s} "
        f"{'(C ufunc)':>12s} {'ratio':>6s} {'(ufunc)':>7s}  project uses"
    )
    for name, per_map in rows.items():
        ours, public, ufunc = (statistics.median(m[i] for m in per_map) for i in range(3))
        print(
            f"{name:41s} {_unit(ours)} {_unit(public):>15s} {_unit(ufunc):>12s} "
            f"{public / ours:6.2f} {_ratio(ufunc / ours):>7s}  {USED[name]}"
        )
    print(f"import astropy_healpix after astropy.io.fits: {import_cost() * 1e3:.0f} ms, once")


if __name__ == "__main__":
    main()
