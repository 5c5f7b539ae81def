"""Pure numpy geometry for drawing sky maps: pixel look-up, the Mollweide projection, curves.

Nothing here touches Matplotlib or files, so every figure drawn in ``skymap.png`` comes from
functions that can be tested on numbers. Angles are degrees at the interface.

* :func:`lonlat_to_nest` is the HEALPix ``ang2pix`` for the NESTED scheme.
* :func:`multiorder_lookup` finds, for each sky position, the row of the multi-order map whose
  pixel contains it: images and credible contours then come from the map itself, at its own
  resolution, with no resampling.
* The projection is the equal-area Mollweide in the astronomical orientation: RA 180 deg in the
  centre and RA increasing to the left (east to the left, as on the sky).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tracerules.products.sky import healpix
from tracerules.products.sky.galactic import galactic_to_equatorial

__all__ = [
    "break_wraps",
    "galactic_plane",
    "lonlat_to_nest",
    "mollweide",
    "mollweide_grid",
    "mollweide_inverse",
    "multiorder_lookup",
    "multiorder_rows",
    "small_circle",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

SQRT2 = float(np.sqrt(2.0))
#: Half-width and half-height of the Mollweide ellipse in projection units.
X_MAX, Y_MAX = 2.0 * SQRT2, SQRT2


def _spread_bits(v: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """Spread the low 32 bits of ``v`` onto the even bit positions (Morton interleave)."""
    v = v & np.uint64(0xFFFFFFFF)
    for shift, mask in (
        (16, 0x0000FFFF0000FFFF),
        (8, 0x00FF00FF00FF00FF),
        (4, 0x0F0F0F0F0F0F0F0F),
        (2, 0x3333333333333333),
        (1, 0x5555555555555555),
    ):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def lonlat_to_nest(nside: int, ra: ArrayLike, dec: ArrayLike) -> IntArray:
    """NESTED pixel index at ``nside`` containing each (RA, Dec) (reference ``ang2pix_nest``).

    Kept rather than astropy-healpix's ``lonlat_to_healpix``: on skymap.png's 50k-point grids
    that takes 1.3-1.5x our time at order 29 (the all-sky raster) and 1.1-1.2x at a map's deepest
    order (the zoom) (bench/healpix.py), and it places points lying exactly on a pixel corner,
    such as (180, 0), in another of the pixels that share it, which would move raster cells.
    """
    healpix.nside_to_order(nside)
    phi = np.radians(np.asarray(ra, dtype=np.float64))
    theta_lat = np.radians(np.asarray(dec, dtype=np.float64))
    z, za = np.sin(theta_lat), np.abs(np.sin(theta_lat))
    tt = np.mod(phi * (2.0 / np.pi), 4.0)  # longitude in units of pi/2, in [0, 4)
    n = np.int64(nside)

    # Equatorial belt: two families of diagonal lines through the base-pixel corners.
    temp1, temp2 = nside * (0.5 + tt), nside * z * 0.75
    jp = np.floor(temp1 - temp2).astype(np.int64)
    jm = np.floor(temp1 + temp2).astype(np.int64)
    ifp, ifm = jp // n, jm // n
    face_eq = np.where(ifp == ifm, ifp | 4, np.where(ifp < ifm, ifp, ifm + 8))
    ix_eq, iy_eq = jm & (n - 1), n - (jp & (n - 1)) - 1

    # Polar caps: 1 - |z| from cos(dec) keeps precision next to the poles.
    ntt = np.minimum(tt.astype(np.int64), 3)
    tp = tt - ntt
    one_minus_za = np.cos(theta_lat) ** 2 / (1.0 + za)
    tmp = nside * np.sqrt(3.0 * one_minus_za)
    jp_p = np.minimum(np.floor(tp * tmp).astype(np.int64), n - 1)
    jm_p = np.minimum(np.floor((1.0 - tp) * tmp).astype(np.int64), n - 1)
    north = z >= 0
    face_p = np.where(north, ntt, ntt + 8)
    ix_p = np.where(north, n - jm_p - 1, jp_p)
    iy_p = np.where(north, n - jp_p - 1, jm_p)

    belt = za <= 2.0 / 3.0
    face = np.where(belt, face_eq, face_p)
    ix = np.where(belt, ix_eq, ix_p).astype(np.uint64)
    iy = np.where(belt, iy_eq, iy_p).astype(np.uint64)
    inner = _spread_bits(ix) | (_spread_bits(iy) << np.uint64(1))
    return face * n * n + inner.astype(np.int64)


def multiorder_lookup(uniq: ArrayLike, ra: ArrayLike, dec: ArrayLike) -> IntArray:
    """Row of the multi-order map whose pixel contains each position, or -1 where none does.

    Every pixel covers a contiguous range of nested indices at the map's deepest order, so
    one ``ang2pix`` there and a binary search over the sorted ranges find it exactly.
    """
    deepest = int(healpix.uniq_to_order_ipix(uniq)[0].max())
    return multiorder_rows(uniq, lonlat_to_nest(1 << deepest, ra, dec), deepest)


def multiorder_rows(uniq: ArrayLike, nest: ArrayLike, order: int) -> IntArray:
    """:func:`multiorder_lookup` for points given by their NESTED index at ``order``.

    ``order`` may be deeper than the map's: a nested index shifted right by two bits is its
    parent's, so indices at the deepest order (29) serve every map. Drawing code keeps them
    for its fixed raster and skips the ``ang2pix`` for each new map.
    """
    level, ipix = healpix.uniq_to_order_ipix(uniq)
    deepest = int(level.max())
    if order < deepest:
        raise ValueError(f"points at order {order} cannot resolve pixels of order {deepest}")
    query = np.asarray(nest, dtype=np.int64) >> (2 * (order - deepest))
    shift = 2 * (deepest - level)
    start, end = ipix << shift, (ipix + 1) << shift
    rank = np.argsort(start, kind="stable")
    k = np.searchsorted(start[rank], query, side="right") - 1
    safe = np.clip(k, 0, rank.size - 1)
    found = (k >= 0) & (query < end[rank][safe])
    return np.where(found, rank[safe], -1).astype(np.int64)


def mollweide(
    ra: ArrayLike, dec: ArrayLike, centre: float = 180.0
) -> tuple[FloatArray, FloatArray]:
    """Projected (x, y) of (RA, Dec): RA ``centre`` in the middle, RA increasing to the left."""
    lon = np.radians(np.mod(np.asarray(ra, dtype=np.float64) - centre + 180.0, 360.0) - 180.0)
    lat = np.radians(np.asarray(dec, dtype=np.float64))
    target = np.pi * np.sin(lat)
    theta = lat.copy()
    for _ in range(30):  # Newton on 2t + sin 2t = pi sin(lat); converges in a few steps
        denom = 2.0 + 2.0 * np.cos(2.0 * theta)
        ok = denom > 1e-12
        step = np.where(
            ok, (2.0 * theta + np.sin(2.0 * theta) - target) / np.where(ok, denom, 1.0), 0
        )
        theta = theta - step
        if not np.any(np.abs(step) >= 1e-12):  # NaN (a gap in a curve) counts as done
            break
    theta = np.where(np.abs(lat) >= np.pi / 2 - 1e-9, np.sign(lat) * np.pi / 2, theta)
    return -(2.0 * SQRT2 / np.pi) * lon * np.cos(theta), SQRT2 * np.sin(theta)


def mollweide_inverse(
    x: ArrayLike, y: ArrayLike, centre: float = 180.0
) -> tuple[FloatArray, FloatArray, NDArray[np.bool_]]:
    """(RA, Dec) of projected points, and a mask of the points inside the ellipse."""
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    inside = (xa / X_MAX) ** 2 + (ya / Y_MAX) ** 2 <= 1.0
    theta = np.arcsin(np.clip(ya / SQRT2, -1.0, 1.0))
    lat = np.arcsin(np.clip((2.0 * theta + np.sin(2.0 * theta)) / np.pi, -1.0, 1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        lon = -np.pi * xa / (2.0 * SQRT2 * np.cos(theta))
    lon = np.where(inside, lon, 0.0)
    ra = np.mod(np.degrees(lon) + centre, 360.0)
    return ra, np.degrees(lat), inside


def small_circle(
    ra: float, dec: float, radius: float, points: int = 181
) -> tuple[FloatArray, FloatArray]:
    """Points at great-circle distance ``radius`` from (ra, dec): a footprint's edge."""
    bearing = np.linspace(0.0, 2.0 * np.pi, points)
    d0, r = np.radians(dec), np.radians(radius)
    sin_dec = np.sin(d0) * np.cos(r) + np.cos(d0) * np.sin(r) * np.cos(bearing)
    lat = np.arcsin(np.clip(sin_dec, -1.0, 1.0))
    dlon = np.arctan2(np.sin(bearing) * np.sin(r) * np.cos(d0), np.cos(r) - np.sin(d0) * sin_dec)
    return np.mod(ra + np.degrees(dlon), 360.0), np.degrees(lat)


def galactic_plane(latitude: float = 0.0, points: int = 721) -> tuple[FloatArray, FloatArray]:
    """RA and Dec of the line of constant galactic latitude (the plane itself by default)."""
    lon = np.linspace(0.0, 360.0, points)
    return galactic_to_equatorial(lon, np.full_like(lon, latitude))


def break_wraps(
    ra: ArrayLike, dec: ArrayLike, centre: float = 180.0
) -> tuple[FloatArray, FloatArray]:
    """Split a curve where it crosses the map's edge (RA ``centre`` + 180; 0/360 by default),
    so that no line runs across the map.

    At each crossing the curve is carried to the edge on both sides (Dec interpolated) with
    a NaN between, which Matplotlib draws as a gap.
    """
    shift = centre - 180.0  # work with the edge at 0/360, then move it back
    r = np.mod(np.asarray(ra, dtype=np.float64) - shift, 360.0)
    d = np.asarray(dec, dtype=np.float64)
    out_r, out_d = _break_at_zero(r, d)
    return out_r + shift, out_d


def _break_at_zero(r: FloatArray, d: FloatArray) -> tuple[FloatArray, FloatArray]:
    out_r: list[FloatArray] = []
    out_d: list[FloatArray] = []
    start = 0
    for i in (int(k) for k in np.flatnonzero(np.abs(np.diff(r)) > 180.0)):
        a, b = float(r[i]), float(r[i + 1])
        to_edge = (360.0 - a) if a > b else -a  # going up through 360, or down through 0
        span = to_edge + (b if a > b else b - 360.0)
        frac = to_edge / span if span else 0.0
        d_edge = d[i] + frac * (d[i + 1] - d[i])
        edge_a, edge_b = (360.0 - 1e-9, 1e-9) if a > b else (1e-9, 360.0 - 1e-9)
        out_r += [r[start : i + 1], np.array([edge_a, np.nan, edge_b])]
        out_d += [d[start : i + 1], np.array([d_edge, np.nan, d_edge])]
        start = i + 1
    out_r.append(r[start:])
    out_d.append(d[start:])
    return np.concatenate(out_r), np.concatenate(out_d)


def mollweide_grid(
    width: int, centre: float = 180.0
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, NDArray[np.bool_]]:
    """A raster over the Mollweide ellipse, ``width`` cells across and half that high.

    Returns the cell centres in projection units (x, y; 2-d, row 0 at the bottom), their
    (RA, Dec), and the mask of cells inside the ellipse.
    """
    height = max(width // 2, 1)
    xs = (np.arange(width) + 0.5) / width * (2 * X_MAX) - X_MAX
    ys = (np.arange(height) + 0.5) / height * (2 * Y_MAX) - Y_MAX
    x, y = np.meshgrid(xs, ys)
    ra, dec, inside = mollweide_inverse(x, y, centre)
    return x, y, ra, dec, inside
