"""Warm-up: the first live notice does not pay for the imports its rules' functions need.

The sky-map and observability functions import numpy, erfa and the FITS reader on first use
(about 0.1 s), so that validating rules never pays for them. The service does that work when
it loads a rule set instead, for the functions the rules call and only those.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tracerules.rules.compile import load_ruleset

TOPICS = Path(__file__).resolve().parents[1] / "examples" / "rules" / "topics.yaml"

TRIGGER = """\
schema_version: 1
sites:
  - {{name: mwa, latitude: -26.703, longitude: 116.671, height: 377, elevation_limit: 30}}
triggers:
  - id: {id}
    topics: [gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK]
    event_id: trig_id
    event_time: burst_time
    expiry: 6 h
    priority: 20
    mode: live
    fields:
      trig_id: {{xpath: "//Param[@name='TrigID']/@value", as: int}}
      burst_time: {{xpath: "//ISOTime", as: time}}
      ra: {{xpath: "//Position2D/Value2/C1", as: angle}}
      dec: {{xpath: "//Position2D/Value2/C2", as: angle}}
{extra}
    conditions:
      {condition}
"""

CHILD = """
import json, sys
from pathlib import Path
from tracerules.rules.compile import load_ruleset
from tracerules.rules.functions import warm_up
rules = load_ruleset([Path(sys.argv[1])])
before = {m: m in sys.modules for m in ("numpy", "erfa")}
done = warm_up(rules.called_functions)
after = {m: m in sys.modules for m in ("numpy", "erfa")}
print(json.dumps({"called": sorted(rules.called_functions), "done": done,
                  "before": before, "after": after}))
"""


def write_rules(folder: Path, condition: str, extra: str = "", trigger_id: str = "t") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    body = TRIGGER.format(id=trigger_id, extra=extra, condition=condition)
    (folder / "rules.yaml").write_text(body)
    shutil.copy(TOPICS, folder / "topics.yaml")
    return folder


def warm_in_fresh_process(folder: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_a_rule_calling_alt_gets_the_maths_imported_at_warm_up(tmp_path: Path) -> None:
    folder = write_rules(tmp_path / "alt", "high: alt(ra, dec, 'mwa') > 30 deg")
    result = warm_in_fresh_process(folder)
    assert "alt" in result["called"]  # type: ignore[operator]
    assert result["before"] == {"numpy": False, "erfa": False}  # loading alone imports none
    assert result["done"] == 1
    assert result["after"] == {"numpy": True, "erfa": True}


def test_rules_calling_only_core_functions_warm_nothing(tmp_path: Path) -> None:
    folder = write_rules(tmp_path / "core", "south: abs(dec) < 30 deg")
    result = warm_in_fresh_process(folder)
    assert result["called"] == ["abs"]  # `30 deg` is a unit, not a call
    assert result["done"] == 0
    assert result["after"] == {"numpy": False, "erfa": False}


def test_functions_called_from_fields_and_missing_if_count_too(tmp_path: Path) -> None:
    extra = (
        "      altitude: {expr: \"alt(ra, dec, 'mwa')\"}\n"
        "      lat: {expr: 'gal_lat(ra, dec)', missing_if: 'sqrt(abs(dec)) < 0'}\n"
    )
    folder = write_rules(tmp_path / "fields", "south: dec < 0 deg", extra)
    called = load_ruleset([folder]).called_functions
    assert {"alt", "gal_lat", "sqrt", "abs"} <= called
