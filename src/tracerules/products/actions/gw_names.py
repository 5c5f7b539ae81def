"""Names in the ``gw-alert`` product's folder, and the alert's base64 sky maps.

Pure and numpy-free: the product module imports this when a rule file that uses
``gw-alert`` is loaded, and the heavy parts (``gw_meta``, the sky map) only when it runs
(issue 16: load time).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

#: Names the ``gw-alert`` folder template may use besides the trigger's fields.
LAYOUT_NAMES = ("gw_folder", "gw_id", "gw_stamp", "gw_type")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]+")


def layout_names(alert: Mapping[str, Any]) -> dict[str, str]:
    """gocart's folder parts: superevents|mockevents, the id, YYYYMMDDTHHMMSS and the type."""
    superevent = str(alert.get("superevent_id") or "unknown")
    created = str(alert.get("time_created") or "")
    try:
        stamp = datetime.fromisoformat(created.replace("Z", "+00:00")).strftime("%Y%m%dT%H%M%S")
    except ValueError:
        stamp = _UNSAFE_NAME.sub("", created) or "unknown-time"
    return {
        "gw_folder": "mockevents" if superevent.startswith("M") else "superevents",
        "gw_id": superevent,
        "gw_stamp": stamp,
        "gw_type": str(alert.get("alert_type") or "unknown").lower(),
    }


def alert_json_name(alert: Mapping[str, Any]) -> str:
    names = layout_names(alert)
    return f"{names['gw_id']}-{names['gw_type']}.json"


def skymap_file_name(header: Mapping[str, Any], raw: bytes) -> str:
    """``<creator>.multiorder.fits``, from the header's CREATOR as LVK names its files.

    gocart renames every ``ligo-skymap-from-samples`` map "bilby", although oLIB, cWB and MLy
    maps come from that tool too: the creator is kept as written here.
    """
    creator = _UNSAFE_NAME.sub("-", str(header.get("CREATOR") or "skymap")).strip("-.").lower()
    suffix = ".multiorder.fits.gz" if raw.startswith(b"\x1f\x8b") else ".multiorder.fits"
    return (creator or "skymap") + suffix


#: Folder token when the alert JSON is not written: the sha256 of the payload, hidden.
CLAIM_MARKER = ".alert-sha256"
#: GraceDB's name for the RAVEN combined (GW x external) sky map.
COMBINED_SKYMAP_NAME = "combined-ext.multiorder.fits"


def combined_skymap_payload(alert: Mapping[str, Any]) -> str | None:
    """The base64 ``external_coinc.combined_skymap`` of an alert, or None when it has none."""
    coinc = alert.get("external_coinc")
    payload = coinc.get("combined_skymap") if isinstance(coinc, Mapping) else None
    return payload if isinstance(payload, str) and payload else None


def fits_from_base64(payload: str) -> bytes:
    """The FITS (or gzipped FITS) bytes of a base64 sky map; ValueError for anything else."""
    try:
        raw = base64.b64decode("".join(payload.split()), validate=True)
    except binascii.Error as err:
        raise ValueError(f"the sky map is not valid base64: {err}") from err
    if not raw.startswith((b"SIMPLE", b"\x1f\x8b")):
        raise ValueError("the sky map is not a FITS file")
    return raw
