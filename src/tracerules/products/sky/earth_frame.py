"""The slowly varying sky at each UTC hour: Earth orientation, aberration, the Sun, the Moon.

pyerfa computes them (IAU 2000B precession-nutation ``pnm00b`` with ``s00b``/``eors``,
``epv00`` for the Earth's position and velocity, ``moon98`` for the Moon) at the start of each
UTC hour; the result is cached, and within the hour the Sun and the Moon move linearly
(errors below 0.05" and 10"). TT - UTC comes from the leap-second table pyerfa bundles; UT1 is
taken as UTC (no IERS tables). Times are POSIX seconds (UTC).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

import erfa
import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["FRAME_SECONDS", "POSIX_EPOCH_JD", "EarthFrame", "earth_frame", "frame_at_hour", "jd"]

FloatArray = NDArray[np.float64]

POSIX_EPOCH_JD = 2440587.5
FRAME_SECONDS = 3600.0


def _leap_table() -> tuple[FloatArray, FloatArray]:
    """POSIX start times and TAI - UTC of every leap-second era since 1972 (pyerfa's table)."""
    table = [row for row in erfa.leap_seconds.get() if int(row["year"]) >= 1972]
    starts = [calendar.timegm((int(r["year"]), int(r["month"]), 1, 0, 0, 0)) for r in table]
    return np.asarray(starts, dtype=np.float64), np.asarray(
        [float(r["tai_utc"]) for r in table], dtype=np.float64
    )


_LEAP_STARTS, _TAI_UTC = _leap_table()


def jd(t: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Two-part Julian date of POSIX times: whole days and the fraction, for precision."""
    days = np.floor(t / 86400.0)
    return POSIX_EPOCH_JD + days, (t - days * 86400.0) / 86400.0


def _tt_minus_utc(t: FloatArray) -> FloatArray:
    era = np.searchsorted(_LEAP_STARTS, t, side="right") - 1
    return np.where(era >= 0, _TAI_UTC[np.maximum(era, 0)], 10.0) + 32.184


@dataclass(frozen=True, slots=True)
class EarthFrame:
    """The slowly varying sky at a reference time ``t0`` (the start of a UTC hour).

    Every field has the shape of the times it was made for (plus 3 or 3x3 for vectors and
    matrices). Positions are GCRS-oriented; the Sun in au, the Moon in au, rates per second.
    """

    t0: FloatArray
    rbpn: FloatArray  # GCRS -> true equator and equinox of date
    eo: FloatArray  # equation of the origins (rad): apparent sidereal angle = ERA - eo
    beta: FloatArray  # the Earth's barycentric velocity over c, for annual aberration
    sun: FloatArray
    sun_rate: FloatArray
    moon: FloatArray
    moon_rate: FloatArray

    def take(self, index: Any) -> EarthFrame:
        return EarthFrame(*(getattr(self, f.name)[index] for f in fields(self)))


def _compute_frames(t0: FloatArray) -> EarthFrame:
    d1, d2 = jd(t0)
    tt2 = d2 + _tt_minus_utc(t0) / 86400.0
    rbpn = erfa.pnm00b(d1, tt2)
    eo = erfa.eors(rbpn, erfa.s00b(d1, tt2))
    helio, bary = erfa.epv00(d1, tt2)
    moon = erfa.moon98(d1, tt2)
    return EarthFrame(
        t0,
        rbpn,
        eo,
        bary["v"] / erfa.DC,
        -helio["p"],
        -helio["v"] / 86400.0,
        moon["p"],
        moon["v"] / 86400.0,
    )


@lru_cache(maxsize=256)
def frame_at_hour(hour: float) -> EarthFrame:
    return _compute_frames(np.asarray(hour * FRAME_SECONDS))


def earth_frame(t: ArrayLike) -> EarthFrame:
    """The frames of the UTC hours holding each time (one erfa call for all of them)."""
    times = np.asarray(t, dtype=np.float64)
    hours = np.floor(times / FRAME_SECONDS)
    if times.ndim == 0:
        return frame_at_hour(float(hours))
    unique, inverse = np.unique(hours, return_inverse=True)
    return _compute_frames(unique * FRAME_SECONDS).take(inverse.reshape(times.shape))


def sidereal(t: FloatArray, frame: EarthFrame) -> FloatArray:
    """Greenwich apparent sidereal angle (rad) with UT1 = UTC: ERA minus the equation of the
    origins."""
    d1, d2 = jd(t)
    angle: FloatArray = erfa.era00(d1, d2) - frame.eo
    return angle
