"""Sky-map figures for conditions: `area(0.9)`, `dist_mean()`, `prob_in_circle(...)`, ...

A notice's sky map is decoded at most once, and only when a condition or a product asks for
it. The engine offers every parsed notice to :func:`skymap_extras`; for an ``igwn.gwalert``
alert carrying ``event.skymap`` that gives a lazy ``skymap`` factory, which the built-in
functions below reach through :meth:`Context.extra`. Decoded maps are also kept in a small
memo keyed by the payload's hash, so the ``gw-alert`` product that runs right after the
decision reuses the map the conditions decoded instead of decoding it again.

numpy and astropy are imported on first use only: validating rules never pays for them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from tracerules.dsl.builtins import Builtin
from tracerules.dsl.context import Context
from tracerules.dsl.values import Missing, Type

if TYPE_CHECKING:
    from tracerules.products.sky.skymap import SkyMap, SkyMapSummary

__all__ = [
    "SkyMapFigures",
    "decode_count",
    "figures_for_alert",
    "figures_for_payload",
    "forget",
    "skymap_extras",
]

_MEMO_SIZE = 4  # a few alerts in flight; each decoded map is about 1 MB
_memo: OrderedDict[str, SkyMapFigures] = OrderedDict()
_lock = threading.Lock()
_decodes = [0]


def decode_count() -> int:
    """How many sky maps this process has tried to decode (tests: once per notice)."""
    return _decodes[0]


def forget() -> None:
    """Drop the memo of recently decoded maps."""
    with _lock:
        _memo.clear()


class SkyMapFigures:
    """One decoded sky map, the bytes it came from, and its figures computed on first use."""

    def __init__(self, skymap: SkyMap, raw: bytes) -> None:
        self.skymap = skymap
        self.raw = raw  # the FITS file as received (after base64), for the product to write
        self._areas: dict[float, float] = {}
        self._cache: dict[str, Any] = {}

    def _once(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def area(self, level: float) -> float:
        """Area (deg^2) of the smallest region holding ``level`` of the probability."""
        if not 0.0 < level <= 1.0:
            raise ValueError(f"the credible level must be in (0, 1], not {level:g}")
        if level not in self._areas:
            from tracerules.products.sky import healpix

            areas = healpix.credible_areas(self.skymap.uniq, self.skymap.probdensity, [level])
            self._areas[level] = float(areas[0])
        return self._areas[level]

    def distance(self) -> tuple[float, float] | None:
        """Sky-marginalised distance mean and std (Mpc), or None (Burst maps)."""

        def compute() -> tuple[float, float] | None:
            from tracerules.products.sky import healpix

            m = self.skymap
            if m.distmu is None or m.distsigma is None or m.distnorm is None:
                return None
            return healpix.marginal_distance(
                m.uniq, m.probdensity, m.distmu, m.distsigma, m.distnorm
            )

        result: tuple[float, float] | None = self._once("distance", compute)
        return result

    def max_position(self) -> tuple[float, float]:
        """(RA, Dec) in degrees of the densest pixel's centre."""
        from tracerules.products.sky import healpix

        m = self.skymap
        position: tuple[float, float] = self._once(
            "max", lambda: healpix.max_probability_position(m.uniq, m.probdensity)
        )
        return position

    def prob_in_circle(self, ra: float, dec: float, radius: float) -> float:
        """Probability inside a cone (degrees)."""
        from tracerules.products.sky import healpix

        if not -90.0 <= dec <= 90.0 or radius < 0:
            raise ValueError(f"no such circle: dec {dec:g}, radius {radius:g}")
        return healpix.probability_in_circle(
            self.skymap.uniq, self.skymap.probdensity, ra, dec, radius
        )

    def credible_level(self, ra: float, dec: float) -> float:
        """The smallest credible level whose region contains (ra, dec), as skyTag tags it.

        0 in the densest pixel, rising to 1 outside the map's support (zero density, or no
        pixel); a position is in the p credible region of :meth:`area` when it is below p.
        """
        from tracerules.products.sky import healpix, sky_geometry

        if not -90.0 <= dec <= 90.0:
            raise ValueError(f"no such position: dec {dec:g}")
        m = self.skymap
        levels = self._once("levels", lambda: healpix.credible_levels(m.uniq, m.probdensity))
        row = int(sky_geometry.multiorder_lookup(m.uniq, [ra], [dec])[0])
        return 1.0 if row < 0 else float(levels[row])

    def summary(self, time: str | None = None) -> SkyMapSummary:
        """Every value-added figure, Sun and Moon included (for products, not conditions)."""
        from tracerules.products.sky.skymap import summarize

        result: SkyMapSummary = self._once(f"summary:{time}", lambda: summarize(self.skymap, time))
        return result


def warm_up() -> None:
    """Import the sky-map maths (numpy, the FITS reader, HEALPix) before the first alert
    needs it, so the first LVK alert is not the one that pays for the imports."""
    from tracerules.products.sky import healpix, skymap  # noqa: F401


def _decode(text: str | bytes) -> SkyMapFigures:
    from tracerules.products.sky.skymap import SkyMapError, decode_skymap

    with _lock:
        _decodes[0] += 1  # attempts, failed ones included: a broken map is tried once too
    data = text.encode("ascii", "replace") if isinstance(text, str) else text
    if data.startswith((b"SIMPLE", b"\x1f\x8b")):
        raw = bytes(data)
    else:
        try:
            raw = base64.b64decode(b"".join(data.split()), validate=True)
        except binascii.Error as exc:
            raise SkyMapError(f"sky map is neither FITS nor valid base64: {exc}") from exc
    return SkyMapFigures(decode_skymap(raw), raw)


def figures_for_payload(text: str | bytes) -> SkyMapFigures:
    """The decoded map of a base64 (or raw FITS) payload, from the memo when seen recently.

    Raises :class:`~tracerules.products.sky.skymap.SkyMapError` for anything that is not a map.
    """
    data = text.encode("ascii", "replace") if isinstance(text, str) else text
    key = hashlib.sha256(data).hexdigest()
    with _lock:
        if key in _memo:
            _memo.move_to_end(key)
            return _memo[key]
    figures = _decode(data)
    with _lock:
        _memo[key] = figures
        while len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)
    return figures


def skymap_payload(alert: Any) -> str | None:
    """The base64 sky map of an ``igwn.gwalert`` alert, or None (retractions have none)."""
    event = alert.get("event") if isinstance(alert, Mapping) else None
    payload = event.get("skymap") if isinstance(event, Mapping) else None
    return payload if isinstance(payload, str) and payload else None


def figures_for_alert(alert: Any) -> SkyMapFigures | None:
    """The decoded sky map of an alert (memoised), or None when it carries none."""
    payload = skymap_payload(alert)
    return None if payload is None else figures_for_payload(payload)


def skymap_extras(notice: Any, doc: Any) -> dict[str, Callable[[], Any]]:
    """The engine's per-notice lazy values: ``skymap`` for alerts that carry one.

    The factory is shared by every trigger that reads this notice and remembers its result
    (or its failure), so a map is decoded once however many conditions ask.
    """
    payload = skymap_payload(doc)
    if payload is None:
        return {}
    box: list[Any] = []

    def factory() -> SkyMapFigures:
        if not box:
            try:
                box.append(figures_for_payload(payload))
            except Exception as err:  # remembered: a broken map is not decoded again
                box.append(err)
        if isinstance(box[0], Exception):
            raise box[0]
        figures: SkyMapFigures = box[0]
        return figures

    return {"skymap": factory}


# --- the built-in functions -------------------------------------------------------------------


def _figures(ctx: Context) -> SkyMapFigures | Missing:
    value = ctx.extra("skymap")
    if isinstance(value, SkyMapFigures | Missing):
        return value
    return Missing("the skymap value is not a sky map")


def _area(ctx: Context, level: float) -> float | Missing:
    figures = _figures(ctx)
    return figures if isinstance(figures, Missing) else figures.area(float(level))


def _distance(index: int) -> Callable[[Context], float | Missing]:
    def impl(ctx: Context) -> float | Missing:
        figures = _figures(ctx)
        if isinstance(figures, Missing):
            return figures
        distance = figures.distance()
        if distance is None:
            return Missing("the sky map has no distance (a Burst map)")
        return distance[index]

    return impl


def _max_position(index: int) -> Callable[[Context], float | Missing]:
    def impl(ctx: Context) -> float | Missing:
        figures = _figures(ctx)
        return figures if isinstance(figures, Missing) else figures.max_position()[index]

    return impl


def _prob_in_circle(ctx: Context, ra: float, dec: float, radius: float) -> float | Missing:
    figures = _figures(ctx)
    if isinstance(figures, Missing):
        return figures
    return figures.prob_in_circle(float(ra), float(dec), float(radius))


def _credible_level(ctx: Context, ra: float, dec: float) -> float | Missing:
    figures = _figures(ctx)
    if isinstance(figures, Missing):
        return figures
    return figures.credible_level(float(ra), float(dec))


CREDIBLE_LEVEL = Builtin(
    "credible_level",
    (Type.ANGLE, Type.ANGLE),
    Type.NUMBER,
    _credible_level,
    "smallest credible level whose region holds (ra, dec): 0 at the most probable pixel, 1 "
    "outside the map, e.g. credible_level(ra, dec) <= 0.9 (as skyTag tags a position)",
    "skymap",
    needs_context=True,
)

N, A = Type.NUMBER, Type.ANGLE
SKYMAP_BUILTINS = (
    Builtin(
        "area",
        (N,),
        N,
        _area,
        "area (deg2) of the smallest sky region holding this much probability, e.g. area(0.9)",
        "skymap",
        needs_context=True,
    ),
    Builtin(
        "dist_mean",
        (),
        N,
        _distance(0),
        "posterior mean distance (Mpc) over the whole sky; missing for Burst maps",
        "skymap",
        needs_context=True,
    ),
    Builtin(
        "dist_std",
        (),
        N,
        _distance(1),
        "posterior standard deviation of the distance (Mpc); missing for Burst maps",
        "skymap",
        needs_context=True,
    ),
    Builtin(
        "prob_in_circle",
        (A, A, A),
        N,
        _prob_in_circle,
        "probability that the source lies within radius of (ra, dec)",
        "skymap",
        needs_context=True,
    ),
    Builtin(
        "maxprob_ra",
        (),
        A,
        _max_position(0),
        "right ascension of the most probable sky position",
        "skymap",
        needs_context=True,
    ),
    Builtin(
        "maxprob_dec",
        (),
        A,
        _max_position(1),
        "declination of the most probable sky position",
        "skymap",
        needs_context=True,
    ),
    CREDIBLE_LEVEL,
)
