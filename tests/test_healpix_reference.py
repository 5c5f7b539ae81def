"""The NUNIQ split is astropy-healpix's now (issue 12, item 6): its answers must be exactly
those of the hand-written code it replaced (tests/healpix_reference.py), on real LVK maps and
at the edges of every order, and the figures computed from it must not move."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import healpix_reference as ref
from tracerules.products.sky import healpix as hp
from tracerules.products.sky import sky_geometry
from tracerules.products.sky.skymap import SkyMap, decode_skymap, read_skymap, summarize

DATA = Path(__file__).parent / "data"
FITS = sorted((DATA / "skymaps").glob("*.fits"))
ALERTS = ["igwn_gwalert_preliminary.json", "S230528ay-preliminary.json"]  # CBC, Burst


def _real_maps() -> list[tuple[str, SkyMap]]:
    maps = [(path.name, read_skymap(path)) for path in FITS]
    for name in ALERTS:
        alert = json.loads((DATA / "notices" / "lvk_json" / name).read_text())
        maps.append((name, decode_skymap(alert["event"]["skymap"])))
    return maps


REAL_MAPS = _real_maps()
IDS = [name for name, _ in REAL_MAPS]


@pytest.mark.parametrize("skymap", [m for _, m in REAL_MAPS], ids=IDS)
def test_the_split_of_real_maps_is_the_old_one(skymap: SkyMap) -> None:
    order, ipix = hp.uniq_to_order_ipix(skymap.uniq)
    old_order, old_ipix = ref.uniq_to_order_ipix(skymap.uniq)
    assert order.dtype == old_order.dtype == np.int64 and ipix.dtype == np.int64
    np.testing.assert_array_equal(order, old_order)
    np.testing.assert_array_equal(ipix, old_ipix)
    assert {int(o) for o in np.unique(order)} >= {4, 8}  # real maps mix orders


def test_the_split_is_the_old_one_at_the_edges_of_every_order() -> None:
    """First and last pixel of each order 0..29, and the numbers just below a power of two
    past 2**53, where a float log2 rounds up (the old code corrected for it)."""
    orders = np.arange(hp.MAX_ORDER + 1, dtype=np.int64)
    first = np.int64(4) << (2 * orders)
    last = (np.int64(16) << (2 * orders)) - 1
    near = np.array([(1 << k) - d for k in range(54, 63) for d in (1, 2, 3)], dtype=np.int64)
    uniq = np.concatenate([first, last, first + 1, near[near >= 4]])
    order, ipix = hp.uniq_to_order_ipix(uniq)
    old_order, old_ipix = ref.uniq_to_order_ipix(uniq)
    np.testing.assert_array_equal(order, old_order)
    np.testing.assert_array_equal(ipix, old_ipix)
    np.testing.assert_array_equal(order[: orders.size], orders)
    np.testing.assert_array_equal(ipix[: orders.size], 0)


def test_scalars_and_empty_input_split_like_before() -> None:
    order, ipix = hp.uniq_to_order_ipix(4 * 4**11 + 12345)
    assert (int(order), int(ipix)) == (11, 12345)
    empty = hp.uniq_to_order_ipix(np.array([], dtype=np.int64))
    assert all(a.size == 0 and a.dtype == np.int64 for a in empty)


@pytest.mark.parametrize("bad", [[3], [0], [-8], [16 << (2 * hp.MAX_ORDER)], [2**63 - 1]])
def test_numbers_outside_every_order_are_refused_as_before(bad: list[int]) -> None:
    """astropy-healpix answers -1 below 4 and garbage above order 29: we refuse both."""
    for split in (hp.uniq_to_order_ipix, ref.uniq_to_order_ipix):
        with pytest.raises(ValueError, match="NUNIQ numbers must lie in"):
            split(np.array([64, *bad], dtype=np.int64))


@pytest.mark.parametrize("skymap", [m for _, m in REAL_MAPS], ids=IDS)
def test_figures_of_real_maps_do_not_move(skymap: SkyMap, monkeypatch: pytest.MonkeyPatch) -> None:
    """Areas, summary, flattened map, cone probability and the raster look-up, computed with
    the new split and with the old one patched in: bit for bit the same."""

    def figures() -> tuple[object, list[np.ndarray]]:
        uniq, density = skymap.uniq, skymap.probdensity
        ra, dec = hp.max_probability_position(uniq, density)
        _, _, grid_ra, grid_dec, inside = sky_geometry.mollweide_grid(120)
        arrays = [
            hp.credible_areas(uniq, density),
            hp.credible_levels(uniq, density),
            hp.flatten(uniq, density, 64).prob,
            np.array(hp.probability_in_circle(uniq, density, ra, dec, 10.0)),
            *hp.uniq_centres(uniq),
            sky_geometry.multiorder_lookup(uniq, grid_ra[inside], grid_dec[inside]),
        ]
        return summarize(skymap, ephemeris=False), arrays

    new_summary, new = figures()
    monkeypatch.setattr(hp, "uniq_to_order_ipix", ref.uniq_to_order_ipix)
    old_summary, old = figures()
    assert new_summary == old_summary
    for a, b in zip(new, old, strict=True):
        np.testing.assert_array_equal(a, b)


def test_importing_the_sky_map_modules_does_not_import_astropy() -> None:
    """astropy_healpix brings astropy.coordinates (about half a second): paid on the first
    split of a sky map, never by a process that only imports the sky-map modules."""
    code = (
        "import sys\n"
        "import tracerules.products.sky.healpix, tracerules.products.sky.skymap\n"
        "import tracerules.products.sky.sky_geometry\n"
        "heavy = ('astropy', 'astropy_healpix')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "tracerules.products.sky.healpix.uniq_to_order_ipix([4, 17])\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "['astropy', 'astropy_healpix']"]
