"""`tracerules test`: rule unit tests on real notices, as a user and as CI run them."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tracerules.cli.main import app
from tracerules.cli.ruletest import covered_triggers
from tracerules.ruletest.load import RuleCache, discover, load_suite
from tracerules.ruletest.run import run_test

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "examples" / "rules"
NOTICES = ROOT / "examples" / "notices"
GBM = NOTICES / "fermi_gbm_json"
runner = CliRunner()


def _write(tmp_path: Path, body: str, name: str = "gbm.test.yaml") -> Path:
    """A test file in tmp_path that tests the example rules on the bundled notices."""
    path = tmp_path / name
    path.write_text(f"schema_version: 1\nrules: [{RULES}]\n" + body.replace("@N", str(NOTICES)))
    return path


GBM_CHAIN = """\
    notices:
      - {file: @N/fermi_gbm_json/1_trigger.alert.example.json, name: alert}
      - {file: @N/fermi_gbm_json/4_trigger.flight3.example.json, name: flight3}
      - {file: @N/fermi_gbm_json/5_trigger.ground1.example.json, name: ground1}
"""

PASSING = f"""\
  - name: GBM ground position passes
{GBM_CHAIN}    expect:
      - trigger: fermi-gbm-json-grb
        conclusion: PASS
        factors: {{grb_like: "PASS*", localised: PASS}}
        actions: [notice]
"""

FAILING = f"""\
  - name: GBM wrongly expected to fail on the ground position
{GBM_CHAIN}    expect:
      - after: flight3
        trigger: fermi-gbm-json-grb
        conclusion: FAIL
        factors: {{visible: FAIL}}
      - after: ground1
        trigger: fermi-gbm-json-grb
        conclusion: FAIL
        factors: {{visible: FAIL, localised: MAYBE, grb_like: PASS}}
        actions: []
"""


def test_the_examples_pass_and_cover_every_example_trigger() -> None:
    result = runner.invoke(app, ["test", str(RULES)])
    assert result.exit_code == 0, result.output
    assert "failed" not in result.output
    assert "Every trigger is covered by a test (20 triggers)" in result.output
    # The same through the library: every trigger of the examples is named by some test.
    files, missing = discover([RULES])
    assert not missing
    assert {p.name for p in files} == {
        f"{m}.test.yaml"
        for m in (
            "atca",
            "chime",
            "einstein_probe",
            "fermi",
            "icecube",
            "integral",
            "lvk",
            "mwa",
            "swift",
        )
    }
    cache = RuleCache()
    suites = [load_suite(p, cache) for p in files]
    assert all(not s.diagnostics for s in suites)
    rules = suites[0].rules
    assert rules is not None and len(rules.triggers) == 20
    assert covered_triggers(t for s in suites for t in s.tests) == {t.id for t in rules.triggers}
    results = [run_test(t, s.rules) for s in suites if s.rules for t in s.tests]
    assert results and all(r.ok for r in results)


def test_a_failing_test_shows_expected_against_got_per_factor_and_exits_1(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, "tests:\n" + PASSING + FAILING)
    result = runner.invoke(app, ["test", str(path)])
    assert result.exit_code == 1, result.output
    out = result.output
    assert "✓ GBM ground position passes" in out
    assert "✗ GBM wrongly expected to fail on the ground position" in out
    # The flight3 expectation held: only the ground1 decision is reported, with its place.
    assert "after notice 2" not in out
    assert "after notice 3 (ground1): fermi-gbm-json-grb, event 745121685" in out
    lines = [line.split() for line in out.splitlines()]
    assert ["conclusion", "expected", "FAIL", "got", "PASS"] in [ln[:5] for ln in lines]
    assert ["factor", "visible", "expected", "FAIL", "got", "PASS"] in [ln[:6] for ln in lines]
    assert ["factor", "localised", "expected", "MAYBE", "got", "PASS"] in [ln[:6] for ln in lines]
    assert ["factor", "grb_like", "expected", "PASS", "got", "PASS*"] not in [
        ln[:6] for ln in lines
    ]  # an inherited PASS satisfies a plain PASS
    assert ["actions", "expected", "none", "got", "notice"] in [ln[:5] for ln in lines]
    assert "(dec=-66.98 deg)" in out  # the value the condition read, in its unit
    assert "factors: expiry=PASS current=PASS grb_like=PASS* bright=PASS" in out
    assert "2 tests: 1 passed, 1 failed" in out


def test_junit_report_lists_each_test_and_the_failure_text(tmp_path: Path) -> None:
    path = _write(tmp_path, "tests:\n" + PASSING + FAILING)
    report = tmp_path / "out" / "junit.xml"
    result = runner.invoke(app, ["test", str(path), "--junit", str(report)])
    assert result.exit_code == 1
    root = ET.parse(report).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("2", "1", "0")
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == str(path)
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "GBM ground position passes",
        "GBM wrongly expected to fail on the ground position",
    ]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("message") == "4 expectation(s) not met"  # conclusion, 2 factors, actions
    assert "factor visible" in (failure.text or "")
    lines = path.read_text().splitlines()
    wrong = lines.index("  - name: GBM wrongly expected to fail on the ground position")
    assert cases[1].get("line") == str(wrong + 1)
    assert float(cases[0].get("time") or "nan") >= 0


def test_run_selects_tests_by_regex_or_glob(tmp_path: Path) -> None:
    path = _write(tmp_path, "tests:\n" + PASSING + FAILING)
    by_regex = runner.invoke(app, ["test", str(path), "--run", "^GBM ground"])
    assert by_regex.exit_code == 0, by_regex.output
    assert "1 test: 1 passed" in by_regex.output
    assert "wrongly" not in by_regex.output
    by_glob = runner.invoke(app, ["test", str(path), "--run", "*wrongly*"])
    assert by_glob.exit_code == 1
    assert "1 test: 0 passed, 1 failed" in by_glob.output
    none = runner.invoke(app, ["test", str(path), "--run", "no such test"])
    assert none.exit_code == 1
    assert "no test matches --run" in none.output


def test_the_triggers_no_test_covers_are_listed(tmp_path: Path) -> None:
    path = _write(tmp_path, "tests:\n" + PASSING)
    result = runner.invoke(app, ["test", str(path)])
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if "no test covers" in ln)
    assert line.startswith("19 triggers no test covers: atca-swift-grb, chime-frb,")
    assert "swift-bat-grb" in line
    assert "fermi-gbm-json-grb" not in line


def test_no_pass_reports_every_pass_of_a_listed_trigger(tmp_path: Path) -> None:
    body = f"""\
tests:
  - name: the GBM burst must not fire (it does)
{GBM_CHAIN}    no_pass: all
"""
    result = runner.invoke(app, ["test", str(_write(tmp_path, body))])
    assert result.exit_code == 1
    assert "after notice 3 (ground1): fermi-gbm-json-grb, event 745121685" in result.output
    assert "passed, but the test says it must not (actions: notice)" in result.output
    assert "after notice 2" not in result.output  # flight3 failed: no PASS there


def test_inline_payloads_times_and_set_edits(tmp_path: Path) -> None:
    """An inline JSON mapping with an explicit topic and arrival time, and a real notice
    with one value edited by `set:`."""
    body = """\
tests:
  - name: an EP alert received ten hours late has expired
    notices:
      - topic: gcn.notices.einstein_probe.wxt.alert
        received: 2024-03-01T07:46:05Z
        payload:
          instrument: WXT
          id: ["01708973486"]
          trigger_time: "2024-03-01T21:46:05.13Z"
          ra: 120.0
          dec: 30.0
          ra_dec_error: 0.03
          image_snr: 12.0
          net_count_rate: 0.2
        name: late
      - topic: gcn.notices.einstein_probe.wxt.alert
        received: 2024-03-02T07:46:05Z
        payload: '{"instrument": "WXT", "id": ["01708973486"],
                   "trigger_time": "2024-03-01T21:46:05.13Z"}'
    expect:
      - after: late
        trigger: einstein-probe-wxt
        event_id: "01708973486"
        votes: PASS
      - trigger: einstein-probe-wxt
        conclusion: FAIL
        votes: MAYBE
        factors: {expiry: MAYBE, localised: "PASS*", significant: "PASS*"}
  - name: a CHIME burst edited to a Galactic dispersion measure fails
    notices:
      - file: @N/chime/01_frb.detection.example.json
        set: {dm: 20.0}
    expect:
      - trigger: chime-frb
        conclusion: FAIL
        factors: {extragalactic: FAIL, clean: PASS}
"""
    result = runner.invoke(app, ["test", str(_write(tmp_path, body))])
    assert result.exit_code == 0, result.output
    assert "2 tests: 2 passed" in result.output


def test_a_repeated_notice_is_a_duplicate_and_decides_nothing(tmp_path: Path) -> None:
    body = """\
tests:
  - name: the same notice twice
    notices:
      - file: @N/chime/01_frb.detection.example.json
      - file: @N/chime/01_frb.detection.example.json
    expect:
      - after: 1
        trigger: chime-frb
        conclusion: PASS
      - after: 2
        trigger: chime-frb
        conclusion: PASS
"""
    result = runner.invoke(app, ["test", str(_write(tmp_path, body))])
    assert result.exit_code == 1
    assert "decision expected a decision got none" in " ".join(result.output.split())
    assert "the notice is a duplicate (same payload as notice 1)" in result.output


def test_every_mistake_in_a_test_file_is_reported_at_file_line_col(tmp_path: Path) -> None:
    """Schema mistakes in one test do not hide the mistakes found in the others."""
    body = """\
tests:
  - name: mistakes
    notices:
      - file: @N/chime/01_frb.detection.example.json
      - file: @N/chime/no-such-notice.json
      - payload: "<VOEvent/>"
      - {payload: {a: 1}, topic: gcn.notices.chime.frb, set: {b.c: 1}, received: soon}
    expect:
      - after: 9
        trigger: chime-frbb
        conclusion: PASS
      - trigger: chime-frb
        factors: {clen: PASS}
      - trigger: chime-frb
        after: detection
        conclusion: PASS
    no_pass: [swift]
  - name: schema mistakes
    notices: [{file: x.json}]
    expect: [{trigger: chime-frb, conclusion: PASSED, colour: red}]
"""
    path = _write(tmp_path, body)
    suite = load_suite(path, RuleCache())
    assert suite.tests == []
    found = [(d.code, d.span.line, d.span.col) for d in suite.diagnostics]
    assert found == [
        ("E904", 7, 15),  # the missing notice file
        ("E905", 8, 9),  # an XML payload without a Packet_Type: no topic
        ("E906", 9, 57),  # set: a path the notice does not have
        ("E907", 9, 82),  # received: not a time
        ("E903", 11, 16),  # after: 9 of 4 notices
        ("E901", 12, 18),  # an unknown trigger
        ("E902", 15, 19),  # an unknown factor
        ("E903", 17, 16),  # after: a name no notice has
        ("E901", 19, 15),  # no_pass: an unknown trigger
        ("E403", 22, 47),  # a conclusion that does not exist, in the second test
        ("E402", 22, 55),  # an unknown key
    ]
    by_code = {d.code: d for d in reversed(suite.diagnostics)}  # the first of each code
    assert by_code["E902"].hint == "did you mean 'clean'?"
    assert by_code["E901"].hint == "did you mean 'chime-frb'?"
    assert "colour" in by_code["E402"].message
    assert by_code["E403"].message.startswith("tests.1.expect.0.conclusion:")
    result = runner.invoke(app, ["test", str(path)])
    assert result.exit_code == 1
    assert f"{path}:15:19: error[E902]: trigger 'chime-frb' has no condition 'clen'" in (
        result.output
    )
    assert "1 test file(s) with errors" in result.output


def test_rules_that_do_not_load_are_reported(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("schema_version: 1\ntriggers: [{id: x}]\n")
    path = tmp_path / "bad.test.yaml"
    path.write_text(
        "schema_version: 1\ntests:\n  - name: t\n    notices: [{payload: '{}', topic: t}]\n"
        "    no_pass: all\n"
    )
    result = runner.invoke(app, ["test", str(tmp_path)])
    assert result.exit_code == 1
    assert "error[E908]: the rules under test do not load" in result.output
    assert "bad.yaml:2:" in result.output  # the rule file's own errors follow


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ([], 1, "no rule tests (*.test.yaml) under rules"),
        (["examples/notices"], 1, "no rule tests (*.test.yaml) under examples/notices"),
        (["no/such/folder"], 2, "no such file or folder: no/such/folder"),
    ],
)
def test_nothing_to_run_never_exits_0(
    args: list[str], code: int, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    result = runner.invoke(app, ["test", *args])
    assert result.exit_code == code
    assert message in result.output
