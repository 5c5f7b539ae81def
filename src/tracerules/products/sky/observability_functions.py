"""Observability in the expression language: `alt(ra, dec, 'mwa')`, `visible_prob('atca')`, ...

Every function reads the evaluation clock (`now()`: the notice's time in a dry run, never the
wall clock) and names its site with a literal string, resolved when the rules load, so an
unknown site is an error at its place in the file. The maths is in
:mod:`tracerules.products.sky.observability` and :mod:`tracerules.products.sky.visibility`;
numpy and erfa are imported on first use only: validating rules never pays for them.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from tracerules.dsl.builtins import Builtin
from tracerules.dsl.context import Context
from tracerules.dsl.values import Missing, Type
from tracerules.products.sky.sites import Site

if TYPE_CHECKING:
    from tracerules.products.sky.visibility import Pixels

__all__ = ["OBSERVABILITY_BUILTINS", "pixels_of", "warm_up"]


@cache  # imported on first use; then one dictionary look-up per call
def _sky() -> Any:
    from tracerules.products.sky import observability

    return observability


@cache
def _windows() -> Any:
    from tracerules.products.sky import visibility

    return visibility


def warm_up() -> None:
    """Import the maths (numpy, erfa, the Earth frame) before the first notice needs it: its
    first use costs about 0.1 s, which a live alert should not wait for."""
    _sky()
    _windows()
    _altaz_scalar()


def _dec(dec: float) -> float:
    if not -90.0 <= dec <= 90.0:
        raise ValueError(f"declination {dec:g} is outside [-90, 90]")
    return float(dec)


@cache
def _altaz_scalar() -> Callable[[float, float, Site, float], tuple[float, float]]:
    from tracerules.products.sky.observability_scalar import altaz_scalar

    return altaz_scalar


def _alt(ctx: Context, ra: float, dec: float, site: Site) -> float:
    # The hot path: one position at one time, straight to the plain-float maths (which
    # checks the declination itself).
    return _altaz_scalar()(float(ra), float(dec), site, float(ctx.now))[0]


def _az(ctx: Context, ra: float, dec: float, site: Site) -> float:
    return _altaz_scalar()(float(ra), float(dec), site, float(ctx.now))[1]


def _airmass(ctx: Context, ra: float, dec: float, site: Site) -> float:
    return float(_sky().airmass(_alt(ctx, ra, dec, site)))


def _hour_angle(ctx: Context, ra: float, dec: float, site: Site) -> float:
    return float(_sky().hour_angle(float(ra), _dec(dec), site, ctx.now))


def _sun_alt(ctx: Context, site: Site) -> float:
    return float(_sky().sun_altaz(site, ctx.now)[0])


def _moon_alt(ctx: Context, site: Site) -> float:
    return float(_sky().moon_altaz(site, ctx.now)[0])


def _moon_sep(ctx: Context, ra: float, dec: float) -> float:
    return float(_sky().moon_separation(float(ra), _dec(dec), ctx.now))


def _moon_illumination(ctx: Context) -> float:
    return float(_sky().moon_illumination(ctx.now))


def _window(ctx: Context, duration: float) -> tuple[float, float]:
    if duration < 0:
        raise ValueError("the window must not be negative")
    return ctx.now, ctx.now + float(duration)


def _intervals(ctx: Context, ra: float, dec: float, site: Site, duration: float) -> Any:
    start, end = _window(ctx, duration)
    return _windows().visible_intervals(float(ra), _dec(dec), site, start, end)


def _visible_within(ctx: Context, ra: float, dec: float, site: Site, duration: float) -> bool:
    return bool(_intervals(ctx, ra, dec, site, duration))


def _rises_within(ctx: Context, ra: float, dec: float, site: Site, duration: float) -> bool:
    intervals = _intervals(ctx, ra, dec, site, duration)
    return bool(intervals) and intervals[0][0] > ctx.now


def _next_visible(ctx: Context, ra: float, dec: float, site: Site) -> float | Missing:
    windows = _windows()
    intervals = windows.visible_intervals(
        float(ra), _dec(dec), site, ctx.now, ctx.now + windows.MAX_WINDOW
    )
    if not intervals:
        days = windows.MAX_WINDOW / 86400.0
        return Missing(f"not visible from {site.name} within the next {days:g} d")
    return float(intervals[0][0])


# -- sky maps -------------------------------------------------------------------------------------

_pixels: weakref.WeakKeyDictionary[Any, Pixels] = weakref.WeakKeyDictionary()


def pixels_of(figures: Any) -> Pixels:
    """The pixels of a decoded map (SkyMapFigures), built once per map and kept with it."""
    found = _pixels.get(figures)
    if found is None:
        skymap = figures.skymap
        found = _windows().Pixels.of_map(skymap.uniq, skymap.probdensity)
        _pixels[figures] = found
    return found


def _map_pixels(ctx: Context) -> Pixels | Missing:
    from tracerules.products.sky.skymap_functions import SkyMapFigures

    value = ctx.extra("skymap")
    if isinstance(value, Missing):
        return value
    if not isinstance(value, SkyMapFigures):
        return Missing("the skymap value is not a sky map")
    return pixels_of(value)


def _visible_prob(ctx: Context, site: Site) -> float | Missing:
    pixels = _map_pixels(ctx)
    if isinstance(pixels, Missing):
        return pixels
    return float(_windows().visible_probability(pixels, site, ctx.now))


def _visible_prob_within(ctx: Context, site: Site, duration: float) -> float | Missing:
    pixels = _map_pixels(ctx)
    if isinstance(pixels, Missing):
        return pixels
    start, end = _window(ctx, duration)
    return float(_windows().best_visible_time(pixels, site, start, end)[1])


def _best_visible(index: int) -> Callable[[Context, Site], float | Missing]:
    def impl(ctx: Context, site: Site) -> float | Missing:
        pixels = _map_pixels(ctx)
        if isinstance(pixels, Missing):
            return pixels
        best = _windows().best_visible_pixel(pixels, site, ctx.now)
        if best is None:
            return Missing(f"no part of the sky map is visible from {site.name} now")
        return float((pixels.ra, pixels.dec)[index][best])

    return impl


N, B, S, T, D, A = Type.NUMBER, Type.BOOL, Type.STRING, Type.TIME, Type.DURATION, Type.ANGLE


def _fn(
    name: str,
    params: tuple[Type, ...],
    returns: Type,
    impl: Callable[..., Any],
    doc: str,
    site_arg: int | None,
    category: str = "observability",
) -> Builtin:
    return Builtin(
        name,
        params,
        returns,
        impl,
        doc,
        category,
        needs_context=True,
        site_arg=site_arg,
        figure=True,
    )


OBSERVABILITY_BUILTINS = (
    _fn("alt", (A, A, S), A, _alt, "elevation of (ra, dec) at the site now (no refraction)", 2),
    _fn("az", (A, A, S), A, _az, "azimuth of (ra, dec) at the site now, from north to east", 2),
    _fn(
        "airmass",
        (A, A, S),
        N,
        _airmass,
        "sec(zenith distance) of (ra, dec) at the site now; infinite below the horizon",
        2,
    ),
    _fn(
        "hour_angle",
        (A, A, S),
        A,
        _hour_angle,
        "hour angle of (ra, dec) at the site now, in [-180, 180) deg (15 deg per hour); "
        "negative while rising",
        2,
    ),
    _fn("sun_alt", (S,), A, _sun_alt, "elevation of the Sun at the site now", 0),
    _fn("moon_alt", (S,), A, _moon_alt, "elevation of the Moon at the site now", 0),
    _fn("moon_sep", (A, A), A, _moon_sep, "angle between (ra, dec) and the Moon now", None),
    _fn(
        "moon_illumination",
        (),
        N,
        _moon_illumination,
        "illuminated fraction of the Moon now, 0 (new) to 1 (full)",
        None,
    ),
    _fn(
        "visible_within",
        (A, A, S, D),
        B,
        _visible_within,
        "(ra, dec) is above the site's elevation limit (with the Sun below its Sun limit, "
        "if it has one) at some time from now to now + duration (at most 7 d)",
        2,
    ),
    _fn(
        "rises_within",
        (A, A, S, D),
        B,
        _rises_within,
        "(ra, dec) is not visible from the site now but becomes visible within the duration",
        2,
    ),
    _fn(
        "next_visible",
        (A, A, S),
        T,
        _next_visible,
        "the first time from now when (ra, dec) is visible from the site (now if it is); "
        "missing if not within 7 d",
        2,
    ),
    _fn(
        "visible_prob",
        (S,),
        N,
        _visible_prob,
        "probability of the sky map above the site's elevation limit now (0 in daylight at a "
        "site with a Sun limit)",
        0,
        "skymap",
    ),
    _fn(
        "visible_prob_within",
        (S, D),
        N,
        _visible_prob_within,
        "the most sky-map probability visible from the site at one time from now to "
        "now + duration (at most 7 d)",
        0,
        "skymap",
    ),
    _fn(
        "best_visible_ra",
        (S,),
        A,
        _best_visible(0),
        "right ascension of the most probable sky-map position visible from the site now",
        0,
        "skymap",
    ),
    _fn(
        "best_visible_dec",
        (S,),
        A,
        _best_visible(1),
        "declination of the most probable sky-map position visible from the site now",
        0,
        "skymap",
    ),
)
