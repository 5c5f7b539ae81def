"""Topic inference (tracerules.runtime.sources.topics) against the real notices in tests/data."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from lxml import etree

from tracerules.runtime.sources.topics import (
    GCN_PACKET_TYPES,
    IGNORED_PACKET_TYPES,
    UNKNOWN_NOTICE_TYPE,
    classic_notice_type,
    infer_topic,
    packet_type_of,
    topic_for_json,
    topic_for_schema,
    topic_for_voevent,
)

NOTICES = Path(__file__).parent / "data" / "notices"
BARE_TOPIC = re.compile(r"^(gcn|igwn)\.[A-Za-z0-9_.]+$")


def _provenance() -> list[dict[str, str]]:
    with (NOTICES / "PROVENANCE.tsv").open(newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


PROVENANCE = _provenance()

#: Files whose manifest topic we deliberately do not reproduce: local path -> (what we infer, why).
KNOWN_MISMATCHES: dict[str, tuple[str, str]] = {
    "icecube/test.gold_bronze_track_alerts.example.json": (
        "gcn.notices.icecube.test.gold_bronze_track_alerts",
        "its $schema is icecube/test/gold_bronze_track_alerts; GCN's broker has a separate topic "
        "gcn.notices.icecube.test.gold_bronze_track_alerts (listed with its rate on gcn.nasa.gov), "
        "the manifest's non-test topic is a guess",
    ),
}

KNOWN_TOPIC_ROWS = [
    pytest.param(row["local_path"], row["gcn_topic"], id=row["local_path"])
    for row in PROVENANCE
    if BARE_TOPIC.match(row["gcn_topic"])
]


def _read(local_path: str) -> bytes:
    return (NOTICES / local_path).read_bytes()


# --------------------------------------------------------------------------- the fixture set


def test_provenance_lists_every_file_and_nothing_else() -> None:
    on_disk = {
        p.relative_to(NOTICES).as_posix()
        for p in NOTICES.rglob("*")
        if p.is_file() and p.name not in ("PROVENANCE.tsv", "README.md")
    }
    listed = [row["local_path"] for row in PROVENANCE]
    assert len(listed) == len(set(listed))
    assert set(listed) == on_disk
    assert not [path for path in listed if ":" in path or "#" in path]


def test_provenance_has_known_topics() -> None:
    assert len(KNOWN_TOPIC_ROWS) > 200
    for local_path in KNOWN_MISMATCHES:
        assert local_path in {row["local_path"] for row in PROVENANCE}


# --------------------------------------------------------------------------- corpus agreement


@pytest.mark.parametrize(("local_path", "topic"), KNOWN_TOPIC_ROWS)
def test_inferred_topic_matches_provenance(local_path: str, topic: str) -> None:
    inferred = infer_topic(_read(local_path))
    if local_path in KNOWN_MISMATCHES:
        expected, _reason = KNOWN_MISMATCHES[local_path]
        assert topic != expected
        assert inferred == expected
    else:
        assert inferred == topic


# --------------------------------------------------------------------------- the packet table


@pytest.mark.parametrize(
    ("number", "name"),
    [
        (2, "TEST_COORDS"),
        (46, "SWIFT_TOO_FOM"),
        (61, "SWIFT_BAT_GRB_POS_ACK"),
        (97, "SWIFT_BAT_QL_POS"),
        (103, "SWIFT_ACTUAL_POINTDIR"),
        (111, "FERMI_GBM_FLT_POS"),
        (140, "SWIFT_BAT_SUBSUB"),
        (150, "LVC_PRELIMINARY"),
        (163, "LVC_EARLY_WARNING"),
        (164, "LVC_RETRACTION"),
        (172, "AMON_NU_EM_COINC"),
        (175, "SK_SN"),
        (176, "ICECUBE_CASCADE"),
        (188, "GECAM_FLT"),
        (189, "GECAM_GND"),
    ],
)
def test_packet_type_names(number: int, name: str) -> None:
    assert GCN_PACKET_TYPES[number] == name
    assert classic_notice_type(number) == name


def test_packet_table_is_consistent() -> None:
    names = list(GCN_PACKET_TYPES.values())
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", name) for name in names)
    assert set(GCN_PACKET_TYPES) >= IGNORED_PACKET_TYPES
    assert 159 not in GCN_PACKET_TYPES
    assert classic_notice_type(159) == UNKNOWN_NOTICE_TYPE == "UNKNOWN"


# --------------------------------------------------------------------------- VOEvent


def _voevent(params: str, root: str = "voe:VOEvent", ns: str = "") -> bytes:
    ns = ns or 'xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0"'
    return (
        f'<?xml version="1.0"?>\n<{root} {ns} role="observation" '
        f'ivorn="ivo://nasa.gsfc.gcn/TEST#1"><What>{params}</What></{root}>'
    ).encode()


@pytest.mark.parametrize(
    ("local_path", "topic"),
    [
        ("traps/voevent_v1.1__SWIFT_xrt_position_v1.1_example.xml", "SWIFT_XRT_POSITION"),
        ("traps/root_no_namespace__group_03_SWIFT_XRT_Pos.xml", "SWIFT_XRT_POSITION"),
        ("icecube/AMON_ICECUBE_GOLD_190730.xml", "ICECUBE_ASTROTRACK_GOLD"),
        ("traps/negative_trigid__BAT_SubSubThresh_Pos_-1291204410-055.xml", "SWIFT_BAT_SUBSUB"),
        ("traps/filename_hash__SWIFT_BAT_GRB_Pos_1163119-055.xml", "SWIFT_BAT_GRB_POS_ACK"),
        ("traps/stray_whitespace__FLT_Event_2023-11-06T1214-39-04.96_000007-391.xml", "GECAM_FLT"),
        ("lvk_voevent/S230524x-1-EarlyWarning.xml", "LVC_EARLY_WARNING"),
    ],
)
def test_voevent_namespace_variants(local_path: str, topic: str) -> None:
    payload = _read(local_path)
    assert topic_for_voevent(payload) == "gcn.classic.voevent." + topic
    assert topic_for_voevent(etree.fromstring(payload)) == "gcn.classic.voevent." + topic


def test_voevent_unknown_packet_type_goes_to_unknown_topic() -> None:
    # The AMON test stream (packet type 159) is published on gcn.classic.voevent.UNKNOWN.
    amon = sorted((NOTICES / "day_stream/nasa.gsfc.gcn/AMON").glob("TEST_Event*.xml"))
    assert amon
    for path in amon:
        root = etree.fromstring(path.read_bytes())
        assert packet_type_of(root) == 159
        assert topic_for_voevent(root) == "gcn.classic.voevent.UNKNOWN"
    assert topic_for_voevent(_voevent('<Param name="Packet_Type" value="5000"/>')) == (
        "gcn.classic.voevent.UNKNOWN"
    )


def test_voevent_without_usable_packet_type() -> None:
    assert topic_for_voevent(_read("traps/invalid_role__HESS_test_event.xml")) is None
    assert (
        topic_for_voevent(_read("traps/malformed_unbound_prefix__Swift_unknown_fail.xml")) is None
    )
    assert topic_for_voevent(_voevent('<Param name="Packet_Type" value="0x3d"/>')) is None
    assert topic_for_voevent(_voevent('<Param name="Other" value="61"/>')) is None
    assert topic_for_voevent(b"<VOEvent") is None


def test_voevent_value_whitespace_default_namespace_and_keepalive() -> None:
    assert topic_for_voevent(_voevent('<Param name="Packet_Type" value=" 61 "/>')) == (
        "gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK"
    )
    default_ns = _voevent(
        '<Param name="Packet_Type" value="150"/>',
        root="VOEvent",
        ns='xmlns="http://www.ivoa.net/xml/VOEvent/v2.0"',
    )
    assert topic_for_voevent(default_ns) == "gcn.classic.voevent.LVC_PRELIMINARY"
    for keepalive in sorted(IGNORED_PACKET_TYPES):
        assert (
            topic_for_voevent(_voevent(f'<Param name="Packet_Type" value="{keepalive}"/>')) is None
        )


def test_svom_voevent() -> None:
    payload = _read("svom/svom_grb_template.xml")
    assert packet_type_of(etree.fromstring(payload)) == 576
    assert topic_for_voevent(payload) == "gcn.notices.svom.voevent.eclairs"


def test_voevent_with_a_dtd_is_refused() -> None:
    # libxml2 expands internal entities in attribute values even with resolve_entities=False.
    payload = (
        b'<?xml version="1.0"?><!DOCTYPE v [<!ENTITY t "150">]>'
        b'<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0">'
        b'<What><Param name="Packet_Type" value="&t;"/></What></voe:VOEvent>'
    )
    assert topic_for_voevent(payload) is None
    assert infer_topic(payload) is None
    assert topic_for_voevent(etree.fromstring(payload)) is None
    assert (
        topic_for_voevent(_voevent("").replace(b"?>", b'?><!DOCTYPE voe:VOEvent SYSTEM "x.dtd">'))
        is None
    )


# --------------------------------------------------------------------------- JSON


@pytest.mark.parametrize(
    ("url", "topic"),
    [
        (
            "https://gcn.nasa.gov/schema/v4.2.0/gcn/notices/fermi/gbm/trigger.schema.json",
            "gcn.notices.fermi.gbm",
        ),
        (
            "https://gcn.nasa.gov/schema/main/gcn/notices/einstein_probe/wxt/alert.schema.json",
            "gcn.notices.einstein_probe.wxt.alert",
        ),
        (
            "https://gcn.nasa.gov/schema/main/gcn/notices/chime/frb.schema.json",
            "gcn.notices.chime.frb",
        ),
        (
            "https://gcn.nasa.gov/schema/main/gcn/notices/maxi/gsc.unknown.schema.json",
            "gcn.notices.maxi.gsc.unknown",
        ),
        (
            "https://gcn.nasa.gov/schema/v4.2.0/gcn/notices/icecube/lvk_nu_track_search.schema.json",
            "gcn.notices.icecube.lvk_nu_track_search",
        ),
        (
            "https://gcn.nasa.gov/schema/main/gcn/notices/icecube/single_neutrino_alerts.schema.json",
            "gcn.notices.icecube.gold_bronze_track_alerts",
        ),
        (
            "https://gcn.nasa.gov/schema/main/gcn/notices/svom/eclairs/wakeup.schema.json",
            "gcn.notices.svom",
        ),
        (
            "https://gcn.nasa.gov/schema/main/gcn/notices/swift/bat/Guano.schema.json",
            "gcn.notices.swift.bat.guano",
        ),
        (
            "https://gcn.nasa.gov/schema/gcn/notices/swift/bat/guano/alert.schema.json",
            "gcn.notices.swift.bat.guano",
        ),
        ("https://gcn.nasa.gov/schema/gcn/notices/LVK/Igwn.schema.json", "igwn.gwalert"),
        ("https://gcn.nasa.gov/schema/main/gcn/notices/core/Alert.schema.json", "gcn.heartbeat"),
        ("https://gcn.nasa.gov/schema/v4.2.0/gcn/circulars.schema.json", "gcn.circulars"),
        ("https://gcn.nasa.gov/schema/main/gcn/notices/core/Localization.schema.json", None),
        ("https://gcn.nasa.gov/schema/main/gcn/notices/classic/agile/alert.schema.json", None),
        ("https://json-schema.org/draft/2020-12/schema", None),
        ("https://gcn.nasa.gov/schema/main/gcn/notices/chime/frb.json", None),
    ],
)
def test_topic_for_schema(url: str, topic: str | None) -> None:
    assert topic_for_schema(url) == topic


def test_topic_for_json() -> None:
    retraction = json.loads(_read("lvk_json/06_MS181101ab-retraction.json"))
    assert retraction["event"] is None
    assert topic_for_json(retraction) == "igwn.gwalert"
    assert topic_for_json({"superevent_id": "S230518h", "$schema": 3}) == "igwn.gwalert"
    assert topic_for_json({}) is None
    assert topic_for_json({"$schema": "https://example.org/x.schema.json"}) is None
    # gcn-classic-to-json output carries no $schema: no topic can be inferred.
    classic = json.loads(_read("traps/json_id_array_of_integers__SWIFT_BAT_QL_POS.example.json"))
    assert topic_for_json(classic) is None


# --------------------------------------------------------------------------- infer_topic


@pytest.mark.parametrize(
    ("payload", "topic"),
    [
        (b'  \n\t{"superevent_id": "MS181101ab"}', "igwn.gwalert"),
        (b'\xef\xbb\xbf{"superevent_id": "MS181101ab"}', "igwn.gwalert"),
        (
            b'\r\n<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0"><What>'
            b'<Param name="Packet_Type" value="111"/></What></voe:VOEvent>',
            "gcn.classic.voevent.FERMI_GBM_FLT_POS",
        ),
        (b'{"superevent_id": ', None),
        (b'["igwn.gwalert"]', None),
        (b"\xff\xfe{}", None),
        (b"", None),
        (b"   ", None),
        (b"Obj\x01\x04avro", None),
        (b"\x00\x00\x00=" + bytes(156), None),
    ],
)
def test_infer_topic_dispatch(payload: bytes, topic: str | None) -> None:
    assert infer_topic(payload) == topic


def test_infer_topic_on_embedded_skymap_alert() -> None:
    payload = _read("lvk_json/igwn_gwalert_preliminary.json")
    assert len(payload) > 1_000_000
    assert infer_topic(payload) == "igwn.gwalert"


# --------------------------------------------------------------------------- fixture claims


def test_fermi_gbm_json_is_ordered_by_record_number() -> None:
    files = sorted((NOTICES / "fermi_gbm_json").glob("*.json"))
    records = [json.loads(p.read_bytes()) for p in files]
    assert [r["record_number"] for r in records] == list(range(1, 8))
    assert [p.name.split("_", 1)[0] for p in files] == [str(i) for i in range(1, 8)]
    assert "ra" not in records[0] and "ra_dec_error" not in records[0]
    assert all("ra" in r for r in records[1:])


def test_integral_trigger_ids_group_only_when_masked() -> None:
    ids = []
    for path in sorted((NOTICES / "integral").glob("*.xml")):
        value = etree.fromstring(path.read_bytes()).xpath("string(//Param[@name='TrigID']/@value)")
        ids.append(int(str(value)))
    assert ids == [10436, 75972, 141508, 207044, 272580]
    assert len(set(ids)) == 5
    assert {i & 0xFFFF for i in ids} == {10436}


def test_day_stream_order_files() -> None:
    original = (NOTICES / "day_stream/_day-stream_2023-11-01_order.txt").read_text().splitlines()
    local = (NOTICES / "day_stream/order.local.txt").read_text().splitlines()
    assert len(original) == len(local) == 150
    for orig, loc in zip(original, local, strict=True):
        assert loc == orig.replace(":", "-").replace("#", "_")
        assert (NOTICES / "day_stream" / loc).is_file()


@pytest.mark.parametrize(
    ("local_path", "xpath", "raw"),
    [
        (
            "traps/voevent_v1.1__SWIFT_xrt_position_v1.1_example.xml",
            "namespace-uri(/*)",
            "http://www.ivoa.net/xml/VOEvent/v1.1",
        ),
        (
            "traps/voevent_v1.1__SWIFT_xrt_position_v1.1_example.xml",
            "string(//*[local-name()='Position2D']/*[local-name()='Value2']/*[local-name()='C1'])",
            "314.7162",
        ),
        (
            "traps/voevent_v1.1__SWIFT_xrt_position_v1.1_example.xml",
            "string(//Position2D/Value2/C1)",
            "",
        ),
        (
            "traps/bool_true_false__BAT_GRB_Pos_558756-820.xml",
            "string(//Param[@name='GRB_Identified']/@value)",
            "true",
        ),
        (
            "traps/bool_0_1__LVC_real_preliminary.xml",
            "string(//Param[@name='Significant']/@value)",
            "1",
        ),
        (
            "traps/hex_string__SWIFT_BAT_GRB_Pos_1093742-465.xml",
            "string(//Param[@name='Soln_Status']/@value)",
            "0x20000003",
        ),
        (
            "traps/stray_whitespace__FLT_Event_2023-11-06T1214-39-04.96_000007-391.xml",
            "string(//Param[@name='TRIGGER_SIGNIF']/@value)",
            " 4.40",
        ),
        (
            "traps/negative_trigid__BAT_SubSubThresh_Pos_-1291204410-055.xml",
            "string(//Param[@name='TrigID']/@value)",
            "-1291204410",
        ),
        ("traps/role_test__MS190410a-1-Preliminary.xml", "string(/*/@role)", "test"),
        ("traps/invalid_role__HESS_test_event.xml", "string(/*/@role)", "observe"),
        ("traps/root_no_namespace__group_03_SWIFT_XRT_Pos.xml", "namespace-uri(/*)", ""),
        (
            "lvk_voevent/S190425z-1-Initial.xml",
            "string(//Group[@type='Classification']/Param[@name='BNS']/@value)",
            "0.999402567114",
        ),
        (
            "lvk_voevent/S190425z-1-Initial.xml",
            "string(//Group[@name='Classification']/Param[@name='BNS']/@value)",
            "",
        ),
    ],
)
def test_trap_readme_xml_values(local_path: str, xpath: str, raw: str) -> None:
    assert etree.fromstring(_read(local_path)).xpath(xpath) == raw


@pytest.mark.parametrize(
    ("local_path", "keys", "raw"),
    [
        (
            "traps/json_id_array_of_strings__trigger.alert.example.json",
            ["id"],
            ["745121685", "bn240812094"],
        ),
        ("traps/json_id_string__gsc.known.example.json", ["id"], "0858800020"),
        ("traps/json_id_array_of_integers__SWIFT_BAT_QL_POS.example.json", ["id"], [1227767]),
        ("traps/ra_dec_error_number__alert.example.json", ["ra_dec_error"], 0.02),
        (
            "traps/ra_dec_error_ellipse__frb.detection.example.json",
            ["ra_dec_error"],
            [0.503806986334273, 0.598921231135782, 0],
        ),
        (
            "traps/key_with_dots__lvk_nu_track_search.example.json",
            ["reference", "gcn.notices.LVK.alert"],
            "S230914ak-2-Preliminary",
        ),
        ("traps/alert_tense_test__sn_alert.test.example.json", ["alert_tense"], "test"),
    ],
)
def test_trap_readme_json_values(local_path: str, keys: list[str], raw: object) -> None:
    value = json.loads(_read(local_path))
    for key in keys:
        value = value[key]
    assert value == raw


@pytest.mark.parametrize(
    ("local_path", "key"),
    [
        ("traps/json_id_missing__EP240508.json", "id"),
        ("traps/ra_dec_error_absent__gsc.unknown.noerror.example.json", "ra_dec_error"),
    ],
)
def test_trap_readme_json_absent(local_path: str, key: str) -> None:
    assert key not in json.loads(_read(local_path))


def test_trap_malformed_file_does_not_parse() -> None:
    with pytest.raises(etree.XMLSyntaxError, match="Namespace prefix xsi"):
        etree.fromstring(_read("traps/malformed_unbound_prefix__Swift_unknown_fail.xml"))
