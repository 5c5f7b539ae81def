"""MWA GW pointings for every sky map in tests/data, checked against TRACE-T's algorithm.

Usage: python bench/mwa_pointings.py [--hours H ...] [--repeat N]

For each sky map (the two bare BAYESTAR FITS files and the two igwn.gwalert alerts with an
embedded map) and each time (the map's own time, plus each offset in --hours, default every
3 h over a day, so the sky is seen from every side), it prints the four pointings tracerules
chooses (`tracerules.products.sky.mwa_pointings.gw_pointings`) and checks that:

* all four are more than 10 deg apart;
* all four are above the MWA site's elevation limit (rules/sites.yaml, 30 deg) at that time;
* they are the same four sweet spots, in the same order, as a reference implementation of
  TRACE-T's algorithm written here independently: pixel centres from astropy-healpix, every
  pixel turned into AltAz at the MWA with astropy's own frames (IERS data as bundled, no
  download), pixels taken by probability density, highest first, each one's nearest sweet
  spot by separation in AltAz, accepted when more than 10 deg from every accepted one, until
  four. As in tracerules, only sweet spots above the limit are candidates; the column
  `trace-t low` counts the pointings the unrestricted algorithm would have put below it.

It also prints the median time of `gw_pointings` and of the reference (--repeat runs each).
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import time
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.coordinates import AltAz, EarthLocation, SkyCoord
from astropy.io import fits
from astropy.time import Time
from astropy.utils import iers
from astropy_healpix import HEALPix

from tracerules.products.sky.mwa_pointings import Pointing, gw_pointings, sweet_spots
from tracerules.rules.compile import load_ruleset

ROOT = Path(__file__).resolve().parents[1]
SKYMAPS = ROOT / "tests" / "data" / "skymaps"
iers.conf.auto_download = False  # offline, like tracerules


def _table(data: bytes) -> Any:
    with fits.open(BytesIO(data)) as hdus:
        table = hdus[1].data
        return np.array(table["UNIQ"]), np.array(table["PROBDENSITY"]), dict(hdus[1].header)


def sky_maps() -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """(name, uniq, probdensity, time) for each sky map in tests/data."""
    maps = []
    for path in sorted(SKYMAPS.glob("*.fits")):
        uniq, density, header = _table(path.read_bytes())
        maps.append((path.name, uniq, density, Time(header["DATE-OBS"]).unix))
    for path in sorted(SKYMAPS.glob("*.json")):
        alert = json.loads(path.read_text())
        event = alert.get("event") or {}
        if not event.get("skymap"):
            continue
        uniq, density, _ = _table(base64.b64decode(event["skymap"]))
        when = datetime.fromisoformat(alert["time_created"].replace("Z", "+00:00")).timestamp()
        maps.append((path.name, uniq, density, when))
    return maps


def reference(
    uniq: np.ndarray, density: np.ndarray, when: float, site: Any, limit_only: bool
) -> list[int]:
    """TRACE-T's algorithm with astropy (sweet-spot numbers, in acceptance order)."""
    table = sweet_spots()
    keep = table.el > site.elevation_limit if limit_only else np.ones(len(table.el), bool)
    location = EarthLocation.from_geodetic(
        site.longitude * u.deg, site.latitude * u.deg, site.height * u.m
    )
    frame = AltAz(obstime=Time(when, format="unix"), location=location, pressure=0 * u.hPa)
    spots = SkyCoord(az=table.az[keep] * u.deg, alt=table.el[keep] * u.deg, frame=frame)
    order = np.floor(np.log2(uniq / 4) / 2).astype(np.int64)
    ipix = uniq - 4 * 4**order
    by_density = np.argsort(-density, kind="stable")
    ra = np.empty(len(uniq))
    dec = np.empty(len(uniq))
    for level in np.unique(order):
        rows = order == level
        lon, lat = HEALPix(nside=2 ** int(level), order="nested").healpix_to_lonlat(ipix[rows])
        ra[rows], dec[rows] = lon.deg, lat.deg
    apart = spots[:, np.newaxis].separation(spots[np.newaxis, :]).deg > 10.0
    chosen: list[int] = []
    step = 2048
    for start in range(0, len(by_density), step):
        rows = by_density[start : start + step]
        pixels = SkyCoord(ra=ra[rows] * u.deg, dec=dec[rows] * u.deg).transform_to(frame)
        nearest_spots = np.argmin(pixels[:, np.newaxis].separation(spots[np.newaxis, :]).deg, 1)
        for nearest in (int(n) for n in nearest_spots):
            if all(apart[nearest, c] for c in chosen):
                chosen.append(nearest)
                if len(chosen) == 4:
                    return [int(n) for n in table.number[keep][chosen]]
    return [int(n) for n in table.number[keep][chosen]]


def separations(points: list[Pointing]) -> float:
    out = []
    for i, a in enumerate(points):
        for b in points[i + 1 :]:
            ca = SkyCoord(a.ra * u.deg, a.dec * u.deg)
            out.append(ca.separation(SkyCoord(b.ra * u.deg, b.dec * u.deg)).deg)
    return min(out)


def elevations(points: list[Pointing], when: float, site: Any) -> float:
    location = EarthLocation.from_geodetic(
        site.longitude * u.deg, site.latitude * u.deg, site.height * u.m
    )
    frame = AltAz(obstime=Time(when, format="unix"), location=location, pressure=0 * u.hPa)
    coords = SkyCoord([p.ra for p in points] * u.deg, [p.dec for p in points] * u.deg)
    return float(coords.transform_to(frame).alt.deg.min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, nargs="*", default=[0, 3, 6, 9, 12, 15, 18, 21])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-unrestricted", action="store_true", help="skip `trace-t low`")
    args = parser.parse_args()
    site = load_ruleset([ROOT / "rules"]).sites["mwa"]
    print(
        f"site mwa: lat {site.latitude:.5f} lon {site.longitude:.5f} "
        f"limit {site.elevation_limit:g} deg; {len(sweet_spots().el)} sweet spots"
    )
    header = f"{'sky map':34} {'time (UTC)':17} {'pointings':20} {'min sep':>8} {'min el':>7}"
    print(header + f" {'same as TRACE-T':>16} {'trace-t low':>11}")
    ours_s: list[float] = []
    ref_s: list[float] = []
    cases = same = apart = above = 0
    for name, uniq, density, when0 in sky_maps():
        for hours in args.hours:
            when = when0 + hours * 3600
            t0 = time.perf_counter()
            points = gw_pointings(uniq, density, when, site)
            ours_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            expected = reference(uniq, density, when, site, limit_only=True)
            ref_s.append(time.perf_counter() - t0)
            low = 0
            if not args.no_unrestricted:
                unrestricted = reference(uniq, density, when, site, limit_only=False)
                low = sum(1 for n in unrestricted if sweet_spots().el[n] <= site.elevation_limit)
            spots = [p.spot for p in points]
            min_sep, min_el = separations(points), elevations(points, when, site)
            cases += 1
            same += spots == expected
            apart += len(points) == 4 and min_sep > 10.0
            above += min_el > site.elevation_limit
            stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M")
            verdict = "yes" if spots == expected else f"NO {expected}"
            print(
                f"{name:34} {stamp:17} {spots!s:20} {min_sep:8.2f} {min_el:7.2f}"
                f" {verdict:>16} {low:>11}",
                flush=True,
            )
    for _ in range(args.repeat - 1):  # more timings on the first map, for a stable median
        name, uniq, density, when0 = sky_maps()[0]
        t0 = time.perf_counter()
        gw_pointings(uniq, density, when0, site)
        ours_s.append(time.perf_counter() - t0)
    print(
        f"\n{cases} cases: {apart} with four pointings > 10 deg apart, {above} all above "
        f"{site.elevation_limit:g} deg, {same} the same four as TRACE-T's algorithm"
    )
    ours, ref = statistics.median(ours_s), statistics.median(ref_s)
    print(
        f"median time: tracerules gw_pointings {ours * 1e3:.1f} ms, astropy reference "
        f"{ref * 1e3:.0f} ms (ratio {ref / ours:.0f}x)"
    )


if __name__ == "__main__":
    main()
