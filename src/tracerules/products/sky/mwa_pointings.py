"""The MWA's GW pointings: four beamformer sweet spots covering the most probable sky.

TRACE-T's algorithm (shared/docs/observatories.md): take the sky map's pixels by probability
density, highest first; for each, the nearest sweet spot at the current time; accept it when
it is more than 10° from every sweet spot already accepted; stop at four. Here only the sweet
spots above the site's elevation limit are candidates, so every pointing is observable.

The sweet spots are fixed in (az, el); they are turned into ICRS (ra, dec) once per call
(:func:`tracerules.products.sky.observability.radec_of_altaz`: offline, no refraction). The
nearest sweet spot is then found in ICRS: a rotation keeps separations, so this is the same
choice as TRACE-T's separation in AltAz, without turning every pixel into AltAz. Pure numpy,
no I/O besides reading the bundled table once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tracerules.products.sky.healpix import uniq_centres
from tracerules.products.sky.observability import radec_of_altaz
from tracerules.products.sky.sites import Site

FloatArray = NDArray[np.float64]

TABLE = Path(__file__).parent / "data" / "MWASweetSpots.txt"
_CHUNK = 4096  # pixels compared with the sweet spots at once


@dataclass(frozen=True)
class SweetSpots:
    number: NDArray[np.int64]  # the table's N column
    az: FloatArray  # degrees, from north through east
    el: FloatArray  # degrees


@dataclass(frozen=True)
class Pointing:
    ra: float  # ICRS degrees
    dec: float
    spot: int  # the sweet spot's number in the table
    az: float
    el: float


@functools.cache
def sweet_spots() -> SweetSpots:
    """The bundled table (see data/PROVENANCE.md), read once."""
    rows = [line.split("|") for line in TABLE.read_text().splitlines()[2:] if line.count("|") >= 3]
    number = np.array([int(r[0]) for r in rows], dtype=np.int64)
    az = np.array([float(r[1]) for r in rows])
    el = np.array([float(r[2]) for r in rows])
    return SweetSpots(number, az, el)


def _unit(ra: FloatArray, dec: FloatArray) -> FloatArray:
    a, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], axis=-1)


def choose(
    uniq: ArrayLike,
    probdensity: ArrayLike,
    spot_ra: FloatArray,
    spot_dec: FloatArray,
    count: int = 4,
    min_separation: float = 10.0,
) -> list[int]:
    """Indices of the chosen sweet spots, in the order TRACE-T's algorithm accepts them."""
    density = np.asarray(probdensity, dtype=np.float64)
    order = np.argsort(-density, kind="stable")  # highest density first, ties in map order
    ranked = np.asarray(uniq)[order]
    spots = _unit(spot_ra, spot_dec)
    too_close = spots @ spots.T >= np.cos(np.radians(min_separation))
    chosen: list[int] = []
    for start in range(0, len(order), _CHUNK):
        pixels = _unit(*uniq_centres(ranked[start : start + _CHUNK]))  # only those needed
        nearest = np.argmax(pixels @ spots.T, axis=1)
        # Only a sweet spot's first appearance can be accepted; later ones change nothing.
        _, first = np.unique(nearest, return_index=True)
        for spot in nearest[np.sort(first)]:
            if not any(too_close[spot, c] for c in chosen):
                chosen.append(int(spot))
                if len(chosen) == count:
                    return chosen
    return chosen


def gw_pointings(
    uniq: ArrayLike,
    probdensity: ArrayLike,
    when: float,
    site: Site,
    count: int = 4,
    min_separation: float = 10.0,
) -> list[Pointing]:
    """The GW pointings for a sky map at a site and time (fewer than `count` if the map is
    too compact for them to be `min_separation` apart)."""
    table = sweet_spots()
    usable = table.el > site.elevation_limit
    ra, dec = radec_of_altaz(table.el[usable], table.az[usable], site, when)
    picks = choose(uniq, probdensity, ra, dec, count, min_separation)
    number, az, el = table.number[usable], table.az[usable], table.el[usable]
    return [
        Pointing(float(ra[i]), float(dec[i]), int(number[i]), float(az[i]), float(el[i]))
        for i in picks
    ]
