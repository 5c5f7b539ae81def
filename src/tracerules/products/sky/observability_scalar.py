"""The observability maths for one position at one time, in plain floats.

A condition asks for one position at one time: numpy's per-call overhead (a few us per ufunc)
would dominate, so scalars take the same steps as :mod:`tracerules.products.sky.observability` in
plain floats. The hour's frame still comes from erfa (cached); tests check that both paths
agree to 1e-9 deg.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from tracerules.products.sky.earth_frame import FRAME_SECONDS, POSIX_EPOCH_JD, frame_at_hour
from tracerules.products.sky.sites import Site

__all__ = ["altaz_scalar", "sun_altaz_scalar"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class _Floats:
    t0: float
    rbpn: tuple[tuple[float, float, float], ...]
    eo: float
    beta: tuple[float, float, float]
    sun: tuple[float, float, float]
    sun_rate: tuple[float, float, float]


def _vec(a: FloatArray) -> tuple[float, float, float]:
    return float(a[0]), float(a[1]), float(a[2])


@lru_cache(maxsize=256)
def _floats_at_hour(hour: float) -> _Floats:
    f = frame_at_hour(hour)
    return _Floats(
        float(f.t0),
        tuple(_vec(row) for row in f.rbpn),
        float(f.eo),
        _vec(f.beta),
        _vec(f.sun),
        _vec(f.sun_rate),
    )


def _sidereal_scalar(t: float, eo: float) -> float:
    """erfa.era00 with UT1 = UTC, minus the equation of the origins."""
    days = math.floor(t / 86400.0)
    fraction = (t - days * 86400.0) / 86400.0
    since_j2000 = fraction + (POSIX_EPOCH_JD + days - 2451545.0)
    turns = fraction + 0.5 + 0.7790572732640 + 0.00273781191135448 * since_j2000
    return 2.0 * math.pi * (turns % 1.0) - eo


def _horizon_scalar(
    v: tuple[float, float, float], site: Site, t: float, f: _Floats
) -> tuple[float, float]:
    """Aberrate, turn to the equator of date, then to the horizon (erfa.hd2ae's formulae)."""
    bx, by, bz = f.beta
    dot = v[0] * bx + v[1] * by + v[2] * bz
    x, y, z = v[0] + bx - dot * v[0], v[1] + by - dot * v[1], v[2] + bz - dot * v[2]
    (a, b, c), (d, e, g), (h, i, j) = f.rbpn
    wx, wy, wz = a * x + b * y + c * z, d * x + e * y + g * z, h * x + i * y + j * z
    norm = math.sqrt(wx * wx + wy * wy + wz * wz)
    sin_lat, cos_lat, lon = site.terms
    theta = _sidereal_scalar(t, f.eo) + lon
    ct, st = math.cos(theta), math.sin(theta)
    cd_ch, cd_sh, sd = (ct * wx + st * wy) / norm, (st * wx - ct * wy) / norm, wz / norm
    north, east, up = -cd_ch * sin_lat + sd * cos_lat, -cd_sh, cd_ch * cos_lat + sd * sin_lat
    az = math.atan2(east, north) if north or east else 0.0
    return math.degrees(math.atan2(up, math.hypot(north, east))), math.degrees(az) % 360.0


def altaz_scalar(ra: float, dec: float, site: Site, t: float) -> tuple[float, float]:
    if not -90.0 <= dec <= 90.0:
        raise ValueError(f"declination {dec:g} is outside [-90, 90]")
    a, d = math.radians(ra), math.radians(dec)
    v = (math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d))
    return _horizon_scalar(v, site, t, _floats_at_hour(math.floor(t / FRAME_SECONDS)))


def sun_altaz_scalar(site: Site, t: float) -> tuple[float, float]:
    f = _floats_at_hour(math.floor(t / FRAME_SECONDS))
    dt = t - f.t0
    x, y, z = (p + r * dt for p, r in zip(f.sun, f.sun_rate, strict=True))
    norm = math.sqrt(x * x + y * y + z * z)
    return _horizon_scalar((x / norm, y / norm, z / norm), site, t, f)
