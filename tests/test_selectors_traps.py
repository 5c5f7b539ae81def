"""Selectors on real notices: one test per trap listed in the corpus README.

Files come from tests/data/notices/traps (see its README for each trap's origin).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tracerules.dsl.convert import CONVERSIONS
from tracerules.dsl.selectors import compile_jsonpath, compile_xpath
from tracerules.dsl.values import Missing
from tracerules.errors import DslError
from tracerules.runtime.sources.notices import NoticeError, parse_json, parse_xml

TRAPS = Path(__file__).parent / "data" / "notices" / "traps"
NOTICES = TRAPS.parent


def xml(name: str) -> Any:
    return parse_xml((TRAPS / name).read_bytes())


def js(name: str) -> Any:
    return parse_json((TRAPS / name).read_bytes())


def convert(kind: str, value: Any) -> Any:
    return CONVERSIONS[kind][0](value)


def test_only_the_voevent_root_is_namespaced() -> None:
    root = xml("bool_true_false__BAT_GRB_Pos_558756-820.xml")
    assert compile_xpath("//Param[@name='TrigID']/@value")(root) == "558756"
    assert compile_xpath("/voe:VOEvent/@role")(root) == "observation"
    # Children are not in the VOEvent namespace, so a prefixed child path finds nothing.
    assert isinstance(compile_xpath("//voe:Param[@name='TrigID']/@value")(root), Missing)


def test_voevent_1_1_needs_local_names_for_stc_positions() -> None:
    root = xml("voevent_v1.1__SWIFT_xrt_position_v1.1_example.xml")
    assert compile_xpath("namespace-uri(/*)")(root) == "http://www.ivoa.net/xml/VOEvent/v1.1"
    assert isinstance(compile_xpath("string(//Position2D/Value2/C1)")(root), Missing)
    c1 = "string(//*[local-name()='Position2D']/*[local-name()='Value2']/*[local-name()='C1'])"
    assert convert("angle", compile_xpath(c1)(root)) == pytest.approx(314.7162)
    assert compile_xpath("//Param[@name='Packet_Type']/@value")(root) == "67"


def test_a_root_without_any_namespace_still_reads() -> None:
    root = xml("root_no_namespace__group_03_SWIFT_XRT_Pos.xml")
    assert compile_xpath("name(/*)")(root) == "VOEvent"
    assert isinstance(compile_xpath("/voe:VOEvent/@role")(root), Missing)
    assert compile_xpath("/*/@role")(root)


@pytest.mark.parametrize(
    ("name", "param", "raw", "value"),
    [
        ("bool_true_false__BAT_GRB_Pos_558756-820.xml", "GRB_Identified", "true", True),
        ("bool_true_false__BAT_GRB_Pos_558756-820.xml", "Def_NOT_a_GRB", "false", False),
        ("bool_0_1__LVC_real_preliminary.xml", "Significant", "1", True),
        ("bool_0_1__LVC_real_preliminary.xml", "HardwareInj", "0", False),
    ],
)
def test_booleans_as_words_or_digits(name: str, param: str, raw: str, value: bool) -> None:
    found = compile_xpath(f"//Param[@name='{param}']/@value")(xml(name))
    assert found == raw
    assert convert("bool", found) is value


def test_hex_strings_convert_explicitly() -> None:
    found = compile_xpath("//Param[@name='Soln_Status']/@value")(
        xml("hex_string__SWIFT_BAT_GRB_Pos_1093742-465.xml")
    )
    assert found == "0x20000003"
    assert convert("int", found) == 0x20000003
    assert convert("auto", found) == "0x20000003"  # no accidental conversion


def test_stray_whitespace_is_stripped() -> None:
    root = xml("stray_whitespace__FLT_Event_2023-11-06T1214-39-04.96_000007-391.xml")
    found = compile_xpath("//Param[@name='TRIGGER_SIGNIF']/@value")(root)
    assert found == "4.40"
    assert convert("float", found) == 4.4


def test_negative_subthreshold_trigger_id() -> None:
    root = xml("negative_trigid__BAT_SubSubThresh_Pos_-1291204410-055.xml")
    assert convert("int", compile_xpath("//Param[@name='TrigID']/@value")(root)) == -1291204410


@pytest.mark.parametrize(
    ("name", "first"),
    [
        ("json_id_array_of_strings__trigger.alert.example.json", "745121685"),
        ("json_id_array_of_integers__SWIFT_BAT_QL_POS.example.json", 1227767),
    ],
)
def test_json_id_as_arrays(name: str, first: Any) -> None:
    doc = js(name)
    assert compile_jsonpath("$.id[0]")(doc) == first
    assert compile_jsonpath("$.id")(doc)[0] == first


def test_json_id_as_plain_string_is_not_indexed_into_characters() -> None:
    doc = js("json_id_string__gsc.known.example.json")
    assert compile_jsonpath("$.id")(doc) == "0858800020"
    indexed = compile_jsonpath("$.id[0]")(doc)
    assert isinstance(indexed, Missing)  # jsonpath-ng would give "0"
    assert convert("string", compile_jsonpath("$.id")(doc)) == "0858800020"  # keeps the zero


def test_json_id_missing() -> None:
    found = compile_jsonpath("$.id")(js("json_id_missing__EP240508.json"))
    assert isinstance(found, Missing)
    assert "no match for $.id" in found.reason


def test_ra_dec_error_as_number_ellipse_or_absent() -> None:
    select = compile_jsonpath("$.ra_dec_error")
    assert select(js("ra_dec_error_number__alert.example.json")) == 0.02
    ellipse = select(js("ra_dec_error_ellipse__frb.detection.example.json"))
    assert ellipse == [0.503806986334273, 0.598921231135782, 0]
    assert isinstance(convert("angle", ellipse), Missing)  # explicit: a list is not an angle
    assert compile_jsonpath("$.ra_dec_error[0]")(
        js("ra_dec_error_ellipse__frb.detection.example.json")
    ) == pytest.approx(0.5038069)
    assert isinstance(select(js("ra_dec_error_absent__gsc.unknown.noerror.example.json")), Missing)


def test_keys_with_dots() -> None:
    doc = js("key_with_dots__lvk_nu_track_search.example.json")
    assert (
        compile_jsonpath("$.reference['gcn.notices.LVK.alert']")(doc) == "S230914ak-2-Preliminary"
    )
    assert isinstance(compile_jsonpath("$.reference.gcn.notices.LVK.alert")(doc), Missing)


def test_test_traffic_markers() -> None:
    assert compile_xpath("/*/@role")(xml("role_test__MS190410a-1-Preliminary.xml")) == "test"
    assert (
        compile_jsonpath("$.alert_tense")(js("alert_tense_test__sn_alert.test.example.json"))
        == "test"
    )
    assert compile_xpath("/*/@role")(xml("invalid_role__HESS_test_event.xml")) == "observe"


def test_malformed_xml_is_a_dead_letter_with_a_reason() -> None:
    with pytest.raises(NoticeError, match="Namespace prefix xsi"):
        xml("malformed_unbound_prefix__Swift_unknown_fail.xml")


def test_file_names_with_hash_are_readable() -> None:
    root = xml("filename_hash__SWIFT_BAT_GRB_Pos_1163119-055.xml")
    assert compile_xpath("/*/@ivorn")(root) == "ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos_1163119-055"


def test_lvk_o3_groups_have_type_only_and_o4_name_too() -> None:
    o3 = parse_xml(next((NOTICES / "lvk_voevent").glob("*S190425z*")).read_bytes())
    by_type = compile_xpath("//Group[@type='Classification']/Param[@name='BNS']/@value")
    assert convert("float", by_type(o3)) >= 0
    assert isinstance(compile_xpath("//Group[@name='Classification']/@type")(o3), Missing)


def test_lvk_retraction_event_is_null() -> None:
    retraction = next(
        p for p in (NOTICES / "lvk_json").glob("*.json") if b'"RETRACTION"' in p.read_bytes()
    )
    doc = parse_json(retraction.read_bytes())
    found = compile_jsonpath("$.event.far")(doc)
    assert isinstance(found, Missing)
    assert isinstance(compile_jsonpath("$.event")(doc), Missing)


def test_scalar_xpath_results() -> None:
    root = xml("bool_true_false__BAT_GRB_Pos_558756-820.xml")
    assert compile_xpath("count(//Param)")(root) > 50
    assert compile_xpath("boolean(//Param[@name='TrigID'])")(root) is True
    assert isinstance(compile_xpath("number(//Param[@name='nosuch']/@value)")(root), Missing)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("//Param[@name='TrigID'/@value", "E502"),
        ("//ex:Param", "E502"),
        ("$.trigid", "E503"),
    ],
)
def test_bad_xpaths_fail_at_load(text: str, code: str) -> None:
    with pytest.raises(DslError) as info:
        compile_xpath(text)
    assert info.value.code == code
    assert info.value.hint


def test_bad_jsonpath_fails_at_load() -> None:
    with pytest.raises(DslError) as info:
        compile_jsonpath("$.event[?(@.far <")
    assert info.value.code == "E501"


def test_complex_jsonpath_goes_through_jsonpath_ng() -> None:
    doc = parse_json((NOTICES / "fermi_gbm_json" / "2_trigger.flight1.example.json").read_bytes())
    assert compile_jsonpath("$.detectors_status[*]")(doc) == "triggered"


@pytest.mark.parametrize(
    "payload",
    [
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
        b"<VOEvent a='&lol2;'/>",
        b"<VOEvent><Who>",
        b'{"a": 1}',
        b"\xff\xfe<VOEvent/>",
        b"",
    ],
)
def test_hostile_or_broken_xml_is_refused(payload: bytes) -> None:
    with pytest.raises(NoticeError):
        parse_xml(payload)


@pytest.mark.parametrize(
    "payload",
    [b"\xff{}", b"{", b"[1, 2]", b"<VOEvent/>", b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"],
)
def test_broken_json_is_refused(payload: bytes) -> None:
    with pytest.raises(NoticeError):
        parse_json(payload)


def test_oversized_payloads_are_refused() -> None:
    with pytest.raises(NoticeError, match="over the 100-byte limit"):
        parse_json(b'{"a": "' + b"x" * 200 + b'"}', max_bytes=100)


FAST_XPATHS = (
    "//ISOTime",
    "//Who/Date",
    "//Position2D/Value2/C1",
    "//Position2D/Value2/C2",
    "//Position2D/Error2Radius",
    "//WhereWhen/ObsDataLocation/ObservationLocation/AstroCoords/Position2D/Value2/C1",
    "//Param",
    "//Nothing/Here",
    "/*/@role",
    "/*/@ivorn",
    "/*/@nothing",
    "//What/Param[@name='Group']/@value",
    "//Group[@name='Trigger_ID']/Param[@name='Retraction']/@value",
    "//Group[@name='Obs_Support_Info']/Param[@name='Sun_RA']/@value",
    "//Group[@type='Classification' or @name='Classification']/Param[@name='BNS']/@value",
    "//Group[ @type = \"Properties\" or @name='Properties' ]/Param[@name='HasNS']/@value",
    "//Group/Param[@name='Packet_Type']/@value",
    "//What/Param[@name='Packet_Type']/@value",
    "//Group[@name='Nowhere']/Param[@name='Packet_Type']/@value",
)


def _lxml_xpath(text: str, root: Any) -> Any:
    """The selector as lxml's own XPath engine answers it, normalised the same way."""
    from lxml import etree

    from tracerules.dsl.selectors import DEFAULT_NAMESPACES, _normalise_xml

    return _normalise_xml(etree.XPath(text, namespaces=DEFAULT_NAMESPACES)(root), text)


@pytest.mark.parametrize("text", FAST_XPATHS)
def test_plain_paths_answer_as_lxml_xpath_on_every_real_notice(text: str) -> None:
    """`//A/B/C` and `/*/@name` are read by walking the tree, not by lxml's XPath (a few
    times cheaper): on every XML notice kept for tests, from a sub-element too, the answer
    and the reason for a Missing are lxml's."""
    files = [p for p in NOTICES.rglob("*.xml") if "invalid" not in p.parts]
    assert len(files) > 50
    select = compile_xpath(text)
    assert select.__qualname__.split(".")[0] != "_compile_xpath"  # not lxml's XPath
    read = 0
    for path in files:
        try:
            root = parse_xml(path.read_bytes())
        except NoticeError:
            continue
        read += 1
        expected = _lxml_xpath(text, root)
        for node in (root, root[-1] if len(root) else root):
            assert select(node) == expected, (path.name, text)
    assert read > 50


def test_plain_paths_skip_what_lxml_skips() -> None:
    """A Param without a value, a namespaced look-alike, an empty element: the walk goes on
    (or stops) exactly where lxml's XPath does."""
    root = parse_xml(
        b'<voe:VOEvent xmlns:voe="http://www.ivoa.net/xml/VOEvent/v2.0" role=" test ">'
        b'<What><Group name="G"><Param name="X"/><Param name="X" value=" 7 "/></Group>'
        b'<Group type="G"><Param name="Y" value=""/></Group>'
        b'<g:Group xmlns:g="urn:other" name="G"><Param name="Z" value="1"/></g:Group>'
        b"<Who><Date/></Who><Who><Date>2023</Date></Who></What></voe:VOEvent>"
    )
    for text in (
        "//Group[@name='G']/Param[@name='X']/@value",
        "//Group[@type='G' or @name='G']/Param[@name='Y']/@value",
        "//Group[@name='G']/Param[@name='Z']/@value",
        "//Who/Date",
        "/*/@role",
    ):
        assert compile_xpath(text)(root) == _lxml_xpath(text, root), text
    assert compile_xpath("//Group[@name='G']/Param[@name='X']/@value")(root) == "7"
