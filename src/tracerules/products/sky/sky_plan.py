"""Where ``skymap.png`` looks: the map's centre, the zoom box, grid steps and the shading.

Pure numpy decisions from a multi-order map and its credible levels, so every choice the
figure makes is a number a test can check against an independent computation:

* :func:`choose_centre`: the all-sky map's central RA, put so that the map's edge (the
  meridian opposite) runs through a gap of the 90% region and never splits one of its pixels
  (S230528ay sits at RA 359 deg, where a map centred on 180 deg cuts it in two);
* :func:`zoom_box`: a box around the 90% region, for a panel that shows a few-deg2 region
  larger than a speck;
* :func:`shade`: the colour scale, a square root of density over the peak, so that the
  outskirts of the 90% region (a tenth of the peak density for a Gaussian) stay visible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tracerules.products.sky import healpix

__all__ = [
    "Zoom",
    "choose_centre",
    "nice_below",
    "nice_step",
    "region_extents",
    "shade",
    "zoom_box",
]

FloatArray = NDArray[np.float64]

#: The credible level whose region the figure keeps whole and zooms on.
REGION_LEVEL = 0.9
#: Largest zoom half-size (on-sky degrees): beyond it the all-sky map shows the region well.
MAX_ZOOM_HALF = 20.0
_BINS_PER_DEG = 10
_PREFERRED_CENTRES = np.arange(0.0, 360.0, 15.0)  # hour lines: rasters are cached per centre


def shade(fraction: ArrayLike) -> FloatArray:
    """Colour-scale position (0..1) of a density given as a fraction of the peak density."""
    return np.sqrt(np.clip(np.asarray(fraction, dtype=np.float64), 0.0, 1.0))


def region_extents(
    uniq: ArrayLike, levels: ArrayLike, level: float = REGION_LEVEL
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Centre RA, Dec and a bound on the angular radius (deg) of every pixel of the region."""
    u = np.asarray(uniq, dtype=np.int64)[np.asarray(levels) < level]
    order, _ = healpix.uniq_to_order_ipix(u)
    ra, dec = healpix.uniq_centres(u)
    # 1.5 x sqrt(pixel area) bounds the centre-to-corner distance at every order.
    radius = 1.5 * np.degrees(np.sqrt(healpix.pixel_area(order)))
    return ra, dec, radius


def _ra_half_extent(dec: FloatArray, radius: FloatArray) -> FloatArray:
    """Half the RA range (deg) of a disc of ``radius`` at ``dec``; 180 when it holds a pole."""
    cos_dec = np.cos(np.radians(dec))
    ratio = np.sin(np.radians(radius)) / np.maximum(cos_dec, 1e-12)
    half = np.degrees(np.arcsin(np.clip(ratio, 0.0, 1.0)))
    return np.where((np.abs(dec) + radius >= 90.0) | (ratio >= 1.0), 180.0, half)


def _free_meridians(ra: FloatArray, half: FloatArray) -> NDArray[np.bool_]:
    """Per 0.1-degree bin of RA, whether no region pixel reaches it."""
    bins = 360 * _BINS_PER_DEG
    if np.any(half >= 180.0):
        return np.zeros(bins, dtype=bool)
    start = np.floor((ra - half) * _BINS_PER_DEG).astype(np.int64) - 1
    stop = np.ceil((ra + half) * _BINS_PER_DEG).astype(np.int64) + 1
    cover = np.zeros(bins + 1, dtype=np.int64)
    # Each interval [start, stop) marked on a circle: split those that wrap past 0 or 360.
    for lo, hi in ((start, stop), (start + bins, stop + bins), (start - bins, stop - bins)):
        a, b = np.clip(lo, 0, bins), np.clip(hi, 0, bins)
        keep = b > a
        np.add.at(cover, a[keep], 1)
        np.add.at(cover, b[keep], -1)
    free: NDArray[np.bool_] = np.cumsum(cover[:-1]) == 0
    return free


def choose_centre(uniq: ArrayLike, levels: ArrayLike, fallback: float) -> float:
    """The central RA (deg) of the all-sky map, so that no pixel of the 90% region is split.

    The edge goes through the middle of the widest RA gap of the region, on an hour line when
    one lies well inside the gap (the drawing caches its raster per centre). Without any gap
    (a region around a pole, or all round the sky) the map is centred on ``fallback``.
    """
    ra, dec, radius = region_extents(uniq, levels)
    free = _free_meridians(ra, _ra_half_extent(dec, radius))
    if not free.any() or free.all():
        return float(np.mod(fallback, 360.0))
    # The longest circular run of free bins: roll so that the circle starts on a covered bin.
    first_covered = int(np.argmin(free))
    rolled = np.roll(free, -first_covered)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], rolled.astype(np.int8), [0]])))
    starts, stops = edges[::2], edges[1::2]
    best = int(np.argmax(stops - starts))
    lo = (starts[best] + first_covered) / _BINS_PER_DEG
    hi = (stops[best] + first_covered) / _BINS_PER_DEG
    margin = min(2.0, (hi - lo) / 4.0)
    middle = (lo + hi) / 2.0
    candidates = _PREFERRED_CENTRES + 180.0  # edges opposite the preferred centres
    shifted = lo + np.mod(candidates - lo, 360.0)
    usable = shifted[(shifted >= lo + margin) & (shifted <= hi - margin)]
    edge = float(usable[np.argmin(np.abs(usable - middle))]) if usable.size else middle
    return float(np.mod(edge + 180.0, 360.0))


def nice_step(span: float, ticks: int = 4) -> float:
    """A 1, 2 or 5 x 10**k step giving about ``ticks`` intervals over ``span``."""
    raw = max(span, 1e-9) / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1.0, 2.0, 5.0, 10.0) if m * power >= raw)


def nice_below(length: float) -> float:
    """The largest 1, 2 or 5 x 10**k not above ``length``: a scale bar's length."""
    power = 10.0 ** math.floor(math.log10(max(length, 1e-9)))
    return max(m * power for m in (1.0, 2.0, 5.0) if m * power <= length * (1 + 1e-12))


@dataclass(frozen=True, slots=True)
class Zoom:
    """A box on the sky: centre, half-sizes in on-sky degrees, grid steps and a scale bar.

    RA runs continuously over ``ra - ra_half .. ra + ra_half`` (values may pass 0 or 360;
    read them modulo 360), with ``ra_half = half_width / cos(dec)``.
    """

    ra: float
    dec: float
    half_width: float
    half_height: float
    dec_step: float
    ra_step: float
    scale: float

    @property
    def ra_half(self) -> float:
        return self.half_width / math.cos(math.radians(self.dec))

    def contains(self, ra: ArrayLike, dec: ArrayLike) -> NDArray[np.bool_]:
        """Whether each position lies in the box."""
        offset = np.mod(np.asarray(ra, dtype=np.float64) - self.ra + 180.0, 360.0) - 180.0
        inside_dec = np.abs(np.asarray(dec, dtype=np.float64) - self.dec) <= self.half_height
        result: NDArray[np.bool_] = (np.abs(offset) <= self.ra_half) & inside_dec
        return result


def zoom_box(
    uniq: ArrayLike,
    levels: ArrayLike,
    aspect: float = 1.0,
    margin: float = 0.12,
    centre: float | None = None,
) -> Zoom | None:
    """The box holding every pixel of the 90% region with a margin, or None when the region
    is too large (or too near a pole) for a zoom to help.

    ``aspect`` is the panel's width over its height: the box is widened or heightened to it,
    so that the panel keeps equal on-sky scales in both directions. ``centre`` is
    :func:`choose_centre`'s answer when the caller has it already.
    """
    ra, dec, radius = region_extents(uniq, levels)
    if not ra.size:
        return None
    # RA relative to a centre whose opposite meridian misses the region: no pixel wraps.
    if centre is None:
        centre = choose_centre(uniq, levels, float(ra[0]))
    offset = np.mod(ra - centre + 180.0, 360.0) - 180.0
    half_ra = _ra_half_extent(dec, radius)
    lo, hi = float(np.min(offset - half_ra)), float(np.max(offset + half_ra))
    dec_lo, dec_hi = float(np.min(dec - radius)), float(np.max(dec + radius))
    box_ra = float(np.mod(centre + (lo + hi) / 2.0, 360.0))
    box_dec = (dec_lo + dec_hi) / 2.0
    if hi - lo >= 180.0:  # about a pole: plate carree cannot show it
        return None
    cos_dec = math.cos(math.radians(box_dec))
    half_w = (hi - lo) / 2.0 * cos_dec * (1.0 + margin)
    half_h = (dec_hi - dec_lo) / 2.0 * (1.0 + margin)
    half_w, half_h = max(half_w, half_h * aspect), max(half_h, half_w / aspect)
    if half_h > MAX_ZOOM_HALF or abs(box_dec) + half_h >= 89.0:
        return None
    step = nice_step(2.0 * half_h)
    ra_step = nice_step(2.0 * half_w / cos_dec)
    return Zoom(box_ra, box_dec, half_w, half_h, step, ra_step, nice_below(0.6 * half_w))
