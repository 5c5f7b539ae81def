"""What skymap.png shows, checked on numbers: the centre, the zoom box, the shading.

The references are independent: pixel outlines from astropy-healpix's ``boundaries_lonlat``
and plain numpy, never the figure's own geometry; no test compares PNG bytes.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy_healpix import boundaries_lonlat, uniq_to_level_ipix

from tests.test_healpix import _load
from tracerules.products.sky import healpix as hp
from tracerules.products.sky import sky_geometry as geo
from tracerules.products.sky import sky_plan, skymap_plot, skymap_raster
from tracerules.products.sky.skymap import SkyMap

CBC = "igwn_gwalert_preliminary.json"  # a 7.8 deg2 90% region at RA 308
BURST = "S230528ay-preliminary.json"  # a 97 deg2 region across RA 0/360
WIDE = "bayestar.multiorder.02.fits"  # a 580 deg2 region


def _region_outlines(skymap: SkyMap) -> tuple[np.ndarray, np.ndarray]:
    """RA and Dec (deg) of points along the outline of every pixel of the 90% region, one
    row per pixel, from astropy-healpix."""
    levels = hp.credible_levels(skymap.uniq, skymap.probdensity)
    uniq = skymap.uniq[levels < sky_plan.REGION_LEVEL]
    order, ipix = uniq_to_level_ipix(uniq)
    ras, decs = [], []
    for level in np.unique(order):
        pick = order == level
        lon, lat = boundaries_lonlat(ipix[pick], 4, 2 ** int(level), order="nested")
        ras.append(lon.deg)
        decs.append(lat.deg)
    return np.concatenate(ras), np.concatenate(decs)


def _split_pixels(ra: np.ndarray, centre: float) -> int:
    """How many pixel outlines straddle the map's edge, the meridian at ``centre`` + 180."""
    offset = np.mod(ra - centre + 180.0, 360.0) - 180.0  # in [-180, 180), the edge at +-180
    # A small pixel across the edge has corners near both -180 and +180.
    return int(np.sum((offset.max(axis=1) > 90.0) & (offset.min(axis=1) < -90.0)))


@pytest.mark.parametrize("name", [CBC, BURST, WIDE])
def test_the_map_centre_keeps_every_region_pixel_whole(name: str) -> None:
    skymap = _load(name)
    plan = skymap_plot.plan_figure(skymap)
    ra, _ = _region_outlines(skymap)
    assert _split_pixels(ra, plan.centre) == 0
    if name == BURST:
        # S230528ay sits at RA 359: the usual centre (RA 180) cuts it in two.
        assert _split_pixels(ra, 180.0) > 10
        assert plan.centre == 0.0  # an hour line, so the raster is shared
    # The drawn raster agrees: no region cell is the first or last cell of its row.
    width = 600
    _, _, inside, _ = skymap_raster.sky_raster(width, plan.centre)
    _, _, _, level = skymap_raster.map_images(skymap, width, plan.centre, plan.levels)
    region = (level < sky_plan.REGION_LEVEL) & inside
    for row in np.flatnonzero(region.any(axis=1)):
        cells = np.flatnonzero(inside[row])
        assert not region[row, cells[0]] and not region[row, cells[-1]]


@pytest.mark.parametrize("name", [CBC, BURST])
def test_the_zoom_holds_the_whole_90_percent_region(name: str) -> None:
    skymap = _load(name)
    plan = skymap_plot.plan_figure(skymap)
    zoom = plan.zoom
    assert zoom is not None
    ra, dec = _region_outlines(skymap)
    offset = np.mod(ra - zoom.ra + 180.0, 360.0) - 180.0
    assert np.all(np.abs(offset) <= zoom.ra_half)
    assert np.all(np.abs(dec - zoom.dec) <= zoom.half_height)
    assert np.all(zoom.contains(ra, dec))
    # Zoomed, not all-sky: the box is at most a few times the region's size.
    area = float(hp.credible_areas(skymap.uniq, skymap.probdensity, [0.9])[0])
    box = (2 * zoom.half_width) * (2 * zoom.half_height)
    assert box < 12 * area
    # Equal on-sky scales (a square panel), grid lines inside, a scale bar that fits.
    assert zoom.half_width == pytest.approx(zoom.half_height)
    assert 2 <= 2 * zoom.half_height / zoom.dec_step <= 10
    assert 0.25 * zoom.half_width <= zoom.scale <= 0.6 * zoom.half_width


def test_wide_regions_get_no_zoom() -> None:
    assert skymap_plot.plan_figure(_load(WIDE)).zoom is None
    assert skymap_plot.plan_figure(_load(CBC), skymap_plot.PlotOptions(zoom=False)).zoom is None


@pytest.mark.parametrize("name", [CBC, BURST, WIDE])
def test_the_shading_shows_the_whole_90_percent_region(name: str) -> None:
    skymap = _load(name)
    levels = hp.credible_levels(skymap.uniq, skymap.probdensity)
    peak = skymap.probdensity.max()
    edge = skymap.probdensity[levels < 0.9].min()  # the faintest pixel of the 90% region
    assert sky_plan.shade(edge / peak) >= 0.25  # a quarter of the colour scale, or more
    assert edge / peak < 0.25  # where a linear scale would leave it nearly white
    rgba = skymap_raster.shaded_rgba(np.array([edge, np.nan]) / hp_sqdeg(), peak / hp_sqdeg())
    white = np.array([255, 255, 255])
    assert np.abs(rgba[0, :3].astype(int) - white).sum() > 120  # visibly coloured
    assert rgba[1, 3] == 0  # uncovered sky is transparent


def hp_sqdeg() -> float:
    return float((180.0 / np.pi) ** 2)


def test_centre_handles_the_edge_cases() -> None:
    # A region around a pole has no free meridian: the map centres on the fallback.
    uniq = np.array([4 + 0, 4 + 1, 4 + 2, 4 + 3, *range(8, 16)], dtype=np.int64)
    density = np.zeros(12)
    density[:4] = 3.0 / np.pi / 4  # the four northern base pixels share all the probability
    levels = hp.credible_levels(uniq, density)
    assert sky_plan.choose_centre(uniq, levels, 123.0) == 123.0
    assert sky_plan.zoom_box(uniq, levels) is None
    # A curve across the chosen edge is broken there, and nowhere else.
    ra, _ = geo.break_wraps([10.0, 20.0, 40.0], [0.0, 1.0, 2.0], centre=210.0)
    assert np.isnan(ra).sum() == 1
    assert sky_plan.nice_step(7.2) == 2.0 and sky_plan.nice_below(4.3) == 2.0


def test_renders_are_deterministic_across_maps_and_threads() -> None:
    """The figure keeps its canvas and line artists between renders (per thread): nothing of
    one map may linger in the next, and threads must not share a canvas."""
    from concurrent.futures import ThreadPoolExecutor

    from tracerules.products.actions.provenance import Provenance
    from tracerules.products.sky.skymap import summarize

    prov = Provenance("tracerules test", "rule", "E1", 1, 2)
    maps = [_load(name) for name in (CBC, BURST, WIDE)]
    # The CBC map with the Sun and Moon (their lines), the others without.
    summaries = [summarize(maps[0]), *(summarize(m, ephemeris=False) for m in maps[1:])]
    assert summaries[0].sun_ra is not None

    def render(i: int) -> bytes:
        return skymap_plot.render_png(maps[i], summaries[i], f"map {i}", [("k", "v")], prov)

    def fresh(i: int) -> bytes:  # a new thread has a new canvas
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(render, i).result()

    alone = [fresh(i) for i in range(3)]
    assert len(set(alone)) == 3
    assert [render(i) for i in (0, 1, 2, 1, 0)] == [alone[i] for i in (0, 1, 2, 1, 0)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        again = list(pool.map(render, [0, 1, 2, 0, 1, 2]))
    assert again == alone + alone
