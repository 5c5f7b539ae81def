"""Sky-map maths on real LVK maps, checked against astropy/astropy-healpix and brute force."""

from __future__ import annotations

import base64
import functools
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from astropy_healpix import HEALPix, uniq_to_level_ipix
from hypothesis import given
from hypothesis import strategies as st

from tracerules.products.sky import healpix as hp
from tracerules.products.sky.galactic import equatorial_to_galactic
from tracerules.products.sky.skymap import (
    SkyMap,
    SkyMapError,
    decode_skymap,
    flatten_skymap,
    read_skymap,
    skymap_from_alert,
    summarize,
    sun_moon,
)

DATA = Path(__file__).parent / "data" / "skymaps"
CBC_FILES = ["bayestar.multiorder.fits", "bayestar.multiorder.02.fits"]
CBC_ALERT = "igwn_gwalert_preliminary.json"
BURST_ALERT = "S230528ay-preliminary.json"
SQDEG = (180.0 / np.pi) ** 2


def _alert(name: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((DATA / name).read_text())
    return loaded


@functools.cache
def _load(name: str) -> SkyMap:
    """A test map by file name; JSON files are alerts with the map embedded."""
    if name.endswith(".json"):
        skymap = skymap_from_alert(_alert(name))
        assert skymap is not None
        return skymap
    return read_skymap(DATA / name)


@pytest.fixture(scope="module")
def cbc_alert_map() -> SkyMap:
    return _load(CBC_ALERT)


@pytest.fixture(scope="module")
def burst_map() -> SkyMap:
    return _load(BURST_ALERT)


@pytest.fixture(params=[*CBC_FILES, CBC_ALERT])
def cbc_map(request: pytest.FixtureRequest) -> SkyMap:
    """Every map with distance columns: two FITS files and the alert's embedded map."""
    return _load(request.param)


@pytest.fixture(params=[*CBC_FILES, CBC_ALERT, BURST_ALERT])
def any_map(request: pytest.FixtureRequest) -> SkyMap:
    """Every test map, with and without distance."""
    return _load(request.param)


@pytest.fixture(scope="module")
def centres_512() -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres at nside 512 from astropy-healpix: an independent reference."""
    lon, lat = HEALPix(512, order="nested").healpix_to_lonlat(np.arange(12 * 512**2))
    return lon.deg, lat.deg


# --- indexing and coordinates ---------------------------------------------------------------


@given(st.integers(0, hp.MAX_ORDER), st.integers(0, 2**62))
def test_uniq_round_trip_at_every_order(order: int, raw: int) -> None:
    ipix = raw % (12 * 4**order)
    got_order, got_ipix = hp.uniq_to_order_ipix([4 * 4**order + ipix])
    assert (int(got_order[0]), int(got_ipix[0])) == (order, ipix)


def test_uniq_decoding_matches_astropy_healpix(any_map: SkyMap) -> None:
    order, ipix = hp.uniq_to_order_ipix(any_map.uniq)
    level, ref_ipix = uniq_to_level_ipix(any_map.uniq)
    np.testing.assert_array_equal(order, level)
    np.testing.assert_array_equal(ipix, ref_ipix)


def test_invalid_indices_are_rejected() -> None:
    for bad in ([3, 4], [2**62]):
        with pytest.raises(ValueError, match="NUNIQ"):
            hp.uniq_to_order_ipix(bad)
    with pytest.raises(ValueError, match="pixel indices"):
        hp.pixel_centres(4, [192])
    for nside in (0, 3, 48, 2**30):
        with pytest.raises(ValueError, match="power of two"):
            hp.pixel_centres(nside, [0])


def test_pixel_areas_tile_the_sphere() -> None:
    for order in range(hp.MAX_ORDER + 1):
        assert float(hp.pixel_area(order)) * 12 * 4**order == pytest.approx(4 * np.pi, rel=1e-15)


def _sample(npix: int) -> np.ndarray:
    """Every pixel of small maps; for big ones, ~0.5M pixels plus each face's first and last."""
    if npix <= 12 * 256**2:
        return np.arange(npix)
    per_face = npix // 12
    edges = np.concatenate([np.arange(12) * per_face, np.arange(1, 13) * per_face - 1])
    return np.union1d(np.arange(0, npix, npix // 2**19 + 1), edges)


@pytest.mark.parametrize("nside", [2**k for k in range(11)])
def test_pixel_centres_match_astropy_healpix(nside: int) -> None:
    ipix = _sample(12 * nside**2)
    ra, dec = hp.pixel_centres(nside, ipix)
    lon, lat = HEALPix(nside, order="nested").healpix_to_lonlat(ipix)
    d_ra = (ra - lon.deg + 180.0) % 360.0 - 180.0
    assert np.abs(d_ra).max() < 1e-9
    assert np.abs(dec - lat.deg).max() < 1e-9
    if ipix.size == 12 * nside**2:  # the default covers the whole sky in order
        np.testing.assert_array_equal(hp.pixel_centres(nside)[1], dec)


def test_uniq_centres_match_astropy_healpix(cbc_alert_map: SkyMap) -> None:
    ra, dec = hp.uniq_centres(cbc_alert_map.uniq)
    level, ipix = uniq_to_level_ipix(cbc_alert_map.uniq)
    for lev in np.unique(level):
        sel = level == lev
        lon, lat = HEALPix(2**lev, order="nested").healpix_to_lonlat(ipix[sel])
        assert np.abs((ra[sel] - lon.deg + 180.0) % 360.0 - 180.0).max() < 1e-9
        assert np.abs(dec[sel] - lat.deg).max() < 1e-9


def test_angular_separation_matches_astropy_at_all_scales() -> None:
    from astropy.coordinates import angular_separation

    rng = np.random.default_rng(1)
    ra1, dec1 = rng.uniform(0, 360, 200), np.degrees(np.arcsin(rng.uniform(-1, 1, 200)))
    for offset in (1e-9, 1e-6, 1e-3, 1.0, 90.0, 179.999999):
        ra2, dec2 = ra1 + offset, -dec1 if offset > 179 else dec1
        got = hp.angular_separation(ra1, dec1, ra2, dec2)
        ref = np.degrees(angular_separation(*np.radians([ra1, dec1, ra2, dec2])))
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-15)
    assert float(hp.angular_separation(10.0, 20.0, 10.0, 20.0 + 1e-10)) == pytest.approx(1e-10)
    assert float(hp.angular_separation(0.0, 90.0, 123.0, -90.0)) == pytest.approx(180.0)


# --- probability ----------------------------------------------------------------------------


def test_total_probability_is_one(any_map: SkyMap) -> None:
    assert hp.total_probability(any_map.uniq, any_map.probdensity) == pytest.approx(1, abs=1e-6)


def test_credible_areas_are_ordered_and_positive(any_map: SkyMap) -> None:
    a10, a50, a90 = hp.credible_areas(any_map.uniq, any_map.probdensity)
    assert 0 < a10 < a50 < a90 < 4 * np.pi * SQDEG


def test_credible_area_brackets_the_exact_value(any_map: SkyMap) -> None:
    # Splitting a pixel keeps its density, so on an infinitely fine map the 90% region is the
    # same density-sorted list with the boundary pixel taken fractionally.
    prob = any_map.probdensity * hp.pixel_area(uniq_to_level_ipix(any_map.uniq)[0])
    rank = np.argsort(any_map.probdensity)[::-1]
    cum, area = np.cumsum(prob[rank]), prob[rank] / any_map.probdensity[rank]
    k = int(np.argmax(cum >= 0.9 * cum[-1]))
    exact = (area[:k].sum() + area[k] * (0.9 * cum[-1] - cum[k - 1]) / prob[rank][k]) * SQDEG
    got = hp.credible_areas(any_map.uniq, any_map.probdensity, [0.9])[0]
    assert exact <= got <= exact + area[k] * SQDEG


def test_credible_area_matches_a_fine_flat_map(cbc_map: SkyMap) -> None:
    flat = flatten_skymap(cbc_map, 512).prob
    enough = np.searchsorted(np.cumsum(np.sort(flat)[::-1]), 0.9 * flat.sum()) + 1
    flat_area = enough * 4 * np.pi / flat.size * SQDEG
    got = hp.credible_areas(cbc_map.uniq, cbc_map.probdensity, [0.9])[0]
    assert got == pytest.approx(flat_area, rel=0.02)


def test_credible_levels_select_the_credible_area(cbc_map: SkyMap) -> None:
    levels = hp.credible_levels(cbc_map.uniq, cbc_map.probdensity)
    area = hp.pixel_area(hp.uniq_to_order_ipix(cbc_map.uniq)[0]) * SQDEG
    for p, expected in zip(
        hp.DEFAULT_LEVELS, hp.credible_areas(cbc_map.uniq, cbc_map.probdensity), strict=True
    ):
        assert area[levels < p].sum() == pytest.approx(expected, rel=1e-12)


def test_max_probability_position_is_the_densest_pixel_centre(any_map: SkyMap) -> None:
    best = int(np.argmax(any_map.probdensity))
    level, ipix = uniq_to_level_ipix(any_map.uniq[best])
    lon, lat = HEALPix(2**level, order="nested").healpix_to_lonlat(ipix)
    ra, dec = hp.max_probability_position(any_map.uniq, any_map.probdensity)
    assert (ra, dec) == pytest.approx((lon.deg, lat.deg), abs=1e-9)


@pytest.mark.parametrize("name", CBC_FILES)
def test_probability_in_circle(name: str, centres_512: tuple[np.ndarray, np.ndarray]) -> None:
    cbc_map = _load(name)
    ra, dec = hp.max_probability_position(cbc_map.uniq, cbc_map.probdensity)
    whole_sky = hp.probability_in_circle(cbc_map.uniq, cbc_map.probdensity, ra, dec, 180.0)
    assert whole_sky == pytest.approx(1.0, abs=1e-9)
    flat = flatten_skymap(cbc_map, 512).prob
    sep = hp.angular_separation(ra, dec, *centres_512)
    previous = 0.0
    for radius in (3.0, 10.0, 30.0):
        got = hp.probability_in_circle(cbc_map.uniq, cbc_map.probdensity, ra, dec, radius)
        assert got == pytest.approx(flat[sep <= radius].sum(), rel=0.01, abs=1e-4)
        assert got > previous
        previous = got


# --- flattening -----------------------------------------------------------------------------


@pytest.mark.parametrize("nside", [16, 32, 64, 128, 256, 512])
def test_flatten_conserves_probability(any_map: SkyMap, nside: int) -> None:
    flat = flatten_skymap(any_map, nside)
    assert flat.prob.shape == (12 * nside**2,)
    assert flat.prob.sum() == pytest.approx(
        hp.total_probability(any_map.uniq, any_map.probdensity), rel=1e-12
    )
    assert (flat.prob >= 0).all()


def test_flatten_copies_density_into_finer_pixels() -> None:
    skymap = read_skymap(DATA / "bayestar.multiorder.02.fits")  # orders 4..9
    flat = flatten_skymap(skymap, 512)
    level, ipix = uniq_to_level_ipix(skymap.uniq)
    density = np.full(flat.prob.size, np.nan)
    for lev in np.unique(level):  # paint every order-9 pixel with its covering pixel's density
        shift, sel = 2 * (9 - lev), level == lev
        children = (ipix[sel] << shift)[:, None] + np.arange(1 << shift)[None, :]
        density[children] = skymap.probdensity[sel][:, None]
    np.testing.assert_allclose(flat.prob / hp.pixel_area(9), density, rtol=1e-12)


def _global_distance(
    prob: np.ndarray, mean: np.ndarray, std: np.ndarray, total: float
) -> tuple[float, float]:
    """LVK's marginal moments of a flat map: weights are shares of ``total``, not renormalised."""
    good = np.isfinite(mean) & (prob > 0)
    w, m, s = prob[good] / total, mean[good], std[good]
    mu = float(np.sum(w * m))
    return mu, float(np.sqrt(np.sum(w * (s**2 + m**2)) - mu**2))


@pytest.mark.parametrize("nside", [16, 64, 256, 512])
def test_flattened_distance_agrees_with_multiorder(cbc_map: SkyMap, nside: int) -> None:
    assert cbc_map.distmu is not None
    assert cbc_map.distsigma is not None
    assert cbc_map.distnorm is not None
    expected = hp.marginal_distance(
        cbc_map.uniq, cbc_map.probdensity, cbc_map.distmu, cbc_map.distsigma, cbc_map.distnorm
    )
    flat = flatten_skymap(cbc_map, nside)
    assert flat.dist_mean is not None
    assert flat.dist_std is not None
    total = flat.prob.sum()
    assert _global_distance(flat.prob, flat.dist_mean, flat.dist_std, total) == pytest.approx(
        expected, rel=1e-3
    )
    # Exactly, once the weights are the probability that carries distance information (a merged
    # pixel's distance comes only from its informative children).
    informative = np.where(np.isfinite(cbc_map.distmu), cbc_map.probdensity, 0.0)
    weights = hp.flatten(cbc_map.uniq, informative, nside).prob
    assert _global_distance(weights, flat.dist_mean, flat.dist_std, total) == pytest.approx(
        expected, rel=1e-12
    )


# --- distance -------------------------------------------------------------------------------


def _brute_force_moments(
    mu: np.ndarray, sigma: np.ndarray, norm: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integrate r**k r**2 N(r; mu, sigma) over r > 0 on a fine grid, pixel by pixel."""
    lo = np.maximum(mu - 12 * sigma, 0.0)
    # For mu << 0 the density is ~ r**2 exp(-|mu| r / sigma**2): squeeze the grid to that scale.
    hi = np.maximum(mu + 12 * sigma, 40 * sigma / (1 + np.abs(mu / sigma)))
    r = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, 801)[None, :]
    pdf = r**2 * np.exp(-0.5 * ((r - mu[:, None]) / sigma[:, None]) ** 2)
    pdf /= sigma[:, None] * np.sqrt(2 * np.pi)
    i2 = np.trapezoid(pdf, r, axis=1)
    mean = np.trapezoid(r * pdf, r, axis=1) / i2
    second = np.trapezoid(r**2 * pdf, r, axis=1) / i2
    return mean, np.sqrt(second - mean**2), norm * i2


def test_distance_moments_match_brute_force(cbc_map: SkyMap) -> None:
    mu, sigma, norm = cbc_map.distmu, cbc_map.distsigma, cbc_map.distnorm
    assert mu is not None
    assert sigma is not None
    assert norm is not None
    prob = cbc_map.probdensity * hp.pixel_area(hp.uniq_to_order_ipix(cbc_map.uniq)[0])
    good = np.flatnonzero(np.isfinite(mu))
    mean, std = hp.distance_moments(mu, sigma, norm)
    assert np.isnan(mean[~np.isfinite(mu)]).all()

    brute_mean, brute_std = np.empty(mu.size), np.empty(mu.size)
    for chunk in np.array_split(good, max(1, good.size // 1000)):
        brute_mean[chunk], brute_std[chunk], normalised = _brute_force_moments(
            mu[chunk], sigma[chunk], norm[chunk]
        )
        # The closed form leans on DISTNORM = 1 / integral(r**2 N): check that premise too.
        np.testing.assert_allclose(normalised, 1.0, rtol=1e-5)
    np.testing.assert_allclose(mean[good], brute_mean[good], rtol=1e-5)
    np.testing.assert_allclose(std[good], brute_std[good], rtol=1e-4)

    # LVK's marginal moments (ligo.skymap's parameters_to_marginal_moments): every pixel weighs
    # its share of the whole map; pixels without distance add nothing and nothing is
    # renormalised over the informative ones.
    w = prob[good] / prob.sum()
    brute_marginal = float(np.sum(w * brute_mean[good]))
    brute_second = np.sum(w * (brute_std[good] ** 2 + brute_mean[good] ** 2))
    brute_sd = float(np.sqrt(brute_second - brute_marginal**2))
    marginal = hp.marginal_distance(cbc_map.uniq, cbc_map.probdensity, mu, sigma, norm)
    assert marginal == pytest.approx((brute_marginal, brute_sd), rel=1e-5)


def test_marginal_distance_matches_header(cbc_map: SkyMap) -> None:
    summary = summarize(cbc_map, ephemeris=False)
    # ligo.skymap 2.x writes DISTMEAN from this very multi-order formula. Older versions
    # computed it on another (flattened) map, so agree to a few parts in 1e4 only.
    exact = str(cbc_map.header.get("VCSVERS", "")).startswith("ligo.skymap 2")
    rel = 1e-9 if exact else 1e-3
    assert summary.distance_mean == pytest.approx(cbc_map.header["DISTMEAN"], rel=rel)
    assert summary.distance_std == pytest.approx(cbc_map.header["DISTSTD"], rel=rel)


def test_uninformative_pixels_are_ignored() -> None:
    mean, std = hp.distance_moments([np.inf, np.nan, 100.0], [1.0, 1.0, 10.0], [0.0, 0.0, 1e-4])
    assert np.isnan(mean[:2]).all()
    assert np.isnan(std[:2]).all()
    assert np.isfinite(mean[2])
    assert hp.marginal_distance([4, 5], [1.0, 1.0], [np.inf] * 2, [1.0] * 2, [0.0] * 2) is None


def test_pixels_without_distance_are_not_renormalised_away() -> None:
    # Two equal order-0 pixels, one without distance: LVK's convention gives it weight 1/2 at
    # distance 0 (mean halved, spread widened), instead of dropping it and renormalising.
    mu, sigma = np.array([100.0, np.inf]), np.array([10.0, 1.0])
    norm = np.array([1.0, 0.0])
    norm[0] = 1.0 / (mu[0] ** 2 + sigma[0] ** 2)  # DISTNORM when the tail below 0 is negligible
    mean, std = hp.distance_moments(mu, sigma, norm)
    density = np.full(2, 3.0 / np.pi)
    got = hp.marginal_distance([4, 5], density, mu, sigma, norm)
    assert got is not None
    assert got[0] == pytest.approx(0.5 * mean[0], rel=1e-12)
    assert got[1] == pytest.approx(np.sqrt(0.5 * (std[0] ** 2 + mean[0] ** 2) - got[0] ** 2))


def test_marginal_distance_follows_lvk_on_a_map_with_uninformative_pixels() -> None:
    # bayestar.multiorder.02.fits: 992 pixels without distance. Renormalising over the others
    # (the former rule) moves the mean by 1.1e-4 and the std by 1.0e-3 relative.
    skymap = _load("bayestar.multiorder.02.fits")
    assert skymap.distmu is not None and skymap.distsigma is not None
    assert skymap.distnorm is not None
    prob = skymap.probdensity * hp.pixel_area(hp.uniq_to_order_ipix(skymap.uniq)[0])
    mean, std = hp.distance_moments(skymap.distmu, skymap.distsigma, skymap.distnorm)
    good = np.isfinite(mean)
    w = prob / prob.sum()
    lvk_mean = np.sum(w[good] * mean[good])
    lvk_std = np.sqrt(np.sum(w[good] * (std[good] ** 2 + mean[good] ** 2)) - lvk_mean**2)
    got = hp.marginal_distance(
        skymap.uniq, skymap.probdensity, skymap.distmu, skymap.distsigma, skymap.distnorm
    )
    assert got == pytest.approx((lvk_mean, lvk_std), rel=1e-10)
    renormalised = np.sum(w[good] * mean[good]) / w[good].sum()
    assert abs(got[0] / renormalised - 1) > 5e-5  # the test tells the two conventions apart


# --- decoding and summaries -----------------------------------------------------------------


def test_decode_accepts_base64_raw_and_gzip(cbc_alert_map: SkyMap) -> None:
    payload = _alert(CBC_ALERT)["event"]
    assert isinstance(payload, dict)
    text = payload["skymap"]
    raw = base64.b64decode(text)
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    for variant in (raw, gzip.compress(raw), text.encode(), wrapped):
        decoded = decode_skymap(variant)
        np.testing.assert_array_equal(decoded.uniq, cbc_alert_map.uniq)
        np.testing.assert_array_equal(decoded.probdensity, cbc_alert_map.probdensity)
    with pytest.raises(SkyMapError):  # valid base64 of a truncated FITS file
        decode_skymap(base64.b64encode(raw[:5760]))
    with pytest.raises(SkyMapError):  # a truncated gzip stream
        decode_skymap(gzip.compress(raw)[:1000])


def test_decoded_map_is_native_read_only_and_plain(cbc_alert_map: SkyMap) -> None:
    assert cbc_alert_map.uniq.dtype == np.dtype(np.int64)
    assert cbc_alert_map.probdensity.dtype.isnative
    with pytest.raises(ValueError, match="read-only"):
        cbc_alert_map.probdensity[0] = 0.0
    header = cbc_alert_map.header
    assert header["ORDERING"] == "NUNIQ"
    assert header["MOCORDER"] == 11
    assert all(isinstance(v, str | int | float | bool) or v is None for v in header.values())
    assert cbc_alert_map.has_distance


@pytest.mark.parametrize(
    "payload", ["U0lNUExFICA9ICAgICAgICAgICAgICAgICAgICBUIC8gY29uZm...", b"SIMPLE = nonsense", ""]
)
def test_decode_rejects_what_is_not_a_sky_map(payload: str | bytes) -> None:
    with pytest.raises(SkyMapError):
        decode_skymap(payload)
    with pytest.raises(ValueError):  # SkyMapError is a ValueError for generic callers
        decode_skymap(payload)


def test_retraction_has_no_sky_map() -> None:
    assert skymap_from_alert(_alert("igwn_gwalert_retraction.json")) is None
    assert skymap_from_alert({"event": {"skymap": None}}) is None


def test_burst_map_has_no_distance(burst_map: SkyMap) -> None:
    assert not burst_map.has_distance
    assert burst_map.distmu is None
    assert np.any(np.diff(burst_map.uniq) < 0)  # rows arrive unsorted; nothing may assume order
    summary = summarize(burst_map, ephemeris=False)
    assert summary.distance_mean is None
    assert summary.distance_std is None
    assert summary.sun_ra is None
    flat = flatten_skymap(burst_map, 64)
    assert flat.dist_mean is None
    assert flat.prob.sum() == pytest.approx(1.0, abs=1e-6)


def test_summary_of_a_cbc_alert(cbc_alert_map: SkyMap) -> None:
    summary = summarize(cbc_alert_map)
    assert summary.pixel_count == 19200
    assert summary.orders == tuple(range(4, 12))
    assert summary.total_probability == pytest.approx(1.0, abs=1e-6)
    assert 0 < summary.area10 < summary.area50 < summary.area90
    assert (summary.max_l, summary.max_b) == pytest.approx(
        tuple(float(x) for x in equatorial_to_galactic(summary.max_ra, summary.max_dec))
    )
    assert summary.time == cbc_alert_map.header["DATE-OBS"]
    assert summary.sun_ra is not None
    assert summary.sun_dec is not None
    assert summary.sun_separation == pytest.approx(
        float(
            hp.angular_separation(summary.max_ra, summary.max_dec, summary.sun_ra, summary.sun_dec)
        )
    )
    assert summary.moon_separation is not None
    assert 0 <= summary.moon_separation <= 180


def _ecliptic_latitude(ra: float, dec: float) -> float:
    """Latitude above the J2000 ecliptic (obliquity 23.4393 deg) of ICRS-aligned RA/Dec."""
    eps, a, d = np.radians([23.4393, ra, dec])
    return float(
        np.degrees(np.arcsin(np.sin(d) * np.cos(eps) - np.cos(d) * np.sin(eps) * np.sin(a)))
    )


def test_sun_and_moon_at_the_march_equinox() -> None:
    # GCRS axes are those of ICRS (J2000), so at the 2023 equinox the Sun sits on the ecliptic
    # about 0.32 deg (23 years of precession) short of the J2000 vernal point.
    sun_ra, sun_dec, moon_ra, moon_dec = sun_moon("2023-03-20T21:24:00")
    assert abs(_ecliptic_latitude(sun_ra, sun_dec)) < 0.01
    assert float(hp.angular_separation(sun_ra, sun_dec, 0.0, 0.0)) == pytest.approx(0.32, abs=0.02)
    assert abs(_ecliptic_latitude(moon_ra, moon_dec)) < 5.4  # the Moon's orbit is tilted 5.1 deg
    later = sun_moon(datetime(2023, 3, 20, 22, 24, tzinfo=UTC))  # it moves ~0.5 deg an hour
    assert 0.3 < float(hp.angular_separation(moon_ra, moon_dec, later[2], later[3])) < 0.8
