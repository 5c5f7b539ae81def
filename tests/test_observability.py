"""The observability maths: properties of the geometry, and astropy's answers in the same run."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import astropy_sky
from tests.conftest import DATA
from tracerules.products.sky import observability as sky
from tracerules.products.sky import visibility as vis
from tracerules.products.sky.sites import Site
from tracerules.products.sky.skymap import read_skymap

MWA = Site("mwa", -26.703319444, 116.670813889, 377.8, 30.0)
ATCA = Site("atca", -30.31498, 149.56394, 240.0, 12.0)
LA_SILLA = Site("lasilla", -29.2567, -70.7346, 2400.0, 20.0, sun_limit=-12.0)
NORTH = Site("north", 78.2, 15.6, 10.0, 5.0, sun_limit=-6.0)  # Svalbard: midnight Sun
SITES = (MWA, ATCA, LA_SILLA, NORTH)
START, END = 1420070400.0, 1924992000.0  # 2015-01-01 to 2031-01-01
SIDEREAL_DAY = 86400.0 / 1.00273781191135448

ras = st.floats(0.0, 360.0, exclude_max=True)
decs = st.floats(-90.0, 90.0)
times = st.floats(START, END)
sites = st.sampled_from(SITES)


@given(ras, decs, sites, times)
def test_the_scalar_path_is_the_vectorised_one(ra: float, dec: float, site: Site, t: float) -> None:
    alt, az = sky.altaz(ra, dec, site, t)
    valt, vaz = sky.altaz(np.array([ra]), np.array([dec]), site, np.array([t]))
    assert alt == pytest.approx(float(valt[0]), abs=1e-9)
    if abs(alt) < 89.999:  # the azimuth of the zenith is anything
        assert math.cos(math.radians(az - float(vaz[0]))) == pytest.approx(1.0, abs=1e-12)
    sun = sky.sun_altaz(site, t)
    vsun = sky.sun_altaz(site, np.array([t]))
    assert sun[0] == pytest.approx(float(vsun[0][0]), abs=1e-9)


@given(ras, decs, sites, times)
def test_elevation_follows_from_hour_angle_and_apparent_declination(
    ra: float, dec: float, site: Site, t: float
) -> None:
    alt, az = sky.altaz(ra, dec, site, t)
    ha = sky.hour_angle(ra, dec, site, t)
    _, dec_t = sky.apparent_radec(ra, dec, t)
    lat, d, h = (math.radians(x) for x in (site.latitude, dec_t, ha))
    expected = math.sin(lat) * math.sin(d) + math.cos(lat) * math.cos(d) * math.cos(h)
    assert math.sin(math.radians(alt)) == pytest.approx(expected, abs=1e-9)
    assert -90.0 <= alt <= 90.0 and 0.0 <= az < 360.0 and -180.0 <= ha < 180.0
    # West of the meridian (hour angle > 0) the azimuth is in the western half, and back.
    if abs(alt) < 89.9 and 0.5 < abs(ha) < 179.5 and abs(dec_t) < 89.9:
        assert math.sin(math.radians(az)) * math.sin(h) < 0


@given(ras, decs, sites, st.floats(START, END - 2 * 86400))
def test_the_sky_repeats_after_a_sidereal_day(ra: float, dec: float, site: Site, t: float) -> None:
    now, later = sky.altaz(ra, dec, site, t)[0], sky.altaz(ra, dec, site, t + SIDEREAL_DAY)[0]
    assert later == pytest.approx(now, abs=0.01)  # a day of precession and aberration


@given(st.floats(-89.9, 89.9), st.floats(0.0, 360.0, exclude_max=True), sites, times)
def test_horizon_directions_go_back_to_the_sky_and_return(
    alt: float, az: float, site: Site, t: float
) -> None:
    ra, dec = sky.radec_of_altaz(alt, az, site, t)
    assert 0.0 <= ra < 360.0 and -90.0 <= dec <= 90.0
    again_alt, again_az = sky.altaz(ra, dec, site, t)
    assert again_alt == pytest.approx(alt, abs=1e-6)
    # Azimuths agree as directions (the distance along the horizon shrinks near the zenith).
    assert math.cos(math.radians(alt)) * abs(
        (again_az - az + 180.0) % 360.0 - 180.0
    ) == pytest.approx(0.0, abs=1e-6)


@settings(max_examples=25)
@given(sites, times, st.integers(0, 2**32 - 1))
def test_many_positions_at_once_match_one_by_one(site: Site, t: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ra, dec = rng.uniform(0, 360, 50), np.degrees(np.arcsin(rng.uniform(-1, 1, 50)))
    sin_alt = sky.sin_elevations(sky.unit_vectors(ra, dec), site, t)
    alt = np.array(
        [sky.altaz(float(r), float(d), site, t)[0] for r, d in zip(ra, dec, strict=True)]
    )
    assert sin_alt == pytest.approx(np.sin(np.radians(alt)), abs=2e-8)  # second order in v/c


@given(st.floats(-90.0, 90.0).filter(lambda alt: alt <= 0 or alt > 1e-9))
def test_airmass_is_the_secant_of_the_zenith_distance_above_the_horizon(alt: float) -> None:
    mass = sky.airmass(alt)
    if alt <= 0:
        assert mass == math.inf
    else:
        assert mass >= 1.0
        assert mass == pytest.approx(1.0 / math.sin(math.radians(alt)))
    assert sky.airmass(90.0) == 1.0
    assert sky.airmass(30.0) == pytest.approx(2.0)


def test_a_source_at_the_site_latitude_passes_through_the_zenith() -> None:
    t = 1.7e9
    lst = sky.local_sidereal_angle(MWA, t)
    # The position of date at the meridian and the site's latitude, back to ICRS roughly:
    alt = max(
        sky.altaz((lst + dra) % 360, MWA.latitude, MWA, t)[0] for dra in np.arange(-1, 1, 0.01)
    )
    assert alt > 89.5


def test_declinations_off_the_sphere_are_refused() -> None:
    with pytest.raises(ValueError, match="declination"):
        sky.altaz(10.0, 91.0, MWA, 1.7e9)
    with pytest.raises(ValueError, match="declination"):
        sky.altaz(np.array([10.0]), np.array([-90.5]), MWA, 1.7e9)


def test_positions_match_astropy_on_random_samples() -> None:
    """A small version of bench/observability.py, which runs 10,000 samples."""
    rng = np.random.default_rng(13)
    n = 200
    t, ra = rng.uniform(START, END, n), rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    for site in (MWA, ATCA, NORTH):
        alt, az = sky.altaz(ra, dec, site, t)
        ref_alt, ref_az = astropy_sky.altaz(ra, dec, site, t)
        assert np.abs(alt - ref_alt).max() < 0.01
        assert astropy_sky.separation(alt, az, ref_alt, ref_az).max() < 0.01
        sun, ref_sun = sky.sun_altaz(site, t), astropy_sky.body_altaz("sun", site, t)
        assert astropy_sky.separation(*sun, *ref_sun).max() < 0.02
        moon, ref_moon = sky.moon_altaz(site, t), astropy_sky.body_altaz("moon", site, t)
        assert astropy_sky.separation(*moon, *ref_moon).max() < 0.02
    # And back: horizon directions (the MWA's beamformer positions, say) to the sky.
    alt, az = rng.uniform(20, 90, n), rng.uniform(0, 360, n)
    ra, dec = sky.radec_of_altaz(alt, az, MWA, t)
    ref_ra, ref_dec = astropy_sky.radec(alt, az, MWA, t)
    assert astropy_sky.separation(dec, ra, ref_dec, ref_ra).max() < 0.01
    illumination = sky.moon_illumination(t)
    assert np.abs(illumination - astropy_sky.moon_illumination(t)).max() < 0.002
    assert illumination.min() < 0.05 and illumination.max() > 0.95


def test_the_moon_is_seen_from_the_site_not_the_earth_centre() -> None:
    t = np.linspace(1.7e9, 1.7e9 + 30 * 86400, 400)
    topocentric = np.asarray(sky.moon_altaz(MWA, t)[0])
    ra, dec = sky.moon_radec(t)
    geocentric = np.asarray(sky.altaz(ra, dec, MWA, t)[0])
    # Parallax lowers the Moon by up to ~1 deg near the horizon, never raises it.
    shift = geocentric - topocentric
    assert shift.max() == pytest.approx(0.95, abs=0.08)
    assert shift.min() > -0.01


# -- windows ------------------------------------------------------------------------------------


def _visible(ra: float, dec: float, site: Site, t: float) -> tuple[float, bool]:
    alt = sky.altaz(ra, dec, site, t)[0]
    dark = site.sun_limit is None or sky.sun_altaz(site, t)[0] < site.sun_limit
    return alt, dark


@settings(max_examples=40, deadline=None)
@given(ras, decs, sites, times, st.floats(60.0, 2 * 86400.0))
def test_visible_intervals_hold_exactly_the_visible_times(
    ra: float, dec: float, site: Site, t: float, duration: float
) -> None:
    intervals = vis.visible_intervals(ra, dec, site, t, t + duration)
    for low, high in intervals:
        assert t <= low <= high <= t + duration
    for when in np.linspace(t, t + duration, 97):
        alt, dark = _visible(ra, dec, site, float(when))
        inside = any(low - 1.5 <= when <= high + 1.5 for low, high in intervals)
        if inside:
            assert alt >= site.elevation_limit - 0.01
            assert dark or abs(sky.sun_altaz(site, float(when))[0] - site.sun_limit) < 0.02  # type: ignore[operator]
        elif alt > site.elevation_limit + 0.01:
            assert not dark or site.sun_limit is not None


def test_an_optical_site_waits_for_the_night() -> None:
    t = 1.7e9  # 2023-11-14 22:13 UTC: 19:13 at La Silla, the Sun just set
    # A target high in the evening sky: visible from the end of astronomical twilight only.
    ra, dec = 350.0, -30.0
    start = vis.visible_intervals(ra, dec, LA_SILLA, t, t + 86400)[0][0]
    assert start > t
    assert sky.sun_altaz(LA_SILLA, start)[0] == pytest.approx(-12.0, abs=0.01)
    assert sky.altaz(ra, dec, LA_SILLA, start)[0] > 20.0
    # The same target without a Sun limit is up already.
    no_sun = Site("radio", LA_SILLA.latitude, LA_SILLA.longitude, 2400.0, 20.0)
    assert vis.visible_intervals(ra, dec, no_sun, t, t + 86400)[0][0] == t


def test_midsummer_at_svalbard_is_never_dark() -> None:
    june = 1718928000.0  # 2024-06-21
    assert vis.visible_intervals(0.0, 89.0, NORTH, june, june + 3 * 86400) == []
    radio = Site("radio", NORTH.latitude, NORTH.longitude, 10.0, 5.0)
    assert vis.visible_intervals(0.0, 89.0, radio, june, june + 3 * 86400) == [
        (june, june + 3 * 86400)
    ]  # circumpolar


def test_a_source_that_never_rises_has_no_interval() -> None:
    assert vis.visible_intervals(0.0, 70.0, MWA, 1.7e9, 1.7e9 + 7 * 86400) == []
    with pytest.raises(ValueError, match="longer than 7 d"):
        vis.visible_intervals(0.0, 0.0, MWA, 1.7e9, 1.7e9 + 8 * 86400)


# -- sky maps -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pixels() -> vis.Pixels:
    skymap = read_skymap(DATA / "skymaps" / "bayestar.multiorder.fits")
    return vis.Pixels.of_map(skymap.uniq, skymap.probdensity)


def test_visible_probability_matches_astropy(pixels: vis.Pixels) -> None:
    for t in (1.7e9, 1.7e9 + 6 * 3600, 1.85e9):
        alt, _ = astropy_sky.altaz(pixels.ra, pixels.dec, MWA, t)
        expected = pixels.prob[alt >= MWA.elevation_limit].sum()
        assert vis.visible_probability(pixels, MWA, t) == pytest.approx(expected, abs=1e-3)


@settings(max_examples=15, deadline=None)
@given(sites, times, st.floats(3600.0, 86400.0))
def test_the_best_time_in_a_window_beats_every_sampled_time(
    pixels: vis.Pixels, site: Site, t: float, duration: float
) -> None:
    best_time, best = vis.best_visible_time(pixels, site, t, t + duration)
    assert t <= best_time <= t + duration
    assert best == pytest.approx(vis.visible_probability(pixels, site, best_time))
    sampled = [
        vis.visible_probability(pixels, site, float(x)) for x in np.linspace(t, t + duration, 49)
    ]
    assert best >= max(sampled) - 0.01
    assert best >= sampled[0]
    assert 0.0 <= best <= 1.0 + 1e-9


def test_the_best_visible_pixel_is_the_densest_one_above_the_limit(pixels: vis.Pixels) -> None:
    t = 1.7e9 + 6 * 3600
    best = vis.best_visible_pixel(pixels, ATCA, t)
    assert best is not None
    alt, _ = astropy_sky.altaz(pixels.ra, pixels.dec, ATCA, t)
    above = alt >= ATCA.elevation_limit
    assert pixels.density[best] == pixels.density[above].max()
