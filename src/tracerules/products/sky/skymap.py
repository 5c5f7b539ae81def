"""LVK sky maps: decoding the FITS payload of ``igwn.gwalert`` alerts and summarising it.

The I/O here is deliberately thin; the maths lives in :mod:`tracerules.products.sky.healpix`.
astropy is imported inside the functions that need it: it takes about half a second to import,
which a process that never sees a gravitational-wave alert should not pay.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tracerules.products.sky import healpix
from tracerules.products.sky.galactic import equatorial_to_galactic

__all__ = [
    "HeaderValue",
    "SkyMap",
    "SkyMapError",
    "SkyMapSummary",
    "decode_skymap",
    "flatten_skymap",
    "read_skymap",
    "skymap_from_alert",
    "summarize",
    "sun_moon",
]

HeaderValue = str | int | float | bool | None
_DISTANCE_COLUMNS = ("DISTMU", "DISTSIGMA", "DISTNORM")
_GZIP_MAGIC = b"\x1f\x8b"


class SkyMapError(ValueError):
    """The payload is not a readable multi-order HEALPix sky map."""


@dataclass(frozen=True, eq=False, slots=True)
class SkyMap:
    """The columns of a multi-order sky map as read-only native-endian arrays, and its header.

    ``distmu``, ``distsigma`` and ``distnorm`` are None for maps without distance (Burst).
    ``header`` holds the table HDU's keys; HISTORY and COMMENT lines are joined with newlines.
    """

    uniq: NDArray[np.int64]
    probdensity: NDArray[np.float64]
    distmu: NDArray[np.float64] | None
    distsigma: NDArray[np.float64] | None
    distnorm: NDArray[np.float64] | None
    header: dict[str, HeaderValue]

    @property
    def has_distance(self) -> bool:
        """Whether the map carries the distance ansatz columns."""
        return self.distmu is not None


@dataclass(frozen=True, slots=True)
class SkyMapSummary:
    """Value-added figures of one sky map. Angles and areas in degrees, distances in Mpc.

    Credible areas count whole pixels up to and including the one that reaches the level (see
    :func:`healpix.credible_areas`). Sun and Moon positions are geocentric (GCRS) at ``time``;
    they and the separations are None when no time is known or the ephemeris was not asked for.
    """

    area10: float
    area50: float
    area90: float
    max_ra: float
    max_dec: float
    max_l: float
    max_b: float
    distance_mean: float | None
    distance_std: float | None
    total_probability: float
    pixel_count: int
    orders: tuple[int, ...]
    time: str | None = None
    sun_ra: float | None = None
    sun_dec: float | None = None
    moon_ra: float | None = None
    moon_dec: float | None = None
    sun_separation: float | None = None
    moon_separation: float | None = None


def _fits_bytes(data: str | bytes) -> bytes:
    """Raw FITS bytes from base64 text, raw FITS, or either gzip-compressed."""
    raw = data.encode("ascii", "replace") if isinstance(data, str) else bytes(data)
    if not raw.startswith((b"SIMPLE", _GZIP_MAGIC)):
        try:
            # Alerts carry one unbroken base64 line, but files may wrap it: drop whitespace,
            # then insist on a valid alphabet so truncated samples ("U0lN...") fail loudly.
            raw = base64.b64decode(b"".join(raw.split()), validate=True)
        except binascii.Error as exc:
            raise SkyMapError(f"sky map is neither FITS nor valid base64: {exc}") from exc
    if raw.startswith(_GZIP_MAGIC):
        raw = gzip.decompress(raw)
    if not raw.startswith(b"SIMPLE"):
        raise SkyMapError("sky map payload does not start with a FITS header")
    return raw


def _header_dict(header: Any) -> dict[str, HeaderValue]:
    """A FITS header as plain scalars; commentary cards are joined into one string per key."""
    out: dict[str, HeaderValue] = {}
    commentary: dict[str, list[str]] = {}
    for card in header.cards:
        key, value = card.keyword, card.value
        if key in ("HISTORY", "COMMENT"):
            commentary.setdefault(key, []).append(str(value))
        elif key:
            scalar = value.item() if isinstance(value, np.generic) else value
            out[key] = scalar if isinstance(scalar, str | int | float | bool) else None
    out.update({key: "\n".join(lines) for key, lines in commentary.items()})
    return out


def _column(table: Any, name: str, dtype: type[np.generic]) -> NDArray[Any]:
    """A FITS column converted to a native-endian, read-only array."""
    column = np.array(table[name], dtype=dtype)  # copies: FITS data are big-endian views
    column.setflags(write=False)
    return column


def _multiorder_table(hdus: Any) -> Any:
    """The first binary table with UNIQ and PROBDENSITY columns (HDU 1 in LVK maps)."""
    from astropy.io import fits

    for hdu in hdus[1:]:
        if isinstance(hdu, fits.BinTableHDU) and {"UNIQ", "PROBDENSITY"} <= set(hdu.columns.names):
            return hdu
    raise SkyMapError("no multi-order table with UNIQ and PROBDENSITY columns")


def decode_skymap(data: str | bytes) -> SkyMap:
    """Decode a multi-order sky map from base64 text (as in alerts) or raw/gzipped FITS bytes.

    Raises :class:`SkyMapError` (a ValueError) for anything that is not such a map.
    """
    from astropy.io import fits

    try:
        with fits.open(io.BytesIO(_fits_bytes(data)), memmap=False) as hdus:
            hdu = _multiorder_table(hdus)
            table, names = hdu.data, set(hdu.columns.names)
            distance = [
                _column(table, c, np.float64) if set(_DISTANCE_COLUMNS) <= names else None
                for c in _DISTANCE_COLUMNS
            ]
            return SkyMap(
                uniq=_column(table, "UNIQ", np.int64),
                probdensity=_column(table, "PROBDENSITY", np.float64),
                distmu=distance[0],
                distsigma=distance[1],
                distnorm=distance[2],
                header=_header_dict(hdu.header),
            )
    # astropy's ways of saying "corrupt FITS", and gzip's of saying "corrupt or truncated".
    except (OSError, EOFError, zlib.error, TypeError, KeyError) as exc:
        raise SkyMapError(f"unreadable FITS sky map: {exc}") from exc


def read_skymap(path: str | PathLike[str]) -> SkyMap:
    """Read a multi-order sky map from a ``.fits`` or ``.fits.gz`` file."""
    return decode_skymap(Path(path).read_bytes())


def skymap_from_alert(alert: Mapping[str, Any]) -> SkyMap | None:
    """The sky map of an ``igwn.gwalert`` alert, or None (retractions have ``event: null``)."""
    event = alert.get("event")
    payload = event.get("skymap") if isinstance(event, Mapping) else None
    return decode_skymap(payload) if isinstance(payload, str | bytes) and payload else None


def flatten_skymap(skymap: SkyMap, nside: int) -> healpix.FlatMap:
    """The map on every NESTED pixel of ``nside`` (see :func:`healpix.flatten`)."""
    return healpix.flatten(
        skymap.uniq,
        skymap.probdensity,
        nside,
        distmu=skymap.distmu,
        distsigma=skymap.distsigma,
        distnorm=skymap.distnorm,
    )


def sun_moon(time: str | datetime) -> tuple[float, float, float, float]:
    """Geocentric apparent (GCRS) RA/Dec of the Sun and the Moon in degrees at ``time`` (UTC).

    GCRS, not ICRS: moving the Moon's origin to the barycentre would shift it by degrees, and
    an observer on Earth sees geocentric directions (up to the Moon's ~1 deg parallax).
    """
    from astropy.coordinates import get_body, get_sun
    from astropy.time import Time

    with warnings.catch_warnings():
        # Dates past the bundled leap-second table are "dubious" to ERFA; a second of
        # uncertainty is irrelevant for Sun and Moon positions.
        warnings.filterwarnings("ignore", message=".*dubious year")
        when = Time(time, scale="utc")
        sun, moon = get_sun(when), get_body("moon", when)
    return (
        float(sun.ra.deg),
        float(sun.dec.deg),
        float(moon.ra.deg),
        float(moon.dec.deg),
    )


def _distance(skymap: SkyMap) -> tuple[float, float] | None:
    if skymap.distmu is None or skymap.distsigma is None or skymap.distnorm is None:
        return None
    return healpix.marginal_distance(
        skymap.uniq, skymap.probdensity, skymap.distmu, skymap.distsigma, skymap.distnorm
    )


def _ephemeris(time: str | datetime, ra: float, dec: float) -> dict[str, Any]:
    """Sun and Moon positions and their separations from (ra, dec)."""
    sun_ra, sun_dec, moon_ra, moon_dec = sun_moon(time)
    return {
        "time": time.isoformat() if isinstance(time, datetime) else str(time),
        "sun_ra": sun_ra,
        "sun_dec": sun_dec,
        "moon_ra": moon_ra,
        "moon_dec": moon_dec,
        "sun_separation": float(healpix.angular_separation(ra, dec, sun_ra, sun_dec)),
        "moon_separation": float(healpix.angular_separation(ra, dec, moon_ra, moon_dec)),
    }


def summarize(
    skymap: SkyMap, time: str | datetime | None = None, *, ephemeris: bool = True
) -> SkyMapSummary:
    """Credible areas, maximum-probability position, distance and (optionally) Sun/Moon figures.

    ``time`` defaults to the header's DATE-OBS. The ephemeris is the only part that needs
    astropy's coordinates; pass ``ephemeris=False`` to skip it.
    """
    uniq, density = skymap.uniq, skymap.probdensity
    area10, area50, area90 = (float(a) for a in healpix.credible_areas(uniq, density))
    ra, dec = healpix.max_probability_position(uniq, density)
    gal_l, gal_b = equatorial_to_galactic(ra, dec)
    distance = _distance(skymap)
    when = time if time is not None else skymap.header.get("DATE-OBS")
    extra = _ephemeris(when, ra, dec) if ephemeris and isinstance(when, str | datetime) else {}
    return SkyMapSummary(
        area10=area10,
        area50=area50,
        area90=area90,
        max_ra=ra,
        max_dec=dec,
        max_l=float(gal_l),
        max_b=float(gal_b),
        distance_mean=None if distance is None else distance[0],
        distance_std=None if distance is None else distance[1],
        total_probability=healpix.total_probability(uniq, density),
        pixel_count=int(uniq.size),
        orders=tuple(int(o) for o in np.unique(healpix.uniq_to_order_ipix(uniq)[0])),
        **extra,
    )
