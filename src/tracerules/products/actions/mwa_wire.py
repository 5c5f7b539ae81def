"""What the `mwa` action plans and sends: pure functions from the rule and the notice.

`plan` decides the pointings (or a refusal) on the evaluation clock; `requests` turns a plan
into the exact form-encoded requests of the MWA trigger web service (the public client
library's encoding: lists as JSON text, booleans as ``True``/``False``, ``project_id`` and
``obsname`` in the query); `judge` reads the service's JSON answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tracerules.products.actions.observation import ObservationPlan, PlanningContext
from tracerules.products.actions.templating import render_text
from tracerules.products.actions.wire import WireRequest

if TYPE_CHECKING:
    from tracerules.products.actions.mwa import MwaConfig

__all__ = ["WireRequest", "gps_seconds", "judge", "plan", "requests"]

GPS_EPOCH_UNIX = 315964800.0  # 1980-01-06T00:00:00 UTC
GPS_TAI = 19.0  # TAI - GPS, seconds


def gps_seconds(unix: float) -> int:
    """GPS seconds of a POSIX time (leap seconds from erfa's table: offline)."""
    import time
    import warnings

    import erfa

    t = time.gmtime(unix)
    with warnings.catch_warnings():  # past the leap-second table: its last value holds
        warnings.simplefilter("ignore", erfa.ErfaWarning)
        tai_utc = erfa.dat(t.tm_year, t.tm_mon, t.tm_mday, 0.0)
    return int(unix - GPS_EPOCH_UNIX + tai_utc - GPS_TAI)


def _flag(value: bool) -> str:
    return "True" if value else "False"


def plan(config: MwaConfig, ctx: PlanningContext) -> ObservationPlan:
    """Pointings, end and group of an MWA request, or why it must not be sent."""
    calibrator = config.calexptime if config.calibrator is not False else 0
    duration = config.observing_seconds() + calibrator
    details: dict[str, Any] = {
        "mode": config.mode,
        "pretend": config.is_test(ctx.values),
        "start_gps": gps_seconds(ctx.now),
        "group_id": _group_id(ctx),
    }
    kind = f"mwa:{config.mode}"
    site = ctx.sites.get(config.site)
    if site is None:
        return ObservationPlan((), duration, kind, f"no site '{config.site}'", details)
    if config.mode == "gw":
        pointings, refused = _gw_pointings(config, ctx, site)
    else:
        pointings, refused = _target(config, ctx, site)
    return ObservationPlan(pointings, duration, kind, refused, details)


def _group_id(ctx: PlanningContext) -> int | None:
    """The start of the first MWA observation planned for this event, if any."""
    for earlier in ctx.earlier():
        if str(earlier.get("kind", "")).startswith("mwa:") and not earlier.get("refused"):
            start = earlier.get("start_gps")
            return int(start) if isinstance(start, int | float) else None
    return None


def _target(
    config: MwaConfig, ctx: PlanningContext, site: Any
) -> tuple[tuple[tuple[float, float], ...], str | None]:
    ra, dec = ctx.number(config.ra), ctx.number(config.dec)
    if ra is None or dec is None:
        return (), f"no position: fields '{config.ra}' and '{config.dec}' must be angles"
    from tracerules.products.sky.observability import altaz

    alt, _ = altaz(ra, dec, site, ctx.now)
    if alt <= site.elevation_limit:
        why = (
            f"(ra, dec) = ({ra:.4f}, {dec:.4f}) deg is at {alt:.2f} deg elevation, below the "
            f"{site.elevation_limit:g} deg limit of site '{site.name}'"
        )
        return (), why
    return ((ra, dec),), None


def _gw_pointings(
    config: MwaConfig, ctx: PlanningContext, site: Any
) -> tuple[tuple[tuple[float, float], ...], str | None]:
    from tracerules.products.sky.mwa_pointings import gw_pointings
    from tracerules.products.sky.skymap_functions import SkyMapFigures

    figures = ctx.extra("skymap")
    if not isinstance(figures, SkyMapFigures):
        reason = getattr(figures, "reason", None) or "the notice has no sky map"
        return (), f"no GW pointings: {reason}"
    skymap = figures.skymap
    chosen = gw_pointings(
        skymap.uniq,
        skymap.probdensity,
        ctx.now,
        site,
        len(config.subarrays),
        config.min_separation,
    )
    if len(chosen) < len(config.subarrays):
        return (), (
            f"only {len(chosen)} sweet spots above {site.elevation_limit:g} deg are "
            f"{config.min_separation:g} deg apart near the sky map's probability"
        )
    return tuple((p.ra, p.dec) for p in chosen), None


def requests(
    config: MwaConfig, values: Mapping[str, Any], plan: Mapping[str, Any]
) -> list[WireRequest]:
    """The requests to send, in order (a GW trigger: the buffer dump first, unless the GW
    observation it re-points is still running)."""
    base = config.url.rstrip("/") + "/"
    query = {"project_id": config.project_id}
    pretend = _flag(bool(plan.get("pretend")))
    out = []
    if config.mode == "gw" and plan.get("replaces") != "mwa:gw":
        dump = {
            "secure_key": config.secure_key,
            "pretend": pretend,
            "start_time": "0",
            "obstime": str(int(config.observing_seconds())),
        }
        out.append(WireRequest("triggerbuffer", "POST", base + "triggerbuffer", query, dump))
    endpoint = "triggerobs" if config.mode == "correlator" else "triggervcs"
    named = {**query, "obsname": render_text(config.obsname, values)}
    body = _observation_body(config, plan, pretend)
    out.append(WireRequest(endpoint, "POST", base + endpoint, named, body))
    return out


def _observation_body(config: MwaConfig, plan: Mapping[str, Any], pretend: str) -> dict[str, str]:
    pointings = [(float(ra), float(dec)) for ra, dec in plan["pointings"]]
    scale = 15.0 if config.ra_unit == "hours" else 1.0
    ras = [round(ra / scale, 6) for ra, _ in pointings]
    decs = [round(dec, 6) for _, dec in pointings]
    body = {
        "secure_key": config.secure_key,
        "ra": json.dumps(ras) if len(ras) > 1 else repr(ras[0]),
        "dec": json.dumps(decs) if len(decs) > 1 else repr(decs[0]),
        "freqspecs": json.dumps(config.freqspecs),
        "nobs": str(config.nobs),
        "exptime": str(config.exptime),
        "avoidsun": _flag(config.avoidsun),
        "creator": config.creator,
        "pretend": pretend,
    }
    if config.calibrator is not False:
        body["calibrator"] = _flag(True) if config.calibrator is True else str(config.calibrator)
        body["calexptime"] = str(config.calexptime)
    else:
        body["calibrator"] = _flag(False)
    if config.freqres is not None and config.inttime is not None:
        body["freqres"], body["inttime"] = f"{config.freqres:g}", f"{config.inttime:g}"
    if config.tileset:
        body["tileset"] = config.tileset
    if plan.get("group_id") is not None:
        body["group_id"] = str(plan["group_id"])
    if config.mode != "correlator":
        body["vcsmode"] = _flag(True)
    if config.mode == "gw":
        body["subarrays"] = json.dumps(config.subarrays)
    return body


def judge(data: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether the service accepted the request, and what it said."""
    errors = data.get("errors")
    listed = list(errors.values()) if isinstance(errors, dict) else errors
    if data.get("success") is not True:
        said = "; ".join(str(e) for e in listed) if isinstance(listed, list) and listed else ""
        return False, f"the service said success={data.get('success')!r}" + (
            f": {said}" if said else ": no errors given"
        )
    parts = []
    params = data.get("params")
    if isinstance(params, dict) and params.get("calibrator") not in (None, True, False):
        parts.append(f"calibrator {params['calibrator']}")
    if isinstance(data.get("obsid_list"), list):
        parts.append(f"obsids {data['obsid_list']}")
    schedule = data.get("schedule")
    if isinstance(schedule, dict) and "retcode" in schedule:
        parts.append(f"schedule retcode {schedule['retcode']}")
    return True, ", ".join(parts) or "accepted"
