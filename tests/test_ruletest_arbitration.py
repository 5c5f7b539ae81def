"""Rule tests state what observation arbitration decided: started, clash, override, re-point.

`tracerules test` arbitrates as a dry run does (issue 16, item 14): one Swift burst's BAT and
XRT positions (real notices) go through triggers that share an observatory.
"""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tests.conftest import DATA, NOTICES
from tracerules.cli.main import app

TRIGGER = """\
schema_version: 1
triggers:
  - id: {id}
    topics: [{topics}]
    event_id: trig_id
    event_time: burst_time
    expiry: 1 d
    priority: {priority}
    fields:
      trig_id: {{xpath: "//Param[@name='TrigID']/@value", as: int}}
      burst_time: {{xpath: "//ISOTime", as: time}}
      ra: {{expr: "{ra}", as: angle}}
      dec: {{xpath: "//Position2D/Value2/C2", as: angle}}
    actions:
      - type: observation
        observatory: mwa
        repoint: 1 deg
    lint: {{disable: [no-conditions]}}
"""
BAT = "gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK"
XRT = "gcn.classic.voevent.SWIFT_XRT_POSITION"
CHAIN = NOTICES / "swift_chain"


def rules(tmp_path: Path) -> None:
    (tmp_path / "topics.yaml").write_text((DATA / "rules" / "topics.yaml").read_text())
    for name, topics, priority, ra in (
        ("a", f"{BAT}, {XRT}", 10, "123.0"),  # follows the burst on both positions
        ("b", XRT, 5, "123.0"),  # a higher priority, on the XRT position only
        ("c", XRT, 10, "200.0"),  # the same priority, pointing far away
    ):
        text = TRIGGER.format(id=name, topics=topics, priority=priority, ra=ra)
        (tmp_path / f"{name}.yaml").write_text(text)


def case_file(tmp_path: Path, triggers: str, expect: str) -> Path:
    path = tmp_path / f"case-{triggers}.test.yaml"
    files = ", ".join(["topics.yaml", *(f"{t}.yaml" for t in triggers)])
    path.write_text(
        f"schema_version: 1\nrules: [{files}]\ntests:\n  - name: {triggers}\n    notices:\n"
        f"      - {{file: {CHAIN / '02_BAT_GRB_Pos_1201696-785.xml'}, name: bat}}\n"
        f"      - {{file: {CHAIN / '05_XRT_Pos_1201696-795.xml'}, name: xrt}}\n"
        f"    expect:\n{expect}"
    )
    return path


def run(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["test", str(path)])
    return result.exit_code, result.output


def test_started_then_clash_at_the_same_place(tmp_path: Path) -> None:
    rules(tmp_path)
    expect = """\
      - {after: bat, trigger: a, conclusion: PASS, arbitration: started, actions: [observation]}
      - {after: xrt, trigger: a, conclusion: PASS, arbitration: clash, actions: []}
"""
    code, out = run(case_file(tmp_path, "a", expect))
    assert code == 0, out


def test_override_by_a_higher_priority_and_re_point_far_away(tmp_path: Path) -> None:
    rules(tmp_path)
    override = """\
      - {after: xrt, trigger: b, arbitration: override}
      - {after: xrt, trigger: a, arbitration: [clash]}
"""
    code, out = run(case_file(tmp_path, "ab", override))
    assert code == 0, out
    repoint = "      - {after: xrt, trigger: c, arbitration: re-point}\n"
    code, out = run(case_file(tmp_path, "ac", repoint))
    assert code == 0, out


def test_a_wrong_ruling_is_a_failure_that_says_what_happened(tmp_path: Path) -> None:
    rules(tmp_path)
    expect = "      - {after: xrt, trigger: a, arbitration: started, actions: [observation]}\n"
    code, out = run(case_file(tmp_path, "a", expect))
    assert code == 1, out
    assert "arbitration" in out and "expected started" in out and "got clash" in out
    assert "expected observation" in out and "got none" in out


def test_an_unknown_ruling_is_an_error_in_the_test_file(tmp_path: Path) -> None:
    rules(tmp_path)
    code, out = run(case_file(tmp_path, "a", "      - {trigger: a, arbitration: repointed}\n"))
    assert code != 0
    assert "arbitration" in out and "re-point" in out
