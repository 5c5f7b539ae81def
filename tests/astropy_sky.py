"""astropy's own answers, for checking the observability maths: offline, refraction off.

astropy must never try to download IERS data here: auto_download is off, predictive tables of
any age are accepted and times past the bundled tables use zero corrections (as we do).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from astropy.utils import iers

iers.conf.auto_download = False
iers.conf.auto_max_age = None
iers.conf.iers_degraded_accuracy = "ignore"

from astropy import units as u  # noqa: E402
from astropy.coordinates import AltAz, EarthLocation, SkyCoord, get_body  # noqa: E402
from astropy.time import Time  # noqa: E402

from tracerules.products.sky.sites import Site  # noqa: E402


@contextmanager
def quiet() -> Iterator[None]:
    """astropy warns about dates past its leap-second and IERS tables: expected offline."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def frame(site: Site, t: Any) -> AltAz:
    location = EarthLocation.from_geodetic(
        site.longitude * u.deg, site.latitude * u.deg, site.height * u.m
    )
    when = Time(np.asarray(t, dtype=np.float64), format="unix", scale="utc")
    return AltAz(obstime=when, location=location, pressure=0 * u.hPa)


def altaz(ra: Any, dec: Any, site: Site, t: Any) -> tuple[Any, Any]:
    with quiet():
        seen = SkyCoord(np.asarray(ra) * u.deg, np.asarray(dec) * u.deg).transform_to(
            frame(site, t)
        )
        return seen.alt.deg, seen.az.deg


def radec(alt: Any, az: Any, site: Site, t: Any) -> tuple[Any, Any]:
    with quiet():
        seen = SkyCoord(
            alt=np.asarray(alt) * u.deg, az=np.asarray(az) * u.deg, frame=frame(site, t)
        ).icrs
        return seen.ra.deg, seen.dec.deg


def body_altaz(body: str, site: Site, t: Any) -> tuple[Any, Any]:
    with quiet():
        place = frame(site, t)
        seen = get_body(body, place.obstime, place.location).transform_to(place)
        return seen.alt.deg, seen.az.deg


def moon_illumination(t: Any) -> Any:
    with quiet():
        when = Time(np.asarray(t, dtype=np.float64), format="unix", scale="utc")
        sun, moon = get_body("sun", when), get_body("moon", when)
        elongation = sun.separation(moon)
        phase = np.arctan2(
            sun.distance * np.sin(elongation), moon.distance - sun.distance * np.cos(elongation)
        )
        return (1 + np.cos(phase.to_value(u.rad))) / 2.0


def separation(alt1: Any, az1: Any, alt2: Any, az2: Any) -> Any:
    """Angle between two horizon directions, degrees."""
    a1, z1, a2, z2 = (np.radians(x) for x in (alt1, az1, alt2, az2))
    cos = np.sin(a1) * np.sin(a2) + np.cos(a1) * np.cos(a2) * np.cos(z1 - z2)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
