"""Drawing geometry: HEALPix look-ups against astropy-healpix, the projection, the curves."""

from __future__ import annotations

import numpy as np
import pytest
from astropy_healpix import HEALPix

from tests.test_healpix import CBC_ALERT, _load
from tracerules.products.sky import healpix as hp
from tracerules.products.sky import sky_geometry as geo
from tracerules.products.sky.galactic import equatorial_to_galactic


def _random_sky(n: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Poles, the RA wrap and the polar-cap boundary (Dec 41.81 deg). Exact pixel corners such
    # as (180, 0) are left out: there a last-bit difference in pi picks either neighbour.
    ra = np.concatenate([rng.uniform(0, 360, n), [0.0, 90.0, 180.001, 359.999999, 45.0, 0.0]])
    dec = np.concatenate(
        [np.degrees(np.arcsin(rng.uniform(-1, 1, n))), [90.0, -90.0, 0.0, 41.81, -41.81, 1e-12]]
    )
    return ra, dec


@pytest.mark.parametrize("nside", [1, 2, 8, 64, 512, 4096, 2**20, 2**29])
def test_lonlat_to_nest_matches_astropy_healpix(nside: int) -> None:
    import astropy.units as u

    ra, dec = _random_sky(20_000)
    expected = HEALPix(nside, order="nested").lonlat_to_healpix(ra * u.deg, dec * u.deg)
    np.testing.assert_array_equal(geo.lonlat_to_nest(nside, ra, dec), expected)


@pytest.mark.parametrize("nside", [1, 16, 256])
def test_pixel_centres_map_back_to_their_pixel(nside: int) -> None:
    ra, dec = hp.pixel_centres(nside)
    np.testing.assert_array_equal(geo.lonlat_to_nest(nside, ra, dec), np.arange(ra.size))


def test_multiorder_lookup_finds_the_pixel_containing_each_point() -> None:
    skymap = _load(CBC_ALERT)
    ra, dec = _random_sky(50_000)
    rows = geo.multiorder_lookup(skymap.uniq, ra, dec)
    assert (rows >= 0).all()  # an LVK map tiles the whole sky
    order, ipix = hp.uniq_to_order_ipix(skymap.uniq[rows])
    for level in np.unique(order):
        sel = order == level
        found = geo.lonlat_to_nest(1 << int(level), ra[sel], dec[sel])
        np.testing.assert_array_equal(found, ipix[sel])


def test_multiorder_lookup_reports_uncovered_sky() -> None:
    # Two order-1 pixels of face 0 only: the rest of the sky is not covered.
    uniq = np.array([4 * 4**1 + 0, 4 * 4**1 + 3])
    ra, dec = hp.pixel_centres(2, np.array([0, 3, 4, 40]))
    np.testing.assert_array_equal(geo.multiorder_lookup(uniq, ra, dec), [0, 1, -1, -1])


def test_mollweide_round_trip_and_orientation() -> None:
    ra, dec = _random_sky(10_000)
    x, y = geo.mollweide(ra, dec)
    assert ((x / geo.X_MAX) ** 2 + (y / geo.Y_MAX) ** 2 <= 1 + 1e-12).all()
    back_ra, back_dec, inside = geo.mollweide_inverse(x, y)
    assert inside.all()
    assert hp.angular_separation(ra, dec, back_ra, back_dec).max() < 1e-8
    # RA 180 deg in the centre, RA increasing to the left; the poles at the top and bottom.
    centre, left, right = geo.mollweide([180.0, 270.0, 90.0], [0.0, 0.0, 0.0])[0]
    assert centre == pytest.approx(0.0, abs=1e-12) and left < 0 < right
    assert geo.mollweide(0.0, 90.0)[1] == pytest.approx(geo.Y_MAX)


def test_mollweide_is_equal_area() -> None:
    # Equal-area: the share of raster cells inside a band equals its share of the sphere.
    *_, dec, inside = geo.mollweide_grid(800)
    band = inside & (np.abs(dec) < 30.0)
    assert band.sum() / inside.sum() == pytest.approx(0.5, abs=0.005)  # sin(30 deg)
    assert inside.sum() / inside.size == pytest.approx(np.pi / 4, abs=0.005)  # ellipse/box


def test_small_circle_is_at_the_radius() -> None:
    for ra0, dec0, radius in ((10.0, 20.0, 33.0), (300.0, -85.0, 20.0), (0.0, 0.0, 179.0)):
        ra, dec = geo.small_circle(ra0, dec0, radius)
        np.testing.assert_allclose(hp.angular_separation(ra0, dec0, ra, dec), radius, atol=1e-9)


def test_galactic_plane_has_zero_latitude() -> None:
    ra, dec = geo.galactic_plane()
    _, gal_b = equatorial_to_galactic(ra, dec)
    assert np.abs(gal_b).max() < 1e-9
    assert dec.max() == pytest.approx(90.0 - 27.128, abs=0.01)  # 90 deg - the pole's Dec


def test_break_wraps_cuts_curves_at_the_map_edge() -> None:
    ra, dec = geo.break_wraps([350.0, 355.0, 5.0, 10.0, 5.0, 355.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    gaps = np.flatnonzero(np.isnan(ra))
    assert len(gaps) == 2
    # Each piece runs to the edge at the interpolated Dec; no segment spans the map.
    assert ra[gaps[0] - 1] == pytest.approx(360.0)
    assert ra[gaps[0] + 1] == pytest.approx(0.0, abs=1e-6)
    assert dec[gaps[0] - 1] == pytest.approx(1.5) and dec[gaps[0] + 1] == pytest.approx(1.5)
    x, _ = geo.mollweide(ra, dec)
    finite = np.isfinite(x)
    jumps = np.abs(np.diff(x))[finite[:-1] & finite[1:]]
    assert jumps.max() < geo.X_MAX


def test_multiorder_rows_from_deeper_indices_agree() -> None:
    skymap = _load(CBC_ALERT)
    ra, dec = _random_sky(20_000)
    nest29 = geo.lonlat_to_nest(1 << hp.MAX_ORDER, ra, dec)
    np.testing.assert_array_equal(
        geo.multiorder_rows(skymap.uniq, nest29, hp.MAX_ORDER),
        geo.multiorder_lookup(skymap.uniq, ra, dec),
    )
    with pytest.raises(ValueError, match="cannot resolve"):
        geo.multiorder_rows(skymap.uniq, nest29 >> 40, 9)
