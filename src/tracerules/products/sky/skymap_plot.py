"""``skymap.png``: the sky map for the person on shift, drawn with Matplotlib Agg and Pillow.

Left, an all-sky Mollweide view in equatorial ICRS coordinates, centred so that the map's
edge never cuts the 90% region (:func:`sky_plan.choose_centre`). Beside it, when the region is
small enough to be a speck on the sky, a zoom on it with an RA/Dec grid and a scale bar
(:func:`sky_plan.zoom_box`). Both show the probability density as a fraction of its peak on a
square-root scale (:func:`sky_plan.shade`), and the 50%/90% credible contours looked up in the
multi-order map itself (:func:`sky_geometry.multiorder_lookup`), so they enclose exactly the
pixels counted by the reported areas. Also: the galactic plane, the Sun and the Moon with the
footprints within which they hinder observing, a side panel of key numbers and a provenance
stamp, written both visibly and into the PNG's text chunks.

Matplotlib draws the graphics through its object API on an explicit Agg canvas (no pyplot
state, so renderings in several threads do not interfere); the words are drawn by
:mod:`skymap_text`, which is what keeps a figure within a few tens of milliseconds.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tracerules.products.actions.provenance import Provenance
from tracerules.products.sky import healpix, sky_geometry, sky_plan
from tracerules.products.sky.skymap import SkyMap, SkyMapSummary
from tracerules.products.sky.skymap_canvas import Canvas
from tracerules.products.sky.skymap_raster import CMAP, map_images, shaded_rgba, zoom_images
from tracerules.products.sky.skymap_text import FAINT, Lettering

_SQDEG_PER_SR = (180.0 / np.pi) ** 2
_CONTOUR_COLOURS = ("#0b3d91", "#2aa198", "#6c71c4")
_SUN, _MOON, _GALAXY, _CROSS, _BOX = "#e08e0b", "#6b7b8c", "#859900", "#dc322f", "#d33682"
# Axes rectangles (figure fractions): all-sky with and without the zoom beside it, the zoom.
_SKY_WITH_ZOOM = (0.01, 0.22, 0.5, 0.66)
_SKY_ALONE = (0.01, 0.17, 0.77, 0.72)
_ZOOM = (0.545, 0.25, 0.225, 0.6)
_PANEL_X = 0.805


@dataclass(frozen=True, slots=True)
class PlotOptions:
    """What to draw, and how big. Radii and levels as gocart draws them by default."""

    width_px: int = 1200
    height_px: int = 560
    dpi: int = 100
    levels: tuple[float, ...] = (0.5, 0.9)
    galactic_plane: bool = True
    sun_moon: bool = True
    sun_radius: float = 33.0
    moon_radius: float = 20.0
    zoom: bool = True


@dataclass(frozen=True, slots=True)
class Plan:
    """The figure's decisions for one map: see :mod:`sky_plan`."""

    centre: float
    zoom: sky_plan.Zoom | None
    peak: float  # highest density, deg^-2
    levels: Any  # credible level of each map pixel


def plan_figure(skymap: SkyMap, options: PlotOptions | None = None) -> Plan:
    """Centre, zoom box and colour scale of ``skymap.png`` for this map."""
    opts = options or PlotOptions()
    levels = healpix.credible_levels(skymap.uniq, skymap.probdensity)
    best = int(np.argmax(skymap.probdensity))
    max_ra = float(healpix.uniq_centres(skymap.uniq[best : best + 1])[0][0])
    centre = sky_plan.choose_centre(skymap.uniq, levels, max_ra)
    zoom = sky_plan.zoom_box(skymap.uniq, levels, centre=centre) if opts.zoom else None
    return Plan(centre, zoom, float(skymap.probdensity[best]) / _SQDEG_PER_SR, levels)


def _far_text(far: Any) -> str:
    if not isinstance(far, int | float) or isinstance(far, bool) or far <= 0:
        return "-"
    years = 1.0 / (far * 365.25 * 86400.0)
    if years >= 1.0:
        return f"1 per {years:,.3g} yr"
    return f"1 per {years * 365.25:,.3g} d"


def key_numbers(alert: Mapping[str, Any], summary: SkyMapSummary | None) -> list[tuple[str, str]]:
    """The side panel: (label, value) rows from the alert and the map's figures."""
    given = alert.get("event")
    event: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    rows = [
        ("Superevent", str(alert.get("superevent_id", "-"))),
        ("Alert", f"{alert.get('alert_type', '-')} at {alert.get('time_created', '-')}"),
        ("Event time", str(event.get("time", "-"))),
        ("Group", f"{event.get('group', '-')} / {event.get('pipeline', '-')}"),
        ("FAR", _far_text(event.get("far"))),
        ("Significant", str(event.get("significant", "-"))),
    ]
    classification = event.get("classification")
    if isinstance(classification, Mapping) and classification:
        best = sorted(classification.items(), key=lambda kv: -float(kv[1] or 0))[:2]
        rows.append(("Class", ", ".join(f"{k} {float(v or 0):.2f}" for k, v in best)))
    if summary is not None:
        s = summary
        rows += [
            ("Area 50% / 90%", f"{s.area50:,.1f} / {s.area90:,.1f} deg²"),
            ("Max prob. RA, Dec (ICRS)", f"{s.max_ra:.3f}, {s.max_dec:+.3f} deg"),
            ("Max prob. l, b", f"{s.max_l:.3f}, {s.max_b:+.3f} deg"),
        ]
        if s.distance_mean is not None and s.distance_std is not None:
            rows.append(("Distance", f"{s.distance_mean:,.1f} ± {s.distance_std:,.1f} Mpc"))
        if s.sun_separation is not None and s.moon_separation is not None:
            rows.append(
                ("Sun / Moon sep.", f"{s.sun_separation:.1f} / {s.moon_separation:.1f} deg")
            )
        rows.append(("Pixels", f"{s.pixel_count} (orders {min(s.orders)}-{max(s.orders)})"))
    return rows


# --- drawing ----------------------------------------------------------------------------------


def _joined(lines: Sequence[tuple[Any, Any]]) -> tuple[Any, Any]:
    """Many polylines as one, NaN-separated: one Matplotlib artist instead of many."""
    if not lines:
        return np.array([]), np.array([])
    gap = np.array([np.nan])
    xs = [part for x, _ in lines for part in (np.asarray(x, dtype=np.float64), gap)]
    ys = [part for _, y in lines for part in (np.asarray(y, dtype=np.float64), gap)]
    return np.concatenate(xs), np.concatenate(ys)


def _contours(ax: Any, x: Any, y: Any, level: Any, opts: PlotOptions) -> list[Any]:
    """Credible contours traced by contourpy (Matplotlib's own tracer, minus the ContourSet
    machinery) and drawn as one line per level."""
    import contourpy

    entries = []
    tracer = contourpy.contour_generator(
        x, y, np.ma.masked_invalid(level), line_type=contourpy.LineType.Separate
    )
    for i, value in enumerate(sorted(opts.levels)):
        colour = _CONTOUR_COLOURS[i % len(_CONTOUR_COLOURS)]
        parts: Any = tracer.lines(value)  # (n, 2) arrays with LineType.Separate
        lines = [(part[:, 0], part[:, 1]) for part in parts]
        if lines:
            ax.plot(*_joined(lines), color=colour, lw=1.2, zorder=4)
        entries.append((f"{value:.0%} credible region", ("line", _rgb(colour))))
    return entries


def _curve(ax: Any, ra: Any, dec: Any, centre: float, **style: Any) -> None:
    wrapped = sky_geometry.break_wraps(ra, dec, centre)
    ax.plot(*sky_geometry.mollweide(*wrapped, centre), **style)


@functools.lru_cache(maxsize=8)
def _graticule_lines(centre: float) -> tuple[Any, Any]:
    along = np.linspace(-179.999, 179.999, 361) + centre
    lines = [
        sky_geometry.mollweide(along, np.full(along.size, dec), centre)
        for dec in (-60, -30, 0, 30, 60)
    ]
    up = np.linspace(-90.0, 90.0, 181)
    for ra in range(0, 360, 30):
        if abs((ra - centre + 180) % 360 - 180) < 179.9:
            lines.append(sky_geometry.mollweide(np.full(up.size, ra), up, centre))
    return _joined(lines)


@functools.lru_cache(maxsize=8)
def _galactic_plane(centre: float) -> tuple[Any, Any]:
    wrapped = sky_geometry.break_wraps(*sky_geometry.galactic_plane(), centre)
    return sky_geometry.mollweide(*wrapped, centre)


def _graticule(ax: Any, centre: float) -> None:
    ax.plot(*_graticule_lines(centre), color="#9aa4ad", lw=0.4, alpha=0.8, zorder=2)
    t = np.linspace(0, 2 * np.pi, 721)
    x_max, y_max = sky_geometry.X_MAX, sky_geometry.Y_MAX
    ax.plot(x_max * np.cos(t), y_max * np.sin(t), color="#3b4650", linewidth=0.8, zorder=6)


def _marker(ax: Any, x: float, y: float, colour: str, marker: str, size: float) -> None:
    edge = {"mec": "black", "mew": 0.5} if marker == "o" else {"mew": 1.4}
    ax.plot([x], [y], ls="", marker=marker, ms=size, color=colour, zorder=8, **edge)


def _bodies(ax: Any, summary: SkyMapSummary, opts: PlotOptions, centre: float) -> list[Any]:
    entries = []
    for name, ra, dec, radius, colour in (
        ("Sun", summary.sun_ra, summary.sun_dec, opts.sun_radius, _SUN),
        ("Moon", summary.moon_ra, summary.moon_dec, opts.moon_radius, _MOON),
    ):
        if ra is None or dec is None:
            continue
        circle = sky_geometry.small_circle(ra, dec, radius)
        _curve(ax, *circle, centre, color=colour, lw=1.0, zorder=5)
        x, y = sky_geometry.mollweide(ra, dec, centre)
        _marker(ax, float(x), float(y), colour, "o", 6.5)
        entries.append((f"{name} (within {radius:g}°)", ("dot", _rgb(colour))))
    return entries


def _box_outline(ax: Any, zoom: sky_plan.Zoom, centre: float) -> None:
    left, right = zoom.ra + zoom.ra_half, zoom.ra - zoom.ra_half
    low, high = zoom.dec - zoom.half_height, zoom.dec + zoom.half_height
    side = np.linspace(0.0, 1.0, 40)
    ra = np.concatenate([left + (right - left) * side, np.full(40, right)])
    ra = np.concatenate([ra, right + (left - right) * side, np.full(40, left)])
    dec = np.concatenate([np.full(40, low), low + (high - low) * side])
    dec = np.concatenate([dec, np.full(40, high), high + (low - high) * side])
    ax.plot(*sky_geometry.mollweide(ra, dec, centre), color=_BOX, lw=1.0, zorder=8)


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _pixel_box(ax: Any, x0: float, x1: float, y0: float, y1: float, height: int) -> Any:
    """Image-pixel box (left, top, right, bottom) of a data rectangle of ``ax``."""
    (ax0, ay0), (ax1, ay1) = ax.transData.transform([(x0, y0), (x1, y1)])
    xs, ys = sorted((ax0, ax1)), sorted((height - ay0, height - ay1))
    return round(xs[0]), round(ys[0]), round(xs[1]), round(ys[1])


def _draw_sky(
    ax: Any, skymap: SkyMap, summary: SkyMapSummary, plan: Plan, opts: PlotOptions, height: int
) -> tuple[Any, list[Any]]:
    """Vector layers of the all-sky map; returns the shaded raster and its pixel box too."""
    x_max, y_max = sky_geometry.X_MAX, sky_geometry.Y_MAX
    ax.ax.set_xlim(-x_max * 1.04, x_max * 1.01)
    ax.ax.set_ylim(-y_max * 1.02, y_max * 1.02)
    ax.ax.apply_aspect()
    box = _pixel_box(ax.ax, -x_max, x_max, -y_max, y_max, height)
    # One raster cell per two screen pixels each way (0.6 to 0.9 deg): a quarter of the
    # look-ups; the zoom shows the detail, and the image is scaled up without smoothing.
    x, y, density, level = map_images(skymap, (box[2] - box[0]) // 2, plan.centre, plan.levels)
    entries = _contours(ax, x, y, level, opts)
    _graticule(ax, plan.centre)
    if opts.galactic_plane:
        ax.plot(*_galactic_plane(plan.centre), color=_GALAXY, lw=1.0, ls="--", zorder=3)
        entries.append(("Galactic plane", ("line", _rgb(_GALAXY), True)))
    if opts.sun_moon:
        entries += _bodies(ax, summary, opts, plan.centre)
    mx, my = sky_geometry.mollweide(summary.max_ra, summary.max_dec, plan.centre)
    _marker(ax, float(mx), float(my), _CROSS, "+", 9)
    entries.append(("Most probable position", ("cross", _rgb(_CROSS))))
    if plan.zoom is not None:
        _box_outline(ax, plan.zoom, plan.centre)
        entries.append(("Zoomed area", ("line", _rgb(_BOX))))
    return (np.flipud(shaded_rgba(density, plan.peak)), box), entries


def _grid_values(centre: float, half: float, step: float) -> Any:
    first = math.ceil((centre - half) / step)
    return np.arange(first, math.floor((centre + half) / step) + 1) * step


def _draw_zoom(
    ax: Any, skymap: SkyMap, summary: SkyMapSummary, plan: Plan, opts: PlotOptions, height: int
) -> tuple[Any, Any]:
    """Vector layers of the zoom; returns its shaded raster and pixel box."""
    zoom = plan.zoom
    assert zoom is not None
    left, right = zoom.ra + zoom.ra_half, zoom.ra - zoom.ra_half
    low, high = zoom.dec - zoom.half_height, zoom.dec + zoom.half_height
    ax.ax.set_xlim(left, right)  # RA increases to the left, as on the sky
    ax.ax.set_ylim(low, high)
    ax.ax.set_aspect(1.0 / math.cos(math.radians(zoom.dec)))
    ax.ax.apply_aspect()
    box = _pixel_box(ax.ax, left, right, low, high, height)
    # Half the panel's pixels each way: a quarter of the look-ups, and still finer than the
    # map's own pixels for any zoom wider than a degree or so.
    cells = ((box[2] - box[0] + 1) // 2, (box[3] - box[1] + 1) // 2)
    ra, dec, density, level = zoom_images(skymap, plan.levels, zoom, cells)
    _contours(ax, ra, dec, level, opts)
    grid = [((v, v), (low, high)) for v in _grid_values(zoom.ra, zoom.ra_half, zoom.ra_step)]
    grid += [
        ((left, right), (v, v)) for v in _grid_values(zoom.dec, zoom.half_height, zoom.dec_step)
    ]
    ax.plot(*_joined(grid), color="#9aa4ad", lw=0.5, zorder=2)
    cross_ra = zoom.ra + (summary.max_ra - zoom.ra + 180.0) % 360.0 - 180.0
    _marker(ax, cross_ra, summary.max_dec, _CROSS, "+", 11)
    bar_dec = low + 0.08 * (high - low)
    bar_start = left - 0.08 * (left - right)
    # The panel's scale: true at the box's central Dec, where its aspect ratio is set.
    bar_ra = zoom.scale / math.cos(math.radians(zoom.dec))
    ax.plot([bar_start, bar_start - bar_ra], [bar_dec, bar_dec], color="black", lw=2, zorder=9)
    frame = [(left, right, right, left, left), (low, low, high, high, low)]
    ax.plot(*frame, color="#3b4650", lw=0.8, zorder=9, clip_on=False)
    return np.flipud(np.fliplr(shaded_rgba(density, plan.peak))), box


# --- lettering --------------------------------------------------------------------------------


def _pixel(ax: Any, x: float, y: float, height: int) -> tuple[float, float]:
    px, py = ax.transData.transform((x, y))
    return float(px), float(height - py)


def _sky_words(pen: Lettering, ax: Any, plan: Plan, height: int) -> float:
    for dec in (-60, -30, 0, 30, 60):
        x, y = sky_geometry.mollweide(plan.centre + 179.999, dec, plan.centre)
        pen.text(_pixel(ax, float(x), float(y), height), f"{dec:+d}° ", 9, anchor="rm")
    for ra in range(0, 360, 60):
        if abs((ra - plan.centre + 180) % 360 - 180) < 170:
            x, y = sky_geometry.mollweide(ra, 0.0, plan.centre)
            px, py = _pixel(ax, float(x), float(y), height)
            pen.text((px, py + 2), f"{ra // 15}h", 9, anchor="ma", colour=FAINT)
    left, _ = _pixel(ax, -sky_geometry.X_MAX, -sky_geometry.Y_MAX, height)
    _, bottom = _pixel(ax, 0.0, -sky_geometry.Y_MAX, height)
    frame = (
        f"Equatorial (ICRS), Mollweide, centred on RA {plan.centre:g}° "
        f"({plan.centre / 15:g}h); RA increases to the left (east)"
    )
    pen.text((left, bottom + 6), frame, 10, colour=FAINT)
    return bottom + 6


def _zoom_words(pen: Lettering, ax: Any, zoom: sky_plan.Zoom, height: int) -> None:
    low, high = zoom.dec - zoom.half_height, zoom.dec + zoom.half_height
    left, right = zoom.ra + zoom.ra_half, zoom.ra - zoom.ra_half
    for value in _grid_values(zoom.ra, zoom.ra_half, zoom.ra_step):
        px, py = _pixel(ax, value, low, height)
        pen.text((px, py + 3), f"{value % 360:g}°", 9, anchor="ma")
    for value in _grid_values(zoom.dec, zoom.half_height, zoom.dec_step):
        px, py = _pixel(ax, left, value, height)
        pen.text((px - 3, py), f"{value:+g}°", 9, anchor="rm")
    x0, top = _pixel(ax, left, high, height)
    x1, bottom = _pixel(ax, right, low, height)
    pen.text((x0, top - 4), "Zoom on the 90% region (ICRS RA/Dec)", 11, anchor="ls", bold=True)
    pen.text(((x0 + x1) / 2, bottom + 16), "RA (deg)", 10, anchor="ma", colour=FAINT)
    bar_dec = low + 0.08 * (high - low)
    bx, by = _pixel(ax, left - 0.08 * (left - right), bar_dec, height)
    pen.text((bx, by - 4), f"{zoom.scale:g}°", 10, anchor="ls", bold=True)


def _colour_bar(pen: Lettering, box: tuple[int, int, int, int], peak: float) -> None:
    from matplotlib import colormaps

    colours = (colormaps[CMAP](np.linspace(0.0, 1.0, 128)) * 255).astype(np.uint8)
    fractions = (0.0, 0.1, 0.25, 0.5, 1.0)
    ticks = [(float(sky_plan.shade(f)), f"{f:g}") for f in fractions]
    label = f"density / peak ({peak:.3g} per deg², square-root scale)"
    pen.colour_bar(box, colours, ticks, label)


def render_png(
    skymap: SkyMap,
    summary: SkyMapSummary,
    title: str,
    panel: Sequence[tuple[str, str]],
    provenance: Provenance,
    options: PlotOptions | None = None,
) -> bytes:
    """The PNG bytes of the figure. Deterministic: no timestamp is embedded.

    Matplotlib draws the lines on a transparent canvas; the shaded rasters, already at the
    axes' pixel size, go underneath it unresampled, and Pillow writes the words on top.
    """
    from PIL import Image, PngImagePlugin

    opts = options or PlotOptions()
    plan = plan_figure(skymap, opts)
    sky_rect = _SKY_WITH_ZOOM if plan.zoom is not None else _SKY_ALONE
    zoom_rect = _ZOOM if plan.zoom is not None else None
    canvas = Canvas.get((opts.width_px, opts.height_px), opts.dpi, sky_rect, zoom_rect)
    width, height = canvas.canvas.get_width_height()
    rasters = []
    shaded, entries = _draw_sky(canvas.sky, skymap, summary, plan, opts, height)
    rasters.append(shaded)
    if canvas.zoom is not None:
        rasters.append(_draw_zoom(canvas.zoom, skymap, summary, plan, opts, height))
    agg: Any = canvas.canvas
    agg.draw()
    lines = Image.frombuffer("RGBA", (width, height), agg.buffer_rgba())
    image = Image.new("RGBA", (width, height), "white")
    for rgba, (left, top, right, bottom) in rasters:
        tile = Image.fromarray(rgba)
        if tile.size != (right - left, bottom - top):
            tile = tile.resize((right - left, bottom - top), Image.Resampling.NEAREST)
        image.alpha_composite(tile, (left, top))
    image.alpha_composite(lines)
    image = image.convert("RGB")
    _letter(image, canvas, plan, title, panel, entries, provenance)
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", provenance.tool)
    info.add_text("Title", title)
    info.add_text("Source", f"rule {provenance.rule}, notice {provenance.notice}")
    info.add_text("Description", provenance.line())
    # 256 colours are plenty for flat shading, lines and text: a third of the bytes to filter
    # and compress, and run-length zlib suits the flat areas, for less than half the time.
    indexed = image.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    out = io.BytesIO()
    indexed.save(out, format="PNG", pnginfo=info, compress_level=1, compress_type=3)
    return out.getvalue()


def _letter(
    image: Any,
    canvas: Canvas,
    plan: Plan,
    title: str,
    panel: Sequence[tuple[str, str]],
    entries: list[Any],
    provenance: Provenance,
) -> None:
    width, height = image.size
    pen = Lettering(image)
    pen.text((12, 10), title, 17, bold=True)
    _colour_bar(pen, (width // 2 - 60, 14, width // 2 + 170, 24), plan.peak)
    bottom = _sky_words(pen, canvas.sky.ax, plan, height)
    if canvas.zoom is not None and plan.zoom is not None:
        _zoom_words(pen, canvas.zoom.ax, plan.zoom, height)
    pen.legend(24, bottom + 30, entries, width * 0.75, 10)
    pen.rows(int(_PANEL_X * width), 44, panel, 11)
    pen.text((6, height - 6), provenance.line(), 9, anchor="ld", colour=FAINT)
