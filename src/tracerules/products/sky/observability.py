"""Where things are in a site's sky: the pure maths behind the observability functions.

Public API (angles in degrees, times in POSIX seconds UTC; every function is vectorised over
numpy arrays that broadcast together, and gives floats for scalar input):

* :func:`altaz`, :func:`hour_angle`, :func:`airmass` of ICRS positions at a :class:`Site`;
* :func:`sun_radec`, :func:`sun_altaz`, :func:`moon_radec`, :func:`moon_altaz`,
  :func:`moon_illumination`, :func:`moon_separation`.

How, and how accurately (bench/observability.py measures it against astropy):

* Earth orientation is IAU 2000B precession-nutation (``erfa.pnm00b``, ~1 mas from 2000A)
  and the Earth rotation angle (``erfa.era00``) with UT1 = UTC and no polar motion: nothing is
  read from IERS tables, so nothing can go stale or be downloaded. |UT1 - UTC| < 0.9 s by the
  definition of UTC, which moves hour angles by at most 0.004 deg; polar motion is < 0.5".
* Star directions get annual aberration from the Earth's velocity (``erfa.epv00``); diurnal
  aberration (< 0.3") and light deflection (< 2" away from the Sun's limb) are left out.
* The Sun comes from ``erfa.epv00`` and the Moon from ``erfa.moon98`` (a few arcseconds over
  1900-2100), the Moon seen from the site (its parallax reaches 1 deg).
* Refraction is not applied: elevations are geometric.
* TT - UTC comes from the leap-second table pyerfa bundles (no leap second since 2017; one
  announced later would shift TT by 1 s, which moves nothing here by more than 0.001 deg).

The slowly varying part of all this (precession-nutation, the Earth's velocity, the Sun and
the Moon with their rates) is computed at the start of each UTC hour and cached; within the
hour the Sun and the Moon move linearly (errors below 0.05" and 10"), and the sky turns with
the exact Earth rotation angle. The same time always gives the same answer.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import erfa
import numpy as np
from numpy.typing import ArrayLike, NDArray

from tracerules.products.sky.earth_frame import EarthFrame, earth_frame, sidereal
from tracerules.products.sky.observability_scalar import altaz_scalar, sun_altaz_scalar
from tracerules.products.sky.sites import Site

__all__ = [
    "EarthFrame",
    "Site",
    "airmass",
    "altaz",
    "apparent_radec",
    "earth_frame",
    "hour_angle",
    "local_sidereal_angle",
    "moon_altaz",
    "moon_illumination",
    "moon_radec",
    "moon_separation",
    "radec_of_altaz",
    "sin_elevations",
    "sun_altaz",
    "sun_radec",
    "unit_vectors",
]

FloatArray = NDArray[np.float64]

# -- geometry -----------------------------------------------------------------------------------


def _unit(ra_deg: ArrayLike, dec_deg: ArrayLike) -> FloatArray:
    dec = np.asarray(dec_deg, dtype=np.float64)
    if np.any(np.abs(dec) > 90.0):
        raise ValueError("declination outside [-90, 90]")
    vectors: FloatArray = erfa.s2c(np.radians(ra_deg), np.radians(dec))
    return vectors


def _normalised(v: FloatArray) -> FloatArray:
    unit: FloatArray = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return unit


def _aberrated(v: FloatArray, beta: FloatArray) -> FloatArray:
    """Annual aberration to first order in v/c (the second order is below 0.002")."""
    dot = np.sum(v * beta, axis=-1, keepdims=True)
    return _normalised(v + beta - dot * v)


def _of_date(v: FloatArray, frame: EarthFrame) -> FloatArray:
    rotated: FloatArray = np.einsum("...ij,...j->...i", frame.rbpn, v)
    return rotated


def _hour_angle_dec(
    w: FloatArray, site: Site, t: FloatArray, frame: EarthFrame
) -> tuple[FloatArray, FloatArray]:
    """Local apparent hour angle and declination (rad) of directions of date ``w``."""
    ra = np.arctan2(w[..., 1], w[..., 0])
    dec = np.arcsin(np.clip(w[..., 2] / np.linalg.norm(w, axis=-1), -1.0, 1.0))
    return sidereal(t, frame) + math.radians(site.longitude) - ra, dec


def _horizon(
    w: FloatArray, site: Site, t: FloatArray, frame: EarthFrame
) -> tuple[FloatArray, FloatArray]:
    ha, dec = _hour_angle_dec(w, site, t, frame)
    az, el = erfa.hd2ae(ha, dec, math.radians(site.latitude))
    return np.degrees(el), np.degrees(az)


def _out(value: FloatArray) -> Any:
    """Floats for scalar input, arrays otherwise."""
    return float(value) if np.ndim(value) == 0 else value


def _times(t: ArrayLike) -> tuple[FloatArray, EarthFrame]:
    times = np.asarray(t, dtype=np.float64)
    return times, earth_frame(times)


# -- targets --------------------------------------------------------------------------------------


def altaz(ra_deg: ArrayLike, dec_deg: ArrayLike, site: Site, t: ArrayLike) -> tuple[Any, Any]:
    """Geometric elevation and azimuth (degrees, azimuth from north through east)."""
    scalars = (float, int)
    if isinstance(ra_deg, scalars) and isinstance(dec_deg, scalars) and isinstance(t, scalars):
        return altaz_scalar(float(ra_deg), float(dec_deg), site, float(t))
    times, frame = _times(t)
    w = _of_date(_aberrated(_unit(ra_deg, dec_deg), frame.beta), frame)
    alt, az = _horizon(w, site, times, frame)
    return _out(alt), _out(az)


def hour_angle(ra_deg: ArrayLike, dec_deg: ArrayLike, site: Site, t: ArrayLike) -> Any:
    """Local hour angle in degrees, in [-180, 180): negative east of the meridian (rising)."""
    times, frame = _times(t)
    w = _of_date(_aberrated(_unit(ra_deg, dec_deg), frame.beta), frame)
    ha, _ = _hour_angle_dec(w, site, times, frame)
    return _out((np.degrees(ha) + 180.0) % 360.0 - 180.0)


def radec_of_altaz(
    alt_deg: ArrayLike, az_deg: ArrayLike, site: Site, t: ArrayLike
) -> tuple[Any, Any]:
    """ICRS RA and Dec (degrees) of horizon directions: the inverse of :func:`altaz`, e.g. to
    point at fixed beamformer positions (elevation, azimuth) of a telescope."""
    times, frame = _times(t)
    ha, dec = erfa.ae2hd(np.radians(az_deg), np.radians(alt_deg), math.radians(site.latitude))
    ra = sidereal(times, frame) + math.radians(site.longitude) - ha
    of_date = erfa.s2c(ra, dec)
    apparent = np.einsum("...ji,...j->...i", frame.rbpn, of_date)  # back to GCRS axes
    beta = frame.beta
    dot = np.sum(apparent * beta, axis=-1, keepdims=True)
    return _radec(_normalised(apparent - beta + dot * apparent))  # aberration undone


def airmass(alt_deg: ArrayLike) -> Any:
    """Plane-parallel airmass sec(z) above the horizon; infinite at or below it."""
    alt = np.asarray(alt_deg, dtype=np.float64)
    with np.errstate(divide="ignore", over="ignore"):
        mass = np.where(alt > 0.0, 1.0 / np.sin(np.radians(np.abs(alt))), np.inf)
    return _out(mass)


def unit_vectors(ra_deg: ArrayLike, dec_deg: ArrayLike) -> FloatArray:
    """ICRS unit vectors (..., 3) of positions, for :func:`sin_elevations` over many of them."""
    return _unit(ra_deg, dec_deg)


def sin_elevations(vectors: FloatArray, site: Site, t: float) -> FloatArray:
    """sin(elevation) of many ICRS unit vectors at one time: two dot products per position.

    The site's zenith is turned back into the ICRS once, and annual aberration is applied to
    first order in the dot product itself, so a sky map of 10^5 pixels costs two mat-vecs.
    """
    times, frame = _times(t)
    sin_lat, cos_lat, lon = site.terms
    theta = float(sidereal(times, frame)) + lon
    zenith = np.array([cos_lat * math.cos(theta), cos_lat * math.sin(theta), sin_lat])
    zenith_icrs = frame.rbpn.T @ zenith
    beta = frame.beta
    along = vectors @ zenith_icrs
    result: FloatArray = along + float(beta @ zenith_icrs) - (vectors @ beta) * along
    return result


def apparent_radec(ra_deg: ArrayLike, dec_deg: ArrayLike, t: float) -> tuple[Any, Any]:
    """RA and Dec (degrees) of date (true equator and equinox, aberrated) at one time."""
    _, frame = _times(t)
    w = _of_date(_aberrated(_unit(ra_deg, dec_deg), frame.beta), frame)
    return _radec(w)


def local_sidereal_angle(site: Site, t: ArrayLike) -> Any:
    """Local apparent sidereal time as an angle in degrees [0, 360)."""
    times, frame = _times(t)
    return _out((np.degrees(sidereal(times, frame)) + site.longitude) % 360.0)


# -- the Sun and the Moon -------------------------------------------------------------------------


def _sun(times: FloatArray, frame: EarthFrame) -> FloatArray:
    """Geocentric Sun (au, GCRS), geometric."""
    return frame.sun + frame.sun_rate * (times - frame.t0)[..., None]


def _moon(times: FloatArray, frame: EarthFrame) -> FloatArray:
    """Geocentric Moon (au, GCRS), geometric."""
    return frame.moon + frame.moon_rate * (times - frame.t0)[..., None]


def _radec(v: FloatArray) -> tuple[Any, Any]:
    ra, dec = erfa.c2s(v)
    return _out(np.degrees(ra) % 360.0), _out(np.degrees(dec))


def sun_radec(t: ArrayLike) -> tuple[Any, Any]:
    """Apparent geocentric RA and Dec of the Sun (degrees, GCRS)."""
    times, frame = _times(t)
    return _radec(_aberrated(_normalised(_sun(times, frame)), frame.beta))


def sun_altaz(site: Site, t: ArrayLike) -> tuple[Any, Any]:
    """Geometric elevation and azimuth of the Sun at a site (parallax, 9", left out)."""
    if isinstance(t, float | int):
        return sun_altaz_scalar(site, float(t))
    times, frame = _times(t)
    w = _of_date(_aberrated(_normalised(_sun(times, frame)), frame.beta), frame)
    alt, az = _horizon(w, site, times, frame)
    return _out(alt), _out(az)


def moon_radec(t: ArrayLike) -> tuple[Any, Any]:
    """Geocentric RA and Dec of the Moon (degrees, GCRS)."""
    times, frame = _times(t)
    return _radec(_moon(times, frame))


@lru_cache(maxsize=64)
def _site_xyz_au(site: Site) -> FloatArray:
    xyz: FloatArray = erfa.gd2gc(
        1, math.radians(site.longitude), math.radians(site.latitude), site.height
    )
    au: FloatArray = xyz / erfa.DAU
    return au


def moon_altaz(site: Site, t: ArrayLike) -> tuple[Any, Any]:
    """Elevation and azimuth of the Moon seen from the site (its parallax included)."""
    times, frame = _times(t)
    moon = _of_date(_moon(times, frame), frame)
    x, y, z = _site_xyz_au(site)
    # The site in the true equator of date: its terrestrial vector turned by the sidereal angle.
    angle = sidereal(times, frame) + np.zeros(moon.shape[:-1])
    cos, sin = np.cos(angle), np.sin(angle)
    here = np.stack([x * cos - y * sin, x * sin + y * cos, np.full_like(angle, z)], axis=-1)
    alt, az = _horizon(moon - here, site, times, frame)
    return _out(alt), _out(az)


def moon_illumination(t: ArrayLike) -> Any:
    """Illuminated fraction of the Moon's disc, 0 (new) to 1 (full), as astropy computes it."""
    times, frame = _times(t)
    sun, moon = _sun(times, frame), _moon(times, frame)
    sun_distance, moon_distance = np.linalg.norm(sun, axis=-1), np.linalg.norm(moon, axis=-1)
    elongation = np.arccos(
        np.clip(np.sum(sun * moon, axis=-1) / (sun_distance * moon_distance), -1.0, 1.0)
    )
    phase = np.arctan2(
        sun_distance * np.sin(elongation), moon_distance - sun_distance * np.cos(elongation)
    )
    return _out((1.0 + np.cos(phase)) / 2.0)


def moon_separation(ra_deg: ArrayLike, dec_deg: ArrayLike, t: ArrayLike) -> Any:
    """Angle (degrees) between an ICRS position and the Moon, seen from the Earth's centre."""
    times, frame = _times(t)
    target = _unit(ra_deg, dec_deg)
    moon = _normalised(_moon(times, frame))
    cross = np.linalg.norm(np.cross(target, moon), axis=-1)
    return _out(np.degrees(np.arctan2(cross, np.sum(target * moon, axis=-1))))
