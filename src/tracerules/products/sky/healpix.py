"""Pure HEALPix maths for LVK multi-order (NUNIQ) sky maps.

Everything here works on plain numpy arrays and does no I/O, so it is cheap to call on the hot
path and easy to test. Conventions:

* Pixel indices are in the NESTED scheme. A multi-order pixel is identified by its NUNIQ number
  ``uniq = 4 * 4**order + ipix`` and has ``nside = 2**order``.
* Angles are in degrees at the interface (RA/Dec, l/b, radii, separations); areas of credible
  regions are in square degrees; ``probdensity`` is per steradian, as in the FITS column.
* Distances follow the ansatz of Singer et al. (2016, ApJS 226, 10): in each pixel the
  conditional distance density is ``DISTNORM * r**2 * N(r; DISTMU, DISTSIGMA)`` for ``r > 0``.
  Pixels whose DISTMU/DISTSIGMA/DISTNORM are not finite (BAYESTAR writes ``inf``, 1, 0) carry
  no distance information. The sky-marginalised mean and std follow LVK's convention (see
  :func:`marginal_distance`): such pixels add nothing, and the others are not renormalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "DEFAULT_LEVELS",
    "DISTANCE_CONVENTION",
    "MAX_ORDER",
    "FlatMap",
    "angular_separation",
    "credible_areas",
    "credible_levels",
    "distance_moments",
    "flatten",
    "marginal_distance",
    "max_probability_position",
    "nside_to_order",
    "pixel_area",
    "pixel_centres",
    "probability_in_circle",
    "total_probability",
    "uniq_centres",
    "uniq_to_order_ipix",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Deepest HEALPix order whose NUNIQ numbers still fit in a signed 64-bit integer.
MAX_ORDER = 29
#: Credible levels reported by default (fractions of the total probability).
DEFAULT_LEVELS: tuple[float, ...] = (0.1, 0.5, 0.9)

_SQDEG_PER_SR = (180.0 / np.pi) ** 2
_BASE_PIXEL_SIZE_DEG = float(np.degrees(np.sqrt(np.pi / 3.0)))  # square root of an order-0 area
# HEALPix base-pixel layout: ring index (in units of nside) of each face's southernmost corner,
# and the longitude index (in units of pi/4) of its centre.
_JRLL = np.array([2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4], dtype=np.int64)
_JPLL = np.array([1, 3, 5, 7, 0, 2, 4, 6, 1, 3, 5, 7], dtype=np.int64)


# --- indexing -------------------------------------------------------------------------------
# astropy-healpix does the indexing wherever it is as fast as our numpy (at most ~1.2x our
# time; bench/healpix.py prints both on real LVK maps, CPU medians quoted here): the NUNIQ
# split. The rest stays ours, where astropy-healpix is slower: pixel centres (healpix_to_lonlat
# takes 1.7-1.9x our time on real multi-order maps and 1.4-1.6x for all of nside 64,
# skymap.csv's default, though 0.8-0.9x at nside 256; its bare C ufunc 1.2-1.3x),
# nside_to_order (3.4-3.8x) and pixel_area (4.1-4.4x). tests/healpix_reference.py keeps the
# old split; tests check the answers are the same on real maps. Importing astropy_healpix brings
# astropy.coordinates: about 0.5 s once per process, which the gw-alert summary's Sun and Moon
# pay anyway.


def uniq_to_order_ipix(uniq: ArrayLike) -> tuple[IntArray, IntArray]:
    """Split NUNIQ numbers into (order, nested pixel index) arrays."""
    numbers = np.asarray(uniq, dtype=np.int64)
    # astropy-healpix marks numbers below 4 with -1 and does not check the top: refuse both.
    if numbers.size and (int(numbers.min()) < 4 or int(numbers.max()) >= 16 << (2 * MAX_ORDER)):
        raise ValueError(f"NUNIQ numbers must lie in [4, 2**62) (orders 0..{MAX_ORDER})")
    # Imported here: astropy_healpix brings astropy.coordinates, which a process that never
    # splits a sky map should not pay for (see skymap.py); later calls find it in sys.modules.
    from astropy_healpix import uniq_to_level_ipix

    order, ipix = uniq_to_level_ipix(numbers)  # an exact integer bit scan: 0.4-0.5x our time
    return order.astype(np.int64, copy=False), ipix.astype(np.int64, copy=False)


def nside_to_order(nside: int) -> int:
    """HEALPix order of a power-of-two ``nside``; ValueError otherwise."""
    # Plain integers: astropy-healpix's nside_to_level (numpy arrays) takes 3.4-3.8x as long.
    order = int(nside).bit_length() - 1
    if nside < 1 or nside != 1 << order or order > MAX_ORDER:
        raise ValueError(f"nside must be a power of two between 1 and 2**{MAX_ORDER}: {nside}")
    return order


def pixel_area(order: ArrayLike) -> FloatArray:
    """Area in steradians of one pixel at each HEALPix ``order``."""
    # ldexp scales by exact powers of two, so 4 children have exactly their parent's area;
    # astropy-healpix's nside_to_pixel_area makes a Quantity and takes 4.1-4.4x as long.
    return np.ldexp(np.pi / 3.0, -2 * np.asarray(order, dtype=np.int64))


def _compact_bits(v: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """Gather the even-numbered bits of ``v`` into its low half (Morton de-interleave)."""
    v = v & np.uint64(0x5555555555555555)
    for shift, mask in (
        (1, 0x3333333333333333),
        (2, 0x0F0F0F0F0F0F0F0F),
        (4, 0x00FF00FF00FF00FF),
        (8, 0x0000FFFF0000FFFF),
        (16, 0x00000000FFFFFFFF),
    ):
        v = (v | (v >> np.uint64(shift))) & np.uint64(mask)
    return v


def _nest_to_radec(order: IntArray, ipix: IntArray) -> tuple[FloatArray, FloatArray]:
    """Centres (RA, Dec in degrees) of nested pixels; ``order`` may vary per pixel.

    This is the reference HEALPix ``pix2loc`` for the pixel centre: nested index -> (x, y,
    face) -> ring number and position in the ring -> (z, phi). Kept rather than astropy-healpix's
    ``healpix_to_lonlat``, which takes 1.7-1.9x as long on real multi-order maps (bench/healpix.py);
    the two agree to 1e-13 deg (tests/test_healpix.py).
    """
    nside = np.int64(1) << order
    face = ipix >> (2 * order)
    inner = (ipix & ((nside * nside) - 1)).astype(np.uint64)
    x = _compact_bits(inner).astype(np.int64)
    y = _compact_bits(inner >> np.uint64(1)).astype(np.int64)

    jr = _JRLL[face] * nside - x - y - 1  # ring number counted from the north pole, 1..4nside-1
    north, south = jr < nside, jr > 3 * nside
    nr = np.where(north, jr, np.where(south, 4 * nside - jr, nside))  # pixels per quarter-ring
    nside_f = nside.astype(np.float64)
    # In the polar caps keep tmp = 1 - |z| explicitly: cos(dec) from it stays accurate at the pole.
    tmp = nr.astype(np.float64) ** 2 / (3.0 * nside_f**2)
    z_eq = (2 * nside - jr) * (2.0 / 3.0) / nside_f
    z = np.where(north, 1.0 - tmp, np.where(south, tmp - 1.0, z_eq))
    cos_dec = np.where(north | south, np.sqrt(tmp * (2.0 - tmp)), np.sqrt((1.0 - z) * (1.0 + z)))

    k = np.mod(_JPLL[face] * nr + x - y, 8 * nr)
    ra = k * (45.0 / nr)  # phi = k * pi / (4 nr), in degrees
    return ra, np.degrees(np.arctan2(z, cos_dec))


def pixel_centres(nside: int, ipix: ArrayLike | None = None) -> tuple[FloatArray, FloatArray]:
    """RA and Dec (degrees) of the centres of NESTED pixels at ``nside`` (all pixels if None)."""
    order = nside_to_order(nside)
    npix = 12 << (2 * order)
    idx = np.arange(npix, dtype=np.int64) if ipix is None else np.asarray(ipix, dtype=np.int64)
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= npix):
        raise ValueError(f"pixel indices must lie in [0, {npix}) at nside {nside}")
    # A 0-d order broadcasts: shifting by a scalar is about twice as fast as by an array.
    return _nest_to_radec(np.asarray(order, dtype=np.int64), idx)


def uniq_centres(uniq: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """RA and Dec (degrees) of the centres of multi-order pixels."""
    return _nest_to_radec(*uniq_to_order_ipix(uniq))


# --- sphere geometry ------------------------------------------------------------------------


def angular_separation(
    ra1: ArrayLike, dec1: ArrayLike, ra2: ArrayLike, dec2: ArrayLike
) -> FloatArray:
    """Great-circle distance in degrees (Vincenty form: accurate at every angle)."""
    a1, d1, a2, d2 = (np.radians(v) for v in (ra1, dec1, ra2, dec2))
    dra = a2 - a1
    num1 = np.cos(d2) * np.sin(dra)
    num2 = np.cos(d1) * np.sin(d2) - np.sin(d1) * np.cos(d2) * np.cos(dra)
    den = np.sin(d1) * np.sin(d2) + np.cos(d1) * np.cos(d2) * np.cos(dra)
    separation: FloatArray = np.degrees(np.arctan2(np.hypot(num1, num2), den))
    return separation


# --- probability ----------------------------------------------------------------------------


def _probabilities(uniq: ArrayLike, probdensity: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Per-pixel (probability, area in sr) of a multi-order map."""
    area = pixel_area(uniq_to_order_ipix(uniq)[0])
    return np.asarray(probdensity, dtype=np.float64) * area, area


def total_probability(uniq: ArrayLike, probdensity: ArrayLike) -> float:
    """Sum over pixels of density x pixel area (1 for a normalised map)."""
    return float(_probabilities(uniq, probdensity)[0].sum())


def _sorted_cumulative(uniq: ArrayLike, probdensity: ArrayLike) -> tuple[IntArray, FloatArray]:
    """Pixel order by descending density, and cumulative probability as a fraction of total."""
    prob, _ = _probabilities(uniq, probdensity)
    # Sort by density, not probability: the credible region is the set of highest *density*.
    rank = np.argsort(-np.asarray(probdensity, dtype=np.float64), kind="stable")
    cum = np.cumsum(prob[rank])
    return rank.astype(np.int64), cum / cum[-1]


def credible_areas(
    uniq: ArrayLike, probdensity: ArrayLike, levels: Sequence[float] = DEFAULT_LEVELS
) -> FloatArray:
    """Areas (deg^2) of the smallest highest-density regions holding each credible level.

    The region for level p is the densest pixels taken in order up to and *including* the first
    one at which the cumulative probability reaches p (levels are fractions of the map's total
    probability). Whole pixels are counted, so the area is that of an actual set of pixels: the
    same set :func:`credible_levels` selects with ``level < p``.
    """
    _, area = _probabilities(uniq, probdensity)
    rank, cum = _sorted_cumulative(uniq, probdensity)
    last = np.minimum(np.searchsorted(cum, np.asarray(levels, dtype=np.float64)), cum.size - 1)
    return np.cumsum(area[rank])[last] * _SQDEG_PER_SR


def credible_levels(uniq: ArrayLike, probdensity: ArrayLike) -> FloatArray:
    """Per pixel, the probability of all denser pixels (a fraction of the total).

    A pixel belongs to the p credible region of :func:`credible_areas` exactly when its value is
    below p, so contours for plotting and the reported areas agree.
    """
    rank, cum = _sorted_cumulative(uniq, probdensity)
    levels = np.empty_like(cum)
    # The cumulative sum *before* each pixel: exactly 0 for the densest one, and exactly 1 for
    # pixels of zero density (they come after every other pixel).
    levels[rank[0]] = 0.0
    levels[rank[1:]] = cum[:-1]
    return levels


def max_probability_position(uniq: ArrayLike, probdensity: ArrayLike) -> tuple[float, float]:
    """(RA, Dec) in degrees of the centre of the pixel with the highest density."""
    best = int(np.argmax(np.asarray(probdensity, dtype=np.float64)))
    ra, dec = uniq_centres(np.asarray(uniq, dtype=np.int64)[best : best + 1])
    return float(ra[0]), float(dec[0])


def _max_pixel_radius(order: IntArray) -> FloatArray:
    """An upper bound (degrees) on the centre-to-corner distance of pixels at ``order``."""
    # Measured HEALPix maxima stay below 1.05 x sqrt(pixel area) at every order; 1.5 is a margin.
    return 1.5 * np.degrees(np.sqrt(pixel_area(order)))


def probability_in_circle(
    uniq: ArrayLike,
    probdensity: ArrayLike,
    ra: float,
    dec: float,
    radius: float,
    *,
    max_order: int | None = None,
) -> float:
    """Probability inside a cone (centre and radius in degrees).

    Pixels wholly inside count fully and pixels wholly outside not at all. Pixels crossing the
    edge are split into their four children (density copied) down to ``max_order`` (default:
    pixels about 1/16 of the radius across); there a pixel counts if its centre is inside. The
    error is thus confined to a thin ring of small pixels along the edge.
    """
    order, ipix = uniq_to_order_ipix(uniq)
    density = np.asarray(probdensity, dtype=np.float64)
    if max_order is None:
        size_ratio = 16.0 * _BASE_PIXEL_SIZE_DEG / max(radius, 1e-9)
        max_order = int(np.clip(np.ceil(np.log2(size_ratio)), 0, 20))
    inside = 0.0
    while order.size:
        sep = angular_separation(ra, dec, *_nest_to_radec(order, ipix))
        margin = _max_pixel_radius(order)
        whole = sep + margin <= radius
        edge = (np.abs(sep - radius) < margin) & ~whole
        final = edge & (order >= max_order)
        take = whole | (final & (sep <= radius))
        inside += float((density[take] * pixel_area(order[take])).sum())
        split = edge & ~final
        order = np.repeat(order[split] + 1, 4)
        ipix = (np.repeat(ipix[split], 4) << 2) + np.tile(np.arange(4, dtype=np.int64), split.sum())
        density = np.repeat(density[split], 4)
    return inside


# --- distance -------------------------------------------------------------------------------


def distance_moments(
    distmu: ArrayLike, distsigma: ArrayLike, distnorm: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Per-pixel conditional mean and standard deviation of distance (NaN without information).

    With I_k = integral over r > 0 of r**k N(r; mu, sigma), integration by parts gives
    I_{k+1} = mu I_k + k sigma**2 I_{k-1} for k >= 1 and I_1 = mu I_0 + sigma**2 N(0). DISTNORM
    is 1 / I_2, so the mean I_3 / I_2 and variance follow in closed form with no error
    function, through rho = I_1 / I_2 = (mu + sigma**4 N(0) DISTNORM) / (mu**2 + sigma**2).
    """
    mu = np.asarray(distmu, dtype=np.float64)
    sigma = np.asarray(distsigma, dtype=np.float64)
    norm = np.asarray(distnorm, dtype=np.float64)
    good = np.isfinite(mu) & np.isfinite(sigma) & np.isfinite(norm) & (sigma > 0) & (norm > 0)
    mu, sigma, norm = np.where(good, mu, 0.0), np.where(good, sigma, 1.0), np.where(good, norm, 1.0)
    # sigma**4 * N(0) * DISTNORM in logs: N(0) underflows and DISTNORM overflows for mu << 0.
    log_n0 = -0.5 * (mu / sigma) ** 2 - np.log(sigma * np.sqrt(2.0 * np.pi))
    tail = np.exp(4.0 * np.log(sigma) + log_n0 + np.log(norm))
    rho = (mu + tail) / (mu**2 + sigma**2)
    mean = mu + 2.0 * sigma**2 * rho
    # Var = I_4/I_2 - mean**2, expanded so that the large terms cancel algebraically.
    var = sigma**2 * (3.0 - 2.0 * mu * rho - 4.0 * sigma**2 * rho**2)
    std = np.sqrt(np.maximum(var, 0.0))
    return np.where(good, mean, np.nan), np.where(good, std, np.nan)


#: The convention of :func:`marginal_distance`, named in ``meta.yaml`` and the docs.
DISTANCE_CONVENTION = (
    "LVK marginal moments (ligo.skymap parameters_to_marginal_moments, as in the FITS header "
    "keys DISTMEAN/DISTSTD): pixels without distance count as zero weight, no renormalisation"
)


def _marginal_moments(
    weight: FloatArray, mean: FloatArray, std: FloatArray
) -> tuple[float, float] | None:
    """First two moments of sum(weight * pixel distribution), ``weight`` summing to 1.

    The informative weights may sum to W < 1: then E[r] = sum(w m) and
    Var = sum(w (s**2 + m**2)) - E[r]**2 = sum(w s**2) + sum(w (m - E[r])**2) + E[r]**2 (1 - W),
    written in the second form, which has no large-number cancellation.
    """
    good = np.isfinite(mean) & (weight > 0)
    w, m, s = weight[good], mean[good], std[good]
    if not w.size:
        return None
    first = float(np.sum(w * m))
    var = np.sum(w * s**2) + np.sum(w * (m - first) ** 2) + first**2 * (1.0 - w.sum())
    return first, float(np.sqrt(max(float(var), 0.0)))


def marginal_distance(
    uniq: ArrayLike,
    probdensity: ArrayLike,
    distmu: ArrayLike,
    distsigma: ArrayLike,
    distnorm: ArrayLike,
) -> tuple[float, float] | None:
    """Sky-marginalised distance mean and std (Mpc) by LVK's convention, or None without any
    pixel with distance information.

    As ligo.skymap's ``parameters_to_marginal_moments`` (which gives the FITS header's
    DISTMEAN/DISTSTD): each pixel weighs its share of the map's probability; pixels without
    distance are left out *without* renormalising the others, as if they sat at distance 0.
    """
    prob, _ = _probabilities(uniq, probdensity)
    total = prob.sum()
    return _marginal_moments(prob / total, *distance_moments(distmu, distsigma, distnorm))


# --- flattening -----------------------------------------------------------------------------


class FlatMap(NamedTuple):
    """A single-resolution map in NESTED ordering: row i is pixel i at ``nside``.

    ``prob`` is the probability in each pixel (not a density). ``dist_mean``/``dist_std`` are
    the conditional distance mean and std in each pixel (NaN where unknown), or None when the
    map has no distance columns. ``dist_mu``/``dist_sigma`` are the ansatz parameters DISTMU
    and DISTSIGMA: copied into finer pixels, probability-weighted means over merged ones (an
    approximation kept for gocart's CSV columns), and LVK's ``inf``/1 where unknown.
    """

    nside: int
    prob: FloatArray
    dist_mean: FloatArray | None
    dist_std: FloatArray | None
    dist_mu: FloatArray | None = None
    dist_sigma: FloatArray | None = None


def _contributions(
    order: IntArray, ipix: IntArray, target: int
) -> tuple[IntArray, IntArray, FloatArray]:
    """Map source pixels onto target pixels: (target index, source index, area share)."""
    shift = 2 * (target - order)
    coarse = np.flatnonzero(shift >= 0)
    fine = np.flatnonzero(shift < 0)
    counts = np.int64(1) << shift[coarse]
    # A coarse pixel covers 4**k consecutive nested indices starting at ipix << 2k.
    starts = np.repeat((ipix[coarse] << shift[coarse]) - (np.cumsum(counts) - counts), counts)
    dest = np.concatenate(
        [starts + np.arange(starts.size, dtype=np.int64), ipix[fine] >> -shift[fine]]
    )
    src = np.concatenate([np.repeat(coarse, counts), fine])
    share = np.concatenate([np.repeat(1.0 / counts, counts), np.ones(fine.size)])
    return dest, src.astype(np.int64), share


def _bincount(index: IntArray, weight: FloatArray, length: int) -> FloatArray:
    """Sum ``weight`` into ``length`` bins by ``index`` (float result, for the type checker)."""
    return np.bincount(index, weight, minlength=length).astype(np.float64, copy=False)


def flatten(
    uniq: ArrayLike,
    probdensity: ArrayLike,
    nside: int,
    *,
    distmu: ArrayLike | None = None,
    distsigma: ArrayLike | None = None,
    distnorm: ArrayLike | None = None,
) -> FlatMap:
    """Resample a multi-order map onto every pixel of ``nside`` (NESTED), conserving probability.

    A coarser source pixel is split into the target pixels it covers, each taking its density
    (so an equal share of its probability) and its distance moments. Finer source pixels are
    merged into their target pixel: probabilities add, and distance moments combine as a
    probability-weighted mixture (mean of means; variance = mean of variances plus spread of the
    means). Target pixels that the map does not cover get zero probability.
    """
    target = nside_to_order(nside)
    order, ipix = uniq_to_order_ipix(uniq)
    prob, _ = _probabilities(uniq, probdensity)
    dest, src, share = _contributions(order, ipix, target)
    npix = 12 << (2 * target)
    weight = prob[src] * share
    flat_prob = _bincount(dest, weight, npix)
    if distmu is None or distsigma is None or distnorm is None:
        return FlatMap(nside, flat_prob, None, None)
    mean, std = distance_moments(distmu, distsigma, distnorm)
    good = np.isfinite(mean)
    w = np.where(good[src], weight, 0.0)
    m, v = np.where(good, mean, 0.0)[src], np.where(good, std**2, 0.0)[src]
    with np.errstate(invalid="ignore", divide="ignore"):
        w_sum = _bincount(dest, w, npix)
        flat_mean = _bincount(dest, w * m, npix) / w_sum
        flat_var = _bincount(dest, w * (v + (m - flat_mean[dest]) ** 2), npix) / w_sum
    mu, sigma = (
        np.where(good, np.asarray(a, dtype=np.float64), 0.0)[src] for a in (distmu, distsigma)
    )
    known = w_sum > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        flat_mu = np.where(known, _bincount(dest, w * mu, npix) / w_sum, np.inf)
        flat_sigma = np.where(known, _bincount(dest, w * sigma, npix) / w_sum, 1.0)
    return FlatMap(nside, flat_prob, flat_mean, np.sqrt(flat_var), flat_mu, flat_sigma)
