"""Observing sites as rule data: where a telescope is, and when it can observe.

A rule file declares sites under ``sites:`` (see :class:`tracerules.rules.models.SiteSpec`);
the compiled rule set holds them as :class:`Site` objects, keyed by name. Nothing here imports
numpy: validating rules never pays for the maths in :mod:`tracerules.products.sky.observability`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

__all__ = ["Site", "parse_angle"]

_SEXAGESIMAL = re.compile(
    r"^\s*(?P<sign>[+-]?)\s*(?P<d>\d+(?:\.\d*)?)"
    r"(?:[:\s]+(?P<m>\d+(?:\.\d*)?)(?:[:\s]+(?P<s>\d+(?:\.\d*)?))?)?\s*(?P<dir>[NSEW]?)\s*$",
    re.IGNORECASE,
)


def parse_angle(value: float | int | str) -> float:
    """Degrees from a number or from text like ``-26:42:11.95`` or ``116:40:14.93 E``.

    A trailing S or W negates; minutes and seconds must be below 60.
    """
    if isinstance(value, bool):
        raise ValueError("an angle must be a number of degrees or text like '-26:42:11.95'")
    if isinstance(value, int | float):
        return float(value)
    match = _SEXAGESIMAL.match(value)
    if match is None:
        raise ValueError(f"'{value}' is not an angle: write degrees, or 'DD:MM:SS.s' text")
    minutes, seconds = float(match["m"] or 0.0), float(match["s"] or 0.0)
    if minutes >= 60.0 or seconds >= 60.0:
        raise ValueError(f"'{value}': minutes and seconds must be below 60")
    degrees = float(match["d"]) + minutes / 60.0 + seconds / 3600.0
    negative = (match["sign"] == "-") != (match["dir"].upper() in ("S", "W"))
    return -degrees if negative else degrees


@dataclass(frozen=True, slots=True)
class Site:
    """A place on Earth (WGS84 geodetic) and the limits within which it observes.

    ``elevation_limit`` is the lowest elevation (degrees) the telescope points at;
    ``sun_limit``, when set, is the Sun's highest elevation at which it observes (an optical
    site's twilight, e.g. -12 or -18): a target is *visible* when it is above the elevation
    limit and, for a site with a Sun limit, the Sun is below it.
    """

    name: str
    latitude: float  # degrees, north positive
    longitude: float  # degrees, east positive
    height: float  # metres above the WGS84 ellipsoid
    elevation_limit: float  # degrees
    sun_limit: float | None = None  # degrees; None: observes by day too
    description: str | None = None
    # sin and cos of the latitude and the longitude in radians, for the hot path.
    terms: tuple[float, float, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not -90.0 <= self.latitude <= 90.0:
            raise ValueError(f"latitude {self.latitude:g} is outside [-90, 90]")
        if not -180.0 <= self.longitude <= 360.0:
            raise ValueError(f"longitude {self.longitude:g} is outside [-180, 360]")
        if not -90.0 <= self.elevation_limit <= 90.0:
            raise ValueError(f"elevation limit {self.elevation_limit:g} is outside [-90, 90]")
        if self.sun_limit is not None and not -90.0 <= self.sun_limit <= 90.0:
            raise ValueError(f"Sun limit {self.sun_limit:g} is outside [-90, 90]")
        lat = math.radians(self.latitude)
        terms = (math.sin(lat), math.cos(lat), math.radians(self.longitude))
        object.__setattr__(self, "terms", terms)  # frozen: set once, here

    def __str__(self) -> str:
        return self.name
