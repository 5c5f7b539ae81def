"""The `gw-alert` product: gocart's files for an ``igwn.gwalert`` alert, done right.

Per alert, in ``<out>/<superevents|mockevents>/<id>/<YYYYMMDDTHHMMSS>_<alert_type>/`` (the
``folder`` template, which may also use the trigger's fields):

* ``<id>-<alert_type>.json``: the alert exactly as received (the payload bytes);
* ``<creator>.multiorder.fits``: the sky map as received, named after the header's CREATOR;
* ``combined-ext.multiorder.fits``: the GW x external combined sky map of an alert with
  ``external_coinc`` (as GraceDB names it), written as received;
* ``meta.yaml``: ALERT (minus sky maps), HEADER (FITS keys), EXTRA (figures), PROVENANCE;
* ``skymap.csv``: the map flattened to ``nside``;
* ``skymap.png``: the all-sky figure, and a zoom on a small 90% region.

Two alerts of one type created in the same second would share that folder: the later one
gets ``<folder>_2`` (see :func:`_claim`). Each part can be switched off. A retraction
(``event: null``) gets its JSON and a meta.yaml; a Burst map has no distance columns. The
decoded map is the one the conditions used when they asked for it (see
:mod:`skymap_functions`), else it is decoded here. Every file is written atomically; all but
the gocart-shaped CSV are stamped with their provenance. Part timings go into the outcome's
``detail["seconds"]`` for the benchmark.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from tracerules.dsl.convert import to_angle
from tracerules.dsl.values import Missing
from tracerules.errors import exception_tail
from tracerules.products.actions import gw_names
from tracerules.products.actions.io import atomic_write, claim_folder, out_of_space, safe_relative
from tracerules.products.actions.provenance import Provenance
from tracerules.products.actions.registry import (
    ActionConfig,
    ActionOutcome,
    ActionRequest,
    ActionType,
)
from tracerules.products.actions.templating import render_text
from tracerules.products.sky.skymap_functions import SkyMapFigures, figures_for_alert

MAX_NSIDE = 512  # 3 million CSV rows; beyond that a CSV is the wrong format


class GwAlertConfig(ActionConfig):
    """Write gocart's per-alert folder: alert JSON, sky map, meta.yaml, skymap.csv/png."""

    type: Literal["gw-alert"]
    folder: str = Field(
        "{gw_folder}/{gw_id}/{gw_stamp}_{gw_type}",
        description="relative folder template; besides fields: gw_folder (superevents or "
        "mockevents), gw_id, gw_stamp (YYYYMMDDTHHMMSS of time_created), gw_type",
    )
    alert_json: bool = Field(True, description="write the alert as received")
    skymap: bool = Field(True, description="write the sky map FITS as received")
    combined_skymap: bool = Field(
        True, description="write the external-coincidence combined sky map, when the alert has one"
    )
    meta: bool = Field(True, description="write meta.yaml")
    csv: bool = Field(True, description="write skymap.csv")
    png: bool = Field(True, description="write skymap.png")
    nside: int = Field(64, description="resolution of skymap.csv: a power of two up to 512")
    png_width: int = Field(1200, ge=400, le=4000, description="skymap.png width in pixels")
    png_height: int = Field(560, ge=200, le=2000, description="skymap.png height in pixels")
    zoom: bool = Field(True, description="skymap.png: add a zoom on a small 90% region")
    galactic_plane: bool = Field(True, description="draw the galactic plane")
    sun_moon: bool = Field(True, description="draw the Sun and the Moon with their footprints")
    sun_radius: float = Field(33.0, description="Sun footprint radius (e.g. '33 deg')")
    moon_radius: float = Field(20.0, description="Moon footprint radius (e.g. '20 deg')")
    timeout: float = Field(60.0, gt=0, description="seconds before the product is abandoned")

    template_fields: ClassVar[tuple[str, ...]] = ("folder",)
    template_names: ClassVar[tuple[str, ...]] = gw_names.LAYOUT_NAMES

    @field_validator("nside")
    @classmethod
    def _nside(cls, value: int) -> int:
        if value < 1 or value > MAX_NSIDE or value & (value - 1):
            raise ValueError(f"nside must be a power of two from 1 to {MAX_NSIDE}, not {value}")
        return value

    @field_validator("sun_radius", "moon_radius", mode="before")
    @classmethod
    def _radius(cls, value: Any) -> float:
        angle = to_angle(value)
        if isinstance(angle, Missing) or not 0.0 <= angle <= 180.0:
            raise ValueError(f"{value!r} is not an angle between 0 and 180 deg")
        return float(angle)


class _Writer:
    """Writes the parts into one folder, timing each and carrying on after a failed part."""

    def __init__(self, folder: Path, out_dir: Path) -> None:
        self.folder, self.out_dir = folder, out_dir
        self.log: list[str] = []
        self.files: list[str] = []
        self.seconds: dict[str, float] = {}
        self.failed = False
        self.disk_full = False

    def timed(self, part: str, work: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return work()
        except Exception as err:  # one broken part must not lose the others
            self.failed = True
            self.disk_full = self.disk_full or out_of_space(err)
            self.log.append(f"{part} failed: {exception_tail(err)}")
            return None
        finally:
            self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - start

    def write(self, part: str, name: str, make: Callable[[], bytes]) -> None:
        def work() -> None:
            target = self.folder / name
            atomic_write(target, make())
            self.files.append(str(target))
            self.log.append(f"wrote {target.relative_to(self.out_dir)}")

        self.timed(part, work)


def _folder(config: GwAlertConfig, request: ActionRequest, alert: dict[str, Any]) -> Path:
    values = {**request.values, **gw_names.layout_names(alert)}
    relative = render_text(config.folder, values)
    return request.out_dir / safe_relative(relative)


def _claim(config: GwAlertConfig, request: ActionRequest, alert: dict[str, Any]) -> Path:
    """The alert's folder, claimed by its JSON (or a hidden hash when the JSON is not kept).

    Two alerts of one type created in the same second (MS181101ab's `UPDATE` and `EXT-UPDATE`)
    render the same folder name: the second gets ``_2``. A replay of the same alert reuses
    its folder, and the common case keeps gocart's layout unchanged.
    """
    base = _folder(config, request, alert)
    if config.alert_json:
        return claim_folder(base, gw_names.alert_json_name(alert), request.payload)
    digest = hashlib.sha256(request.payload).hexdigest().encode()
    return claim_folder(base, gw_names.CLAIM_MARKER, digest)


def _figures(request: ActionRequest, alert: dict[str, Any]) -> SkyMapFigures | None:
    given = request.extras.get("skymap")
    return given if isinstance(given, SkyMapFigures) else figures_for_alert(alert)


def run(config: GwAlertConfig, request: ActionRequest) -> ActionOutcome:
    try:
        alert = json.loads(request.payload)
    except ValueError as err:
        return ActionOutcome(False, [f"the notice is not a JSON alert: {err}"])
    if not isinstance(alert, dict):
        return ActionOutcome(False, ["the notice is not a JSON alert object"])
    prov = Provenance.of(request)
    started = time.perf_counter()
    try:
        folder = _claim(config, request, alert)
    except OSError as err:
        return ActionOutcome(
            False, [f"no folder for the alert: {err}"], disk_full=out_of_space(err)
        )
    out = _Writer(folder, request.out_dir)
    if config.alert_json:
        out.seconds["json"] = time.perf_counter() - started
        out.files.append(str(folder / gw_names.alert_json_name(alert)))
        out.log.append(f"wrote {folder.relative_to(request.out_dir)}/{Path(out.files[-1]).name}")
    figures = out.timed("decode", lambda: _figures(request, alert))
    summary = None
    if figures is not None:
        event = alert.get("event") or {}
        when = figures.skymap.header.get("DATE-OBS") or event.get("time")
        at = when if isinstance(when, str) else None
        summary = out.timed("areas", lambda: figures.summary(at))
        if config.skymap:
            name = gw_names.skymap_file_name(figures.skymap.header, figures.raw)
            out.write("skymap", name, lambda: figures.raw)
    combined = gw_names.combined_skymap_payload(alert) if config.combined_skymap else None
    if combined is not None:
        name = gw_names.COMBINED_SKYMAP_NAME
        out.write("combined", name, lambda: gw_names.fits_from_base64(combined))
    note = _note(alert, figures, "decode failed" in "\n".join(out.log))
    if config.meta:
        from tracerules.products.actions import gw_meta  # numpy: imported when a product is written

        skymap = figures.skymap if figures is not None else None

        def meta() -> bytes:
            return gw_meta.meta_yaml(gw_meta.build_meta(alert, skymap, summary, prov, note))

        out.write("meta", "meta.yaml", meta)
    if figures is not None and summary is not None:
        _map_files(config, alert, figures, summary, prov, out)
    detail = {"seconds": out.seconds, "folder": str(out.folder)}
    return ActionOutcome(not out.failed, out.log, out.files, detail, out.disk_full)


def _note(alert: dict[str, Any], figures: SkyMapFigures | None, unreadable: bool) -> str | None:
    if alert.get("event") is None:
        return "retraction: the alert has no event and no sky map"
    if unreadable:
        return "the sky map could not be read"
    return "the alert carries no sky map" if figures is None else None


def _map_files(
    config: GwAlertConfig,
    alert: dict[str, Any],
    figures: SkyMapFigures,
    summary: Any,
    prov: Provenance,
    out: _Writer,
) -> None:
    from tracerules.products.actions import gw_meta
    from tracerules.products.sky.skymap import flatten_skymap

    if config.csv:
        event_id = str(alert.get("superevent_id", "-"))

        def csv() -> bytes:
            flat = flatten_skymap(figures.skymap, config.nside)
            return gw_meta.skymap_csv(flat, event_id)

        out.write("csv", "skymap.csv", csv)
    if config.png:
        from tracerules.products.sky import skymap_plot

        options = skymap_plot.PlotOptions(
            width_px=config.png_width,
            height_px=config.png_height,
            galactic_plane=config.galactic_plane,
            zoom=config.zoom,
            sun_moon=config.sun_moon,
            sun_radius=config.sun_radius,
            moon_radius=config.moon_radius,
        )
        title = f"{alert.get('superevent_id', '-')} {alert.get('alert_type', '-')}"
        panel = skymap_plot.key_numbers(alert, summary)

        def png() -> bytes:
            return skymap_plot.render_png(figures.skymap, summary, title, panel, prov, options)

        out.write("png", "skymap.png", png)


ACTION = ActionType("gw-alert", GwAlertConfig, run, __doc__ or "", writes_files=True)
