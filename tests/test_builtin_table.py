"""The built-in table is assembled explicitly (issue 12, item 2): core + sky-map + observability
functions, passed to the compiler. Importing a module never changes a table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tracerules.cli.main import app
from tracerules.dsl import builtins as core
from tracerules.dsl.builtins import CORE_BUILTINS, Builtin, assemble
from tracerules.dsl.values import Type
from tracerules.errors import RuleError
from tracerules.rules.compile import load_ruleset
from tracerules.rules.functions import builtin_functions

DATA = Path(__file__).parent / "data"
SKY_MAP_FUNCTIONS = {"area", "credible_level", "dist_mean", "maxprob_ra", "prob_in_circle"}
SITE_FUNCTIONS = {"alt", "airmass", "sun_alt", "visible_prob", "visible_within"}

TRIGGER = """\
schema_version: 1
sites:
  - name: mwa
    latitude: "-26:42:11.95"
    longitude: "116:40:14.93 E"
    height: 377.8
    elevation_limit: 30
triggers:
  - id: gw-up
    topics: [igwn.gwalert]
    event_id: superevent_id
    event_time: time_created
    fields:
      superevent_id: {jsonpath: "$.superevent_id", as: string}
      time_created: {jsonpath: "$.time_created", as: time}
    conditions:
      compact: area(0.9) < 100
      up: alt(maxprob_ra(), maxprob_dec(), 'mwa') > 30 deg
    actions: [{type: notice}]
"""


def _rules(tmp_path: Path, body: str) -> Path:
    (tmp_path / "topics.yaml").write_text((DATA / "rules" / "topics.yaml").read_text())
    (tmp_path / "trigger.yaml").write_text(body)
    return tmp_path


def test_importing_the_products_leaves_the_core_table_unchanged() -> None:
    """In a fresh process, so that no earlier import has already done its damage."""
    code = (
        "import json\n"
        "from tracerules.dsl.builtins import CORE_BUILTINS\n"
        "before = dict(CORE_BUILTINS)\n"
        "import tracerules.products\n"
        "import tracerules.products.sky.skymap_functions\n"
        "import tracerules.products.sky.observability_functions\n"
        "import tracerules.rules.compile\n"
        "print(json.dumps([dict(CORE_BUILTINS) == before, sorted(CORE_BUILTINS)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    unchanged, names = json.loads(out.stdout)
    assert unchanged
    assert {"sep", "abs", "now"} <= set(names)
    assert not (SKY_MAP_FUNCTIONS | SITE_FUNCTIONS) & set(names)


def test_the_core_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        CORE_BUILTINS["area"] = CORE_BUILTINS["abs"]  # type: ignore[index]
    assert not hasattr(core, "register")  # nothing adds itself to a table any more


def test_the_assembled_table_is_core_plus_sky_maps_plus_sites() -> None:
    table = builtin_functions()
    assert set(CORE_BUILTINS) < set(table)
    assert set(table) >= SKY_MAP_FUNCTIONS | SITE_FUNCTIONS
    assert all(table[name] is spec for name, spec in CORE_BUILTINS.items())
    assert builtin_functions() is table  # assembled once
    with pytest.raises(TypeError):
        table["fragile"] = table["abs"]  # type: ignore[index]


def test_a_function_defined_twice_differently_is_refused() -> None:
    clash = Builtin("area", (Type.NUMBER,), Type.NUMBER, abs, "not the sky map's", "test")
    with pytest.raises(ValueError, match="'area' is defined twice"):
        assemble(builtin_functions().values(), [clash])
    # The same spec twice is no clash.
    assert assemble(CORE_BUILTINS.values(), CORE_BUILTINS.values()) == CORE_BUILTINS


def test_rules_with_sky_map_and_site_functions_compile_in_a_fresh_process(
    tmp_path: Path,
) -> None:
    folder = _rules(tmp_path, TRIGGER)
    code = (
        "import sys; from tracerules.rules.compile import load_ruleset\n"
        f"rules = load_ruleset([{str(folder)!r}])\n"
        "print(sorted(c.name for t in rules.triggers for c in t.conditions))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['compact', 'up']"


def test_the_compiler_calls_only_the_table_it_is_given(tmp_path: Path) -> None:
    folder = _rules(tmp_path, TRIGGER)
    with pytest.raises(RuleError) as raised:
        load_ruleset([folder], CORE_BUILTINS)  # no sky maps, no sites
    unknown = {d.message for d in raised.value.diagnostics if d.code == "E302"}
    assert "unknown function 'area'" in unknown and "unknown function 'alt'" in unknown


def test_an_unknown_function_is_an_error_at_its_place_with_a_hint(tmp_path: Path) -> None:
    folder = _rules(tmp_path, TRIGGER.replace("area(0.9) < 100", "aera(0.9) < 100"))
    with pytest.raises(RuleError) as raised:
        load_ruleset([folder])
    (diagnostic,) = raised.value.diagnostics
    assert diagnostic.code == "E302"
    assert "unknown function 'aera'" in diagnostic.message
    assert diagnostic.hint == "did you mean 'area'?"
    assert str(diagnostic.span) == f"{folder / 'trigger.yaml'}:17:16"


def test_tracerules_functions_lists_the_assembled_table() -> None:
    result = CliRunner().invoke(app, ["functions", "--format", "json"])
    assert result.exit_code == 0, result.output
    listed = {entry["name"] for entry in json.loads(result.stdout)}
    assert listed == set(builtin_functions())
