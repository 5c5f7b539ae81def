"""The MWA GW pointing choice: properties over random sky maps and times, and real maps.

The properties are those of TRACE-T's algorithm: at most four pointings, pairwise more than
10 deg apart, all above the site's limit, and each the nearest sweet spot of some pixel no
less probable than every pixel whose nearest spot was passed over. An independent brute-force
version (every pixel, every sweet spot, one at a time) must agree with the vectorised one.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import DATA
from tracerules.products.sky.healpix import angular_separation, uniq_centres
from tracerules.products.sky.mwa_pointings import choose, gw_pointings, sweet_spots
from tracerules.products.sky.observability import radec_of_altaz
from tracerules.products.sky.sites import Site
from tracerules.products.sky.skymap import read_skymap

LIMIT = 30.0
MWA = Site("mwa", -26.703319444, 116.670813889, 377.8, LIMIT)
T2015, T2030 = 1420070400.0, 1893456000.0


def brute_force(
    uniq: np.ndarray, density: np.ndarray, ra: np.ndarray, dec: np.ndarray
) -> list[int]:
    chosen: list[int] = []
    pix_ra, pix_dec = uniq_centres(uniq)
    for i in np.argsort(-density, kind="stable"):
        nearest = int(np.argmin(angular_separation(pix_ra[i], pix_dec[i], ra, dec)))
        if all(angular_separation(ra[nearest], dec[nearest], ra[c], dec[c]) > 10 for c in chosen):
            chosen.append(nearest)
            if len(chosen) == 4:
                break
    return chosen


def random_map(seed: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """A random single-order map: a few Gaussian blobs plus noise."""
    rng = np.random.default_rng(seed)
    npix = 12 * 4**order
    uniq = 4 * 4**order + np.arange(npix)
    ra, dec = uniq_centres(uniq)
    density = rng.random(npix) * 1e-3
    for _ in range(rng.integers(1, 4)):
        c_ra, c_dec = rng.uniform(0, 360), np.degrees(np.arcsin(rng.uniform(-1, 1)))
        width = rng.uniform(2, 30)
        density += np.exp(-0.5 * (angular_separation(ra, dec, c_ra, c_dec) / width) ** 2)
    return uniq, density


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    when=st.floats(T2015, T2030),
    order=st.integers(2, 4),
)
def test_pointings_are_apart_above_the_limit_and_match_brute_force(
    seed: int, when: float, order: int
) -> None:
    uniq, density = random_map(seed, order)
    points = gw_pointings(uniq, density, when, MWA)
    assert 1 <= len(points) <= 4
    for i, a in enumerate(points):
        assert a.el > LIMIT
        for b in points[i + 1 :]:
            assert angular_separation(a.ra, a.dec, b.ra, b.dec) > 10.0
    table = sweet_spots()
    usable = table.el > LIMIT
    ra, dec = radec_of_altaz(table.el[usable], table.az[usable], MWA, when)
    assert [p.spot for p in points] == [
        int(table.number[usable][i]) for i in brute_force(uniq, density, ra, dec)
    ]


def test_sweet_spots_in_icrs_are_where_the_table_says() -> None:
    """Zenith (N=0) at the MWA is at dec = the site's latitude, ra = local sidereal time."""
    table = sweet_spots()
    assert len(table.el) == 197 and table.number[0] == 0 and table.el[0] == 90.0
    ra, dec = radec_of_altaz(table.el[:1], table.az[:1], MWA, 1.7e9)
    assert abs(dec[0] - MWA.latitude) < 0.3  # precession since J2000 moves it a little
    # Two spots 45 deg apart in azimuth at equal elevation stay equally far from the zenith.
    ra2, dec2 = radec_of_altaz(table.el[5:7], table.az[5:7], MWA, 1.7e9)
    d = angular_separation(ra[0], dec[0], ra2, dec2)
    assert np.allclose(d, 90 - table.el[5], atol=0.02)


def test_a_compact_map_gives_four_spots_around_its_peak() -> None:
    skymap = read_skymap(DATA / "skymaps" / "bayestar.multiorder.fits")
    points = gw_pointings(skymap.uniq, skymap.probdensity, 1541110966.0, MWA)
    assert [p.spot for p in points] == [152, 151, 139, 153]


def test_choose_stops_short_when_spots_are_too_close() -> None:
    uniq = np.array([4 * 4**1 + 0])
    ra, dec = np.array([10.0, 12.0, 40.0]), np.array([0.0, 0.0, 0.0])
    assert len(choose(uniq, np.array([1.0]), ra, dec)) == 1
