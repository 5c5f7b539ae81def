"""The text files of the ``gw-alert`` product: ``meta.yaml`` and ``skymap.csv``.

Pure functions from an alert, a decoded map and its figures to names and bytes; the product
module does the writing. ``meta.yaml`` keeps gocart's keys (ALERT, HEADER, EXTRA with
``area10/50/90`` and ``central coordinate``) so that gocart plugins read it unchanged, and
adds the figures gocart lacks. Floats are written so that YAML 1.1 readers (PyYAML) and 1.2
readers both see numbers.
"""

from __future__ import annotations

import copy
import functools
import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from tracerules.products.actions.provenance import Provenance
from tracerules.products.sky import healpix
from tracerules.products.sky.galactic import equatorial_to_galactic
from tracerules.products.sky.healpix import FlatMap
from tracerules.products.sky.skymap import SkyMap, SkyMapSummary


def alert_without_skymaps(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The alert with its base64 sky maps (``event.skymap``, the combined one) left out."""
    out = copy.deepcopy(dict(alert))
    for section, key in (("event", "skymap"), ("external_coinc", "combined_skymap")):
        part = out.get(section)
        if isinstance(part, dict):
            part.pop(key, None)
    return out


def _r(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


#: Significant figures kept for areas: deg2 areas span 0.01 to 40000, so a fixed number of
#: decimals would either cut small areas (0.0197 -> 0.0197 loses 0.15% at 4 places) or
#: write noise digits for large ones.
AREA_FIGURES = 6


def significant(value: float, figures: int = AREA_FIGURES) -> float:
    """``value`` rounded to ``figures`` significant figures (0, inf and NaN as they are)."""
    if value == 0 or not math.isfinite(value):
        return float(value)
    return round(float(value), figures - 1 - math.floor(math.log10(abs(value))))


def extra_figures(summary: SkyMapSummary) -> dict[str, Any]:
    """EXTRA: value-added figures, in gocart's keys first. Degrees, deg^2 and Mpc."""
    s = summary
    extra: dict[str, Any] = {
        "area10": significant(s.area10),
        "area50": significant(s.area50),
        "area90": significant(s.area90),
        "central coordinate": {
            "equatorial": f"{s.max_ra:.6f} {s.max_dec:.6f}",
            "galactic": f"{s.max_l:.6f} {s.max_b:.6f}",
        },
        "max_probability": {
            "ra": _r(s.max_ra, 6),
            "dec": _r(s.max_dec, 6),
            "l": _r(s.max_l, 6),
            "b": _r(s.max_b, 6),
        },
        "distance_mean": _r(s.distance_mean, 3),
        "distance_std": _r(s.distance_std, 3),
        "distance_convention": None if s.distance_mean is None else healpix.DISTANCE_CONVENTION,
        "total_probability": _r(s.total_probability, 9),
        "pixels": s.pixel_count,
        "orders": list(s.orders),
    }
    if s.time is not None:
        extra["ephemeris_time"] = s.time
        extra["sun"] = {
            "ra": _r(s.sun_ra, 4),
            "dec": _r(s.sun_dec, 4),
            "separation": _r(s.sun_separation, 4),
        }
        extra["moon"] = {
            "ra": _r(s.moon_ra, 4),
            "dec": _r(s.moon_dec, 4),
            "separation": _r(s.moon_separation, 4),
        }
    return extra


def build_meta(
    alert: Mapping[str, Any],
    skymap: SkyMap | None,
    summary: SkyMapSummary | None,
    provenance: Provenance,
    note: str | None = None,
) -> dict[str, Any]:
    """ALERT (minus sky maps), HEADER (the FITS keys), EXTRA (figures), PROVENANCE."""
    extra: dict[str, Any] = {} if summary is None else extra_figures(summary)
    if note:
        extra["note"] = note
    return {
        "ALERT": alert_without_skymaps(alert),
        "HEADER": {} if skymap is None else dict(skymap.header),
        "EXTRA": extra,
        "PROVENANCE": provenance.as_dict(),
    }


def _represent_float(representer: Any, value: float) -> Any:
    if math.isnan(value):
        text = ".nan"
    elif value in (float("inf"), float("-inf")):
        text = ".inf" if value > 0 else "-.inf"
    else:
        text = repr(value)
        mantissa, _, exponent = text.partition("e")
        if exponent and "." not in mantissa:  # 1e-10 is a string to YAML 1.1: write 1.0e-10
            text = f"{mantissa}.0e{exponent}"
    return representer.represent_scalar("tag:yaml.org,2002:float", text)


def _represent_str(representer: Any, value: str) -> Any:
    style = "|" if "\n" in value.strip("\n") else None  # FITS HISTORY reads best as a block
    return representer.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def meta_yaml(meta: Mapping[str, Any]) -> bytes:
    """The meta mapping as block-style YAML, keys in the order given."""
    from ruamel.yaml import YAML

    # libyaml's emitter when ruamel.yaml.clib is there (twice as fast; same text here).
    yaml = YAML(typ="safe", pure=False)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    yaml.width = 100
    yaml.representer.add_representer(float, _represent_float)
    yaml.representer.add_representer(str, _represent_str)
    out = io.StringIO()
    out.write(f"# {_comment(meta)}\n")
    yaml.dump(_plain(meta), out)
    return out.getvalue().encode()


def _comment(meta: Mapping[str, Any]) -> str:
    prov = meta.get("PROVENANCE") or {}
    return "written by " + ", ".join(f"{k} {v}" for k, v in prov.items() if v is not None)


def _plain(value: Any) -> Any:
    """numpy scalars and tuples as plain Python values, which every YAML dumper takes."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _column_text(column: np.ndarray[Any, Any], fmt: str, blank_nan: bool = False) -> list[str]:
    """Each value as text, NaN as an empty string if ``blank_nan``.

    Each distinct value is formatted once (a map flattened to a finer nside repeats its coarse
    pixels' values, often six times over), by one C-level % over all of them: together about
    ten times quicker than numpy.savetxt's per-row Python loop.
    """
    unique, inverse = np.unique(column, return_inverse=True)
    text = ("\n" + fmt) * unique.size % tuple(unique.tolist())
    if blank_nan:
        text = text.replace("nan", "")
    strings = np.array(text.split("\n")[1:], dtype=object)
    listed: list[str] = strings[inverse.ravel()].tolist()
    return listed


def _coordinate_text(nside: int) -> tuple[list[str], list[str]]:
    """IPIX and "RA,DEC,GLON,GLAT" text per pixel: the same for every map at one nside."""
    ra, dec = healpix.pixel_centres(nside)
    gal_l, gal_b = equatorial_to_galactic(ra, dec)
    columns = [_column_text(values, "%.6f") for values in (ra, dec, gal_l, gal_b)]
    return [str(i) for i in range(ra.size)], list(map(",".join, zip(*columns, strict=True)))


# Formatting the coordinates is most of the work; keep them for the usual small nsides only
# (about 6 MB of text at nside 64).
_cached_coordinate_text = functools.lru_cache(maxsize=2)(_coordinate_text)
_CACHE_NSIDE = 128


def _distance_columns(flat: FlatMap) -> list[tuple[str, list[str]]]:
    """(name, per-pixel text) of the distance columns: gocart's two, then the moments."""
    if flat.dist_mu is None or flat.dist_sigma is None:
        return []
    if flat.dist_mean is None or flat.dist_std is None:
        return []
    return [
        ("DISTMU", _column_text(flat.dist_mu, "%.4f")),
        ("DISTSIGMA", _column_text(flat.dist_sigma, "%.4f")),
        ("DISTMEAN", _column_text(flat.dist_mean, "%.4f", blank_nan=True)),
        ("DISTSTD", _column_text(flat.dist_std, "%.4f", blank_nan=True)),
    ]


def skymap_csv(flat: FlatMap, event: str) -> bytes:
    """One row per NESTED pixel at ``flat.nside``, in gocart's columns and comment lines.

    Exactly gocart's two comment lines (``# EVENT:<id>``, ``# NSIDE:<nside>``) and its
    columns in its order: IPIX, PROB, DISTMU, DISTSIGMA (the ansatz parameters, ``inf``/1
    where a pixel has no distance; Burst maps have neither), RA, DEC, GLON, GLAT (pixel
    centre, degrees). Then, after gocart's columns so positional readers are unaffected,
    DISTMEAN and DISTSTD: the conditional distance mean and std in Mpc, empty where unknown.
    The provenance is in meta.yaml beside it: a third comment line would shift the header
    for readers that skip two lines.
    """
    coordinates = _cached_coordinate_text if flat.nside <= _CACHE_NSIDE else _coordinate_text
    index, position = coordinates(flat.nside)
    distance = _distance_columns(flat)
    columns = [index, _column_text(flat.prob, "%.6e")]
    names = ["IPIX", "PROB"]
    for name, text in distance[:2]:
        columns.append(text)
        names.append(name)
    columns.append(position)
    names += ["RA", "DEC", "GLON", "GLAT"]
    for name, text in distance[2:]:
        columns.append(text)
        names.append(name)
    rows = map(",".join, zip(*columns, strict=True))
    head = f"# EVENT:{event}\n# NSIDE:{flat.nside}\n{','.join(names)}\n"
    return (head + "\n".join(rows) + "\n").encode()
