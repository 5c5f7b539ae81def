"""When a site can observe: visibility windows of a position and of a sky map.

*Visible* means above the site's elevation limit and, for a site with a Sun limit, with the
Sun below that limit. Pure maths over :mod:`tracerules.products.sky.observability`: degrees and
POSIX seconds in, no I/O.

A fixed position's elevation depends on time only through its hour angle, so the times it is
above a limit are found exactly (a cosine inequality per sidereal day). The Sun is sampled
every 10 minutes and its crossings of the limit refined by bisection to a second. A sky map's
visible probability over a window is the maximum of a function of the local sidereal angle
alone: each pixel is above the limit on one arc of that angle, so the arcs are summed once on
a 0.1 deg grid and read at every time of the window, then the best time is computed exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tracerules.products.sky import observability as sky
from tracerules.products.sky.sites import Site

__all__ = [
    "MAX_WINDOW",
    "Pixels",
    "best_visible_pixel",
    "best_visible_time",
    "is_dark",
    "visible_intervals",
    "visible_mask",
    "visible_probability",
]

FloatArray = NDArray[np.float64]
Interval = tuple[float, float]

MAX_WINDOW = 7 * 86400.0  # the longest window a function looks ahead
_SIDEREAL_RATE = 360.0 * 1.00273781191135448 / 86400.0  # degrees of hour angle per second
_SUN_STEP = 600.0
_GRID = 3600  # samples of the local sidereal angle: 0.1 deg, 24 s of time


def _check_window(start: float, end: float) -> None:
    if end < start:
        raise ValueError("the window must not be negative")
    if end - start > MAX_WINDOW:
        raise ValueError(f"the window is longer than {MAX_WINDOW / 86400:g} d")


def _arc_cosine(dec_deg: FloatArray | float, site: Site) -> FloatArray:
    """Per declination, cos(H) at which the elevation equals the limit (<= -1: always up)."""
    lat, dec = math.radians(site.latitude), np.radians(dec_deg)
    denominator = math.cos(lat) * np.cos(dec)
    numerator = math.sin(math.radians(site.elevation_limit)) - math.sin(lat) * np.sin(dec)
    with np.errstate(divide="ignore", invalid="ignore"):
        cosine = numerator / denominator
    # At a pole (or for a site at one) the elevation does not change: up or down for good.
    return np.where(np.abs(denominator) < 1e-12, np.where(numerator <= 0.0, -2.0, 2.0), cosine)


def _above_limit(ra: float, dec: float, site: Site, start: float, end: float) -> list[Interval]:
    """Exact times in [start, end] when a fixed position is above the elevation limit."""
    ra_t, dec_t = sky.apparent_radec(ra, dec, start)
    cosine = float(_arc_cosine(float(dec_t), site))
    if cosine <= -1.0:
        return [(start, end)]
    if cosine > 1.0:
        return []
    half = math.degrees(math.acos(cosine)) / _SIDEREAL_RATE  # seconds either side of transit
    hour_angle = (float(sky.local_sidereal_angle(site, start)) - float(ra_t) + 180.0) % 360.0
    transit = start - (hour_angle - 180.0) / _SIDEREAL_RATE  # the nearest transit to start
    period = 360.0 / _SIDEREAL_RATE
    out: list[Interval] = []
    while transit - half <= end:
        low, high = max(start, transit - half), min(end, transit + half)
        if low <= high:
            out.append((low, high))
        transit += period
    return out


def _sun_crossing(site: Site, limit: float, low: float, high: float) -> float:
    """The time in [low, high] where the Sun crosses ``limit`` (its sign differs at the ends)."""
    below_at_low = sky.sun_altaz(site, low)[0] < limit
    while high - low > 1.0:
        middle = 0.5 * (low + high)
        if (sky.sun_altaz(site, middle)[0] < limit) == below_at_low:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def _dark(site: Site, start: float, end: float) -> list[Interval]:
    """Times in [start, end] when the Sun is below the site's Sun limit (all, without one)."""
    limit = site.sun_limit
    if limit is None:
        return [(start, end)]
    times = np.append(np.arange(start, end, _SUN_STEP), end)
    dark = np.asarray(sky.sun_altaz(site, times)[0]) < limit
    out: list[Interval] = []
    opened = start if dark[0] else None
    for i in range(1, times.size):
        if dark[i] == dark[i - 1]:
            continue
        edge = _sun_crossing(site, limit, float(times[i - 1]), float(times[i]))
        if dark[i]:
            opened = edge
        elif opened is not None:
            out.append((opened, edge))
            opened = None
    if opened is not None:
        out.append((opened, end))
    return out


def _intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        low, high = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if low <= high:
            out.append((low, high))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def visible_intervals(
    ra: float, dec: float, site: Site, start: float, end: float
) -> list[Interval]:
    """The times in [start, end] (at most :data:`MAX_WINDOW`) when (ra, dec) is visible."""
    if not -90.0 <= dec <= 90.0:
        raise ValueError(f"declination {dec:g} is outside [-90, 90]")
    _check_window(start, end)
    return _intersect(_above_limit(ra, dec, site, start, end), _dark(site, start, end))


def is_dark(site: Site, t: float) -> bool:
    """Whether the Sun is below the site's Sun limit (always, for a site without one)."""
    return site.sun_limit is None or float(sky.sun_altaz(site, t)[0]) < site.sun_limit


# -- sky maps -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pixels:
    """A sky map's pixels as the visibility maths wants them (built once per map)."""

    ra: FloatArray  # degrees, ICRS centres
    dec: FloatArray
    vectors: FloatArray  # ICRS unit vectors, (n, 3)
    prob: FloatArray  # probability of each pixel, as a fraction of the map's total
    density: FloatArray  # probability per steradian, to rank pixels

    @classmethod
    def of_map(cls, uniq: NDArray[np.int64], probdensity: FloatArray) -> Pixels:
        from tracerules.products.sky import healpix

        order, _ = healpix.uniq_to_order_ipix(uniq)
        prob = np.asarray(probdensity, dtype=np.float64) * healpix.pixel_area(order)
        ra, dec = healpix.uniq_centres(uniq)
        density = np.asarray(probdensity, dtype=np.float64)
        return cls(ra, dec, sky.unit_vectors(ra, dec), prob / prob.sum(), density)


def visible_mask(pixels: Pixels, site: Site, t: float) -> NDArray[np.bool_]:
    """Which pixels are above the site's elevation limit at time t."""
    limit = math.sin(math.radians(site.elevation_limit))
    mask: NDArray[np.bool_] = sky.sin_elevations(pixels.vectors, site, t) >= limit
    return mask


def visible_probability(pixels: Pixels, site: Site, t: float) -> float:
    """Probability of the pixels above the limit at t (0 in daylight at a Sun-limited site)."""
    if not is_dark(site, t):
        return 0.0
    return float(pixels.prob[visible_mask(pixels, site, t)].sum())


def best_visible_pixel(pixels: Pixels, site: Site, t: float) -> int | None:
    """Index of the densest visible pixel at t, or None when none is visible."""
    if not is_dark(site, t):
        return None
    visible = np.flatnonzero(visible_mask(pixels, site, t))
    return None if visible.size == 0 else int(visible[np.argmax(pixels.density[visible])])


def _probability_by_angle(pixels: Pixels, site: Site, start: float) -> FloatArray:
    """Visible probability at the local sidereal angles of start + k * 0.1 deg (k < _GRID)."""
    ra_t, dec_t = sky.apparent_radec(pixels.ra, pixels.dec, start)
    origin = float(sky.local_sidereal_angle(site, start))
    step, prob = 360.0 / _GRID, pixels.prob
    cosine = _arc_cosine(np.asarray(dec_t), site)
    always = float(prob[cosine <= -1.0].sum())
    arc = (cosine > -1.0) & (cosine <= 1.0)
    half = np.degrees(np.arccos(cosine[arc]))
    low = (np.asarray(ra_t)[arc] - half - origin) % 360.0
    first = np.ceil(low / step).astype(np.int64)
    last = np.floor((low + 2.0 * half) / step).astype(np.int64)
    size = 2 * _GRID + 2
    edges = np.bincount(first, prob[arc], size) - np.bincount(last + 1, prob[arc], size)
    running = np.cumsum(edges)
    # An arc may run past 360 deg: fold the second turn back onto the first.
    return running[:_GRID] + running[_GRID : 2 * _GRID] + always


def best_visible_time(pixels: Pixels, site: Site, start: float, end: float) -> tuple[float, float]:
    """The time in [start, end] when the most probability is visible, and that probability.

    The grid finds the best time to 24 s; the probability returned is computed exactly at that
    time (or at the start, whichever is more), so it never exceeds what is really visible.
    """
    _check_window(start, end)
    by_angle = _probability_by_angle(pixels, site, start)
    seconds = 360.0 / _GRID / _SIDEREAL_RATE
    times = start + np.arange(0, math.floor((end - start) / seconds) + 1) * seconds
    estimate = by_angle[np.arange(times.size) % _GRID]
    if site.sun_limit is not None:
        daylight = np.asarray(sky.sun_altaz(site, times)[0]) >= site.sun_limit
        estimate = np.where(daylight, -1.0, estimate)
    candidates = (start, float(times[int(np.argmax(estimate))]))
    exact = [(visible_probability(pixels, site, t), -t) for t in candidates]
    probability, minus_time = max(exact)
    return -minus_time, probability
