"""The rasters of ``skymap.png``: the map looked up on a grid of sky positions, and shaded.

Images and credible levels come from the multi-order map itself, at its own resolution (see
:func:`sky_geometry.multiorder_lookup`), so the contours traced on them enclose exactly the
pixels counted by the reported areas. Pure numpy; the shading is the figure's colour map
applied here, so the drawing pastes the result under its lines without resampling.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from tracerules.products.sky import healpix, sky_geometry, sky_plan
from tracerules.products.sky.skymap import SkyMap

__all__ = ["CMAP", "map_images", "shaded_rgba", "sky_raster", "zoom_images"]

_SQDEG_PER_SR = (180.0 / np.pi) ** 2
#: The colour map of the shading (Matplotlib's name), white to dark red.
CMAP = "OrRd"


@functools.lru_cache(maxsize=8)
def sky_raster(width: int, centre: float) -> tuple[Any, Any, Any, Any]:
    """The Mollweide raster and each inside cell's nested index at order 29: the same for
    every map with this centre (centres are hour lines when they can be), so kept."""
    x, y, ra, dec, inside = sky_geometry.mollweide_grid(width, centre)
    nest = sky_geometry.lonlat_to_nest(1 << healpix.MAX_ORDER, ra[inside], dec[inside])
    for array in (x, y, inside, nest):
        array.setflags(write=False)
    return x, y, inside, nest


def _fill(skymap: SkyMap, levels: Any, rows: Any, shape: tuple[int, ...]) -> tuple[Any, Any]:
    """Images of density (deg^-2, NaN where uncovered) and credible level from map rows."""
    covered = rows >= 0
    density, level = np.full(shape, np.nan), np.full(shape, np.nan)
    density[covered] = skymap.probdensity[rows[covered]] / _SQDEG_PER_SR
    level[covered] = levels[rows[covered]]
    return density, level


def map_images(
    skymap: SkyMap, width: int, centre: float = 180.0, levels: Any = None
) -> tuple[Any, Any, Any, Any]:
    """Raster (x, y, density in deg^-2, credible level) of the map over the Mollweide ellipse,
    row 0 at the bottom."""
    if levels is None:
        levels = healpix.credible_levels(skymap.uniq, skymap.probdensity)
    x, y, inside, nest = sky_raster(width, centre)
    rows = np.full(x.shape, -1, dtype=np.int64)
    rows[inside] = sky_geometry.multiorder_rows(skymap.uniq, nest, healpix.MAX_ORDER)
    return (x, y, *_fill(skymap, levels, rows, x.shape))


def zoom_images(
    skymap: SkyMap, levels: Any, zoom: sky_plan.Zoom, cells: tuple[int, int]
) -> tuple[Any, Any, Any, Any]:
    """Raster (RA, Dec, density, level) of cell centres over the zoom box, ``cells`` (columns,
    rows), row 0 at the bottom and RA rising with the column; RA runs on past 0/360."""
    columns, rows = cells
    ra = zoom.ra + zoom.ra_half * ((np.arange(columns) + 0.5) / columns * 2.0 - 1.0)
    dec = zoom.dec + zoom.half_height * ((np.arange(rows) + 0.5) / rows * 2.0 - 1.0)
    ra2, dec2 = np.meshgrid(ra, dec)
    found = sky_geometry.multiorder_lookup(skymap.uniq, np.mod(ra2, 360.0), dec2)
    return (ra2, dec2, *_fill(skymap, levels, found, ra2.shape))


@functools.lru_cache(maxsize=1)
def _palette() -> Any:
    from matplotlib import colormaps

    colours = (colormaps[CMAP](np.linspace(0.0, 1.0, 256)) * 255).round().astype(np.uint8)
    colours.setflags(write=False)
    return colours


def shaded_rgba(density: Any, peak: float) -> Any:
    """RGBA (uint8) of a density raster on the square-root scale; transparent where NaN."""
    shade = sky_plan.shade(np.nan_to_num(density / peak, nan=0.0))
    rgba = _palette()[np.round(shade * 255).astype(np.intp)]
    rgba[np.isnan(density), 3] = 0
    return rgba
