"""Infer the GCN Kafka topic a notice was (or would be) published on, from its payload alone.

Archived notices carry no Kafka envelope, so ``dry-run`` replays and the test fixtures need a
way to recover the topic. Two payload families exist:

* **VOEvent XML** from GCN Classic. GCN's bridge (``nasa-gcn/gcn-classic-to-kafka``) publishes
  every notice on ``gcn.classic.<flavour>.<NAME>``, where ``NAME`` is the name of the packet
  type number in pygcn's ``gcn.NoticeType`` table, and any number missing from that table
  becomes ``UNKNOWN`` (e.g. the AMON test stream, packet type 159, arrives on
  ``gcn.classic.voevent.UNKNOWN``). The IM_ALIVE packets are dropped by the bridge. The number
  is read from ``//Param[@name='Packet_Type']/@value``; only the root element of a VOEvent is
  namespaced (VOEvent 1.1 and 2.0 use different URIs, some files have none at all), so the
  children are matched by local name. SVOM's own VOEvents also carry a ``Packet_Type``, from a
  numbering of their own; they are recognised by their IVORNs and go to
  ``gcn.notices.svom.voevent.<instrument>``.
* **JSON** ("new GCN"). The ``$schema`` URL
  ``https://gcn.nasa.gov/schema/<version>/gcn/notices/<path>.schema.json`` names the topic:
  ``gcn.notices.`` + ``<path>`` with ``/`` replaced by ``.`` (e.g. ``einstein_probe/wxt/alert``
  -> ``gcn.notices.einstein_probe.wxt.alert``, ``maxi/gsc.unknown`` ->
  ``gcn.notices.maxi.gsc.unknown``), except where the mission publishes several schemas on one
  topic (:data:`SCHEMA_TOPIC_OVERRIDES`). LVK ``igwn.gwalert`` alerts have no ``$schema``; they
  are recognised by their ``superevent_id``.

Sources for the tables: pygcn 1.1.3 ``gcn/notice_types.py`` (itself from
https://gcn.gsfc.nasa.gov/filtering.html), which is what ``gcn-classic-to-kafka`` uses to name
topics; the topic lists of https://gcn.nasa.gov (``NoticeTypeCheckboxes`` and the broker topic
rates in the ``nasa-gcn/gcn.nasa.gov`` repository); the packet type number in the first word of
every ``gcn-classic-to-json`` binary example; and the corpus ``MANIFEST.tsv``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from lxml import etree

__all__ = [
    "CLASSIC_VOEVENT_PREFIX",
    "GCN_PACKET_TYPES",
    "IGNORED_PACKET_TYPES",
    "SCHEMA_TOPIC_OVERRIDES",
    "UNKNOWN_NOTICE_TYPE",
    "classic_notice_type",
    "infer_topic",
    "packet_type_of",
    "topic_for_json",
    "topic_for_schema",
    "topic_for_voevent",
]

#: GCN Classic packet type number -> notice type name, as used in Kafka topic names.
GCN_PACKET_TYPES: Final[Mapping[int, str]] = MappingProxyType(
    {
        1: "GRB_COORDS",
        2: "TEST_COORDS",
        3: "IM_ALIVE",
        4: "KILL_SOCKET",
        11: "MAXBC",
        21: "BRAD_COORDS",
        22: "GRB_FINAL",
        24: "HUNTS_SRC",
        25: "ALEXIS_SRC",
        26: "XTE_PCA_ALERT",
        27: "XTE_PCA_SRC",
        28: "XTE_ASM_ALERT",
        29: "XTE_ASM_SRC",
        30: "COMPTEL_SRC",
        31: "IPN_RAW",
        32: "IPN_SEG",
        33: "SAX_WFC_ALERT",
        34: "SAX_WFC_SRC",
        35: "SAX_NFI_ALERT",
        36: "SAX_NFI_SRC",
        37: "XTE_ASM_TRANS",
        38: "spare38",
        39: "IPN_POS",
        40: "HETE_ALERT_SRC",
        41: "HETE_UPDATE_SRC",
        42: "HETE_FINAL_SRC",
        43: "HETE_GNDANA_SRC",
        44: "HETE_TEST",
        45: "GRB_CNTRPART",
        46: "SWIFT_TOO_FOM",
        47: "SWIFT_TOO_SC_SLEW",
        48: "DOW_TOD",
        50: "spare50",
        51: "INTEGRAL_POINTDIR",
        52: "INTEGRAL_SPIACS",
        53: "INTEGRAL_WAKEUP",
        54: "INTEGRAL_REFINED",
        55: "INTEGRAL_OFFLINE",
        56: "INTEGRAL_WEAK",
        57: "AAVSO",
        58: "MILAGRO_POS",
        59: "KONUS_LC",
        60: "SWIFT_BAT_GRB_ALERT",
        61: "SWIFT_BAT_GRB_POS_ACK",
        62: "SWIFT_BAT_GRB_POS_NACK",
        63: "SWIFT_BAT_GRB_LC",
        64: "SWIFT_BAT_SCALEDMAP",
        65: "SWIFT_FOM_OBS",
        66: "SWIFT_SC_SLEW",
        67: "SWIFT_XRT_POSITION",
        68: "SWIFT_XRT_SPECTRUM",
        69: "SWIFT_XRT_IMAGE",
        70: "SWIFT_XRT_LC",
        71: "SWIFT_XRT_CENTROID",
        72: "SWIFT_UVOT_DBURST",
        73: "SWIFT_UVOT_FCHART",
        76: "SWIFT_BAT_GRB_LC_PROC",
        77: "SWIFT_XRT_SPECTRUM_PROC",
        78: "SWIFT_XRT_IMAGE_PROC",
        79: "SWIFT_UVOT_DBURST_PROC",
        80: "SWIFT_UVOT_FCHART_PROC",
        81: "SWIFT_UVOT_POS",
        82: "SWIFT_BAT_GRB_POS_TEST",
        83: "SWIFT_POINTDIR",
        84: "SWIFT_BAT_TRANS",
        85: "SWIFT_XRT_THRESHPIX",
        86: "SWIFT_XRT_THRESHPIX_PROC",
        87: "SWIFT_XRT_SPER",
        88: "SWIFT_XRT_SPER_PROC",
        89: "SWIFT_UVOT_POS_NACK",
        90: "SWIFT_BAT_ALARM_SHORT",
        91: "SWIFT_BAT_ALARM_LONG",
        92: "SWIFT_UVOT_EMERGENCY",
        93: "SWIFT_XRT_EMERGENCY",
        94: "SWIFT_FOM_PPT_ARG_ERR",
        95: "SWIFT_FOM_SAFE_POINT",
        96: "SWIFT_FOM_SLEW_ABORT",
        97: "SWIFT_BAT_QL_POS",
        98: "SWIFT_BAT_SUB_THRESHOLD",
        99: "SWIFT_BAT_SLEW_POS",
        100: "AGILE_GRB_WAKEUP",
        101: "AGILE_GRB_GROUND",
        102: "AGILE_GRB_REFINED",
        103: "SWIFT_ACTUAL_POINTDIR",
        105: "AGILE_MCAL_ALERT",
        107: "AGILE_POINTDIR",
        108: "AGILE_TRANS",
        109: "AGILE_GRB_POS_TEST",
        110: "FERMI_GBM_ALERT",
        111: "FERMI_GBM_FLT_POS",
        112: "FERMI_GBM_GND_POS",
        113: "FERMI_GBM_LC",
        114: "FERMI_GBM_GND_INTERNAL",
        115: "FERMI_GBM_FIN_POS",
        116: "FERMI_GBM_ALERT_INTERNAL",
        117: "FERMI_GBM_FLT_INTERNAL",
        118: "FERMI_GBM_TRANS",
        119: "FERMI_GBM_POS_TEST",
        120: "FERMI_LAT_POS_INI",
        121: "FERMI_LAT_POS_UPD",
        122: "FERMI_LAT_POS_DIAG",
        123: "FERMI_LAT_TRANS",
        124: "FERMI_LAT_POS_TEST",
        125: "FERMI_LAT_MONITOR",
        126: "FERMI_SC_SLEW",
        127: "FERMI_LAT_GND",
        128: "FERMI_LAT_OFFLINE",
        129: "FERMI_POINTDIR",
        130: "SIMBADNED",
        131: "FERMI_GBM_SUBTHRESH",
        133: "SWIFT_BAT_MONITOR",
        134: "MAXI_UNKNOWN",
        135: "MAXI_KNOWN",
        136: "MAXI_TEST",
        137: "OGLE",
        138: "CBAT",
        139: "MOA",
        140: "SWIFT_BAT_SUBSUB",
        141: "SWIFT_BAT_KNOWN_SRC",
        142: "VOE_11_IM_ALIVE",
        143: "VOE_20_IM_ALIVE",
        144: "FERMI_SC_SLEW_INTERNAL",
        145: "COINCIDENCE",
        146: "FERMI_GBM_FIN_INTERNAL",
        148: "SUZAKU_LC",
        149: "SNEWS",
        150: "LVC_PRELIMINARY",
        151: "LVC_INITIAL",
        152: "LVC_UPDATE",
        153: "LVC_TEST",
        154: "LVC_COUNTERPART",
        157: "AMON_ICECUBE_COINC",
        158: "AMON_ICECUBE_HESE",
        160: "CALET_GBM_FLT_LC",
        161: "CALET_GBM_GND_LC",
        163: "LVC_EARLY_WARNING",
        164: "LVC_RETRACTION",
        168: "GWHEN_COINC",
        169: "AMON_ICECUBE_EHE",
        171: "HAWC_BURST_MONITOR",
        172: "AMON_NU_EM_COINC",
        173: "ICECUBE_ASTROTRACK_GOLD",
        174: "ICECUBE_ASTROTRACK_BRONZE",
        175: "SK_SN",
        176: "ICECUBE_CASCADE",
        188: "GECAM_FLT",
        189: "GECAM_GND",
    }
)

#: The name GCN's Kafka bridge gives to packet types missing from :data:`GCN_PACKET_TYPES`.
UNKNOWN_NOTICE_TYPE: Final = "UNKNOWN"

#: Keep-alive packets: the bridge never publishes them, so they have no topic.
IGNORED_PACKET_TYPES: Final[frozenset[int]] = frozenset({3, 142, 143})

CLASSIC_VOEVENT_PREFIX: Final = "gcn.classic.voevent."

#: Topic of each ``$schema`` path (below ``gcn/notices/``, lower-cased) where the plain naming
#: rule does not give the topic. A key matches the path itself and everything below it
#: (``key/...``) or beside it with a dotted suffix (``key.suffix``). ``None`` means "no topic":
#: schema fragments and draft JSON renditions of GCN Classic notices (whose topics would be
#: ``gcn.classic.json.<NAME>``, which the schema path does not say).
SCHEMA_TOPIC_OVERRIDES: Final[Mapping[str, str | None]] = MappingProxyType(
    {
        "core/alert": "gcn.heartbeat",
        "core": None,
        "classic": None,
        "lvk/igwn": "igwn.gwalert",
        "fermi/gbm": "gcn.notices.fermi.gbm",
        "fermi/lat": "gcn.notices.fermi.lat.flare",
        "icecube/single_neutrino_alerts": "gcn.notices.icecube.gold_bronze_track_alerts",
        "icecube/goldandbronze": "gcn.notices.icecube.gold_bronze_track_alerts",
        "icecube/amon/goldandbronze": "gcn.notices.icecube.gold_bronze_track_alerts",
        "icecube/lvknutracksearch": "gcn.notices.icecube.lvk_nu_track_search",
        "km3net": "gcn.notices.km3net",
        "burstcube": "gcn.notices.burstcube",
        "svom": "gcn.notices.svom",
        "swift/bat/guano": "gcn.notices.swift.bat.guano",
    }
)

_OVERRIDE_KEYS: Final = tuple(sorted(SCHEMA_TOPIC_OVERRIDES, key=len, reverse=True))
_SCHEMA_HOSTS: Final = ("https://gcn.nasa.gov/schema/", "http://gcn.nasa.gov/schema/")
_SCHEMA_SUFFIX: Final = ".schema.json"
_SVOM_INSTRUMENTS: Final = frozenset({"eclairs", "grm", "mxt"})
_WHITESPACE: Final = b" \t\r\n"
_BOM: Final = b"\xef\xbb\xbf"

_local = threading.local()


def _parser() -> etree.XMLParser:
    """A per-thread parser that never expands entities, loads DTDs or touches the network."""
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
        )
        _local.parser = parser
    return parser


def classic_notice_type(packet_type: int) -> str:
    """Notice type name of a GCN Classic packet type, ``UNKNOWN`` when it has none."""
    return GCN_PACKET_TYPES.get(packet_type, UNKNOWN_NOTICE_TYPE)


def _param_value(root: etree._Element, name: str) -> str | None:
    """``//Param[@name=$name]/@value`` (first match), with Params matched in any namespace."""
    for param in root.iter("{*}Param"):
        if param.get("name") == name:
            return param.get("value")
    return None


def packet_type_of(root: etree._Element) -> int | None:
    """The ``Packet_Type`` Param of a VOEvent as an integer, or ``None``."""
    raw = _param_value(root, "Packet_Type")
    if raw is None:
        return None
    try:
        return int(raw.strip())
    except ValueError:
        return None


def _is_svom(root: etree._Element) -> bool:
    ivorns = [root.get("ivorn", "")]
    ivorns.extend(author.text or "" for author in root.iter("{*}AuthorIVORN"))
    return any("org.svom" in ivorn.lower() for ivorn in ivorns)


def _svom_topic(root: etree._Element) -> str | None:
    instrument = (_param_value(root, "Instrument") or "").strip().lower()
    if instrument in _SVOM_INSTRUMENTS:
        return f"gcn.notices.svom.voevent.{instrument}"
    return None


def topic_for_voevent(root_or_bytes: bytes | etree._Element) -> str | None:
    """Topic of a VOEvent, given as bytes or as its parsed root element.

    ``gcn.classic.voevent.<NAME>`` for GCN Classic notices (``UNKNOWN`` for numbers outside
    :data:`GCN_PACKET_TYPES`), ``gcn.notices.svom.voevent.<instrument>`` for SVOM, ``None``
    when the payload does not parse, declares a DTD, has no usable ``Packet_Type`` or is a
    keep-alive.
    """
    if isinstance(root_or_bytes, bytes):
        if b"<!ENTITY" in root_or_bytes:
            return None
        try:
            root = etree.fromstring(root_or_bytes, _parser())
        except etree.XMLSyntaxError:
            return None
    else:
        root = root_or_bytes
    if root.getroottree().docinfo.internalDTD is not None:
        # VOEvents have no DTD; with one, libxml2 would still expand internal entities in
        # attribute values, so a document type declaration is refused outright.
        return None
    packet_type = packet_type_of(root)
    if packet_type is None:
        return None
    if _is_svom(root):
        return _svom_topic(root)
    if packet_type in IGNORED_PACKET_TYPES:
        return None
    return CLASSIC_VOEVENT_PREFIX + classic_notice_type(packet_type)


def _schema_path(url: str) -> str | None:
    """``https://gcn.nasa.gov/schema/[<version>/]gcn/<path>.schema.json`` -> ``<path>``."""
    for host in _SCHEMA_HOSTS:
        if url.startswith(host):
            rest = url[len(host) :]
            break
    else:
        return None
    parts = rest.split("/")
    if parts[0] != "gcn":  # a version ("v4.2.0") or a branch ("main"); absent in old drafts
        parts = parts[1:]
    if len(parts) < 2 or parts[0] != "gcn" or not parts[-1].endswith(_SCHEMA_SUFFIX):
        return None
    path = "/".join(parts[1:])
    return path[: -len(_SCHEMA_SUFFIX)].lower()


def topic_for_schema(url: str) -> str | None:
    """Topic of the notices validated by the GCN JSON schema at ``url``."""
    path = _schema_path(url)
    if path is None:
        return None
    if path == "circulars":
        return "gcn.circulars"
    if not path.startswith("notices/"):
        return None
    path = path[len("notices/") :]
    for key in _OVERRIDE_KEYS:
        if path == key or path.startswith((key + "/", key + ".")):
            return SCHEMA_TOPIC_OVERRIDES[key]
    return "gcn.notices." + path.replace("/", ".")


def topic_for_json(obj: Mapping[str, object]) -> str | None:
    """Topic of a JSON notice: from its ``$schema``, else ``igwn.gwalert`` for LVK alerts."""
    schema = obj.get("$schema")
    if isinstance(schema, str):
        topic = topic_for_schema(schema)
        if topic is not None:
            return topic
    if "superevent_id" in obj:
        return "igwn.gwalert"
    return None


def infer_topic(payload: bytes) -> str | None:
    """Topic of a raw notice payload, choosing XML or JSON by its first non-space byte."""
    start = len(_BOM) if payload.startswith(_BOM) else 0
    body = payload[start:].lstrip(_WHITESPACE)
    if body.startswith(b"<"):
        return topic_for_voevent(body)
    if body.startswith(b"{"):
        try:
            obj: object = json.loads(body)
        except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError; 10^5 levels
            return None
        return topic_for_json(obj) if isinstance(obj, dict) else None
    return None
