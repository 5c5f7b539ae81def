"""Sites as rule data: declared under `sites:`, compiled onto the rule set, checked at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracerules.products.sky.sites import Site, parse_angle
from tracerules.rules.compile import compile_loaded, load_ruleset
from tracerules.rules.loader import load_paths

ROOT = Path(__file__).resolve().parents[1]


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _errors(*paths: Path) -> list[tuple[str, int, int, str, str | None]]:
    ruleset, diagnostics = compile_loaded(load_paths(list(paths)))
    assert ruleset is None
    return [(d.code, d.span.line, d.span.col, d.message, d.hint) for d in diagnostics if d.is_error]


def test_the_starter_rules_declare_the_mwa_and_the_atca() -> None:
    sites = load_ruleset([ROOT / "rules"]).sites
    mwa, atca = sites["mwa"], sites["atca"]
    # -26:42:11.95, 116:40:14.93 E, 377.8 m (docs/observatories)
    assert mwa.latitude == pytest.approx(-(26 + 42 / 60 + 11.95 / 3600))
    assert mwa.longitude == pytest.approx(116 + 40 / 60 + 14.93 / 3600)
    assert mwa.height == 377.8
    assert mwa.sun_limit is None
    assert (atca.latitude, atca.longitude, atca.height) == (-30.31498, 149.56394, 240.0)
    assert atca.elevation_limit == 12.0


def test_the_examples_see_the_same_sites() -> None:
    assert load_ruleset([ROOT / "examples" / "rules"]).sites == load_ruleset([ROOT / "rules"]).sites


@pytest.mark.parametrize(
    ("text", "degrees"),
    [
        ("-26:42:11.95", -26.703319444),
        ("116:40:14.93 E", 116.670813889),
        ("70:24:15 W", -70.404166667),
        ("-0:30:00", -0.5),
        ("29 15 21.4 S", -29.255944444),
        (12.5, 12.5),
        ("-30.31498", -30.31498),
    ],
)
def test_angles_are_read_from_degrees_or_sexagesimal_text(text: str, degrees: float) -> None:
    assert parse_angle(text) == pytest.approx(degrees, abs=1e-9)


@pytest.mark.parametrize("text", ["26:61:00", "north", "1:2:3:4", "12:30:60"])
def test_bad_angles_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"angle|below 60"):
        parse_angle(text)


def test_a_site_with_an_impossible_latitude_is_an_error_at_its_place(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "sites.yaml",
        "schema_version: 1\n"
        "sites:\n"
        "  - name: somewhere\n"
        "    latitude: '-96:00:00'\n"
        "    longitude: 10\n"
        "    height: 0\n"
        "    elevation_limit: 10\n"
        "  - {name: nolimit, latitude: 0, longitude: 0, height: 0}\n",
    )
    errors = _errors(path)
    assert ("E403", 4, 15) in [e[:3] for e in errors]
    assert any("latitude -96 deg is outside" in e[3] for e in errors)
    assert ("E401", 8, 5) in [e[:3] for e in errors]  # elevation_limit is required


def test_a_site_defined_twice_differently_is_an_error(tmp_path: Path) -> None:
    one = "schema_version: 1\nsites:\n  - {name: lco, latitude: -29.0, longitude: -70.7, "
    _write(tmp_path, "a.yaml", one + "height: 2400, elevation_limit: 20, sun_limit: -12}\n")
    _write(tmp_path, "b.yaml", one + "height: 2400, elevation_limit: 25, sun_limit: -12}\n")
    errors = _errors(tmp_path)
    assert [e[:3] for e in errors] == [("E607", 3, 12)]
    assert errors[0][3] == "site 'lco' is defined again, differently"
    assert errors[0][4] == f"first defined at {tmp_path / 'a.yaml'}:3:12"


def test_the_same_site_declared_twice_identically_is_fine(tmp_path: Path) -> None:
    text = (
        "schema_version: 1\nsites:\n  - {name: lco, latitude: -29.0, longitude: -70.7, "
        "height: 2400, elevation_limit: 20, sun_limit: -12}\n"
    )
    _write(tmp_path, "a.yaml", text)
    _write(tmp_path, "b.yaml", text)
    sites = load_ruleset([tmp_path]).sites
    assert sites == {"lco": Site("lco", -29.0, -70.7, 2400.0, 20.0, -12.0)}


def test_a_topic_defined_twice_differently_is_an_error_like_a_site(tmp_path: Path) -> None:
    """Topics and sites share one collector: a topic redefined is E604 at its name."""
    one = "schema_version: 1\ntopics:\n  - {name: gcn.example.topic, format: "
    _write(tmp_path, "a.yaml", one + "json}\n")
    _write(tmp_path, "b.yaml", one + "xml}\n")
    errors = _errors(tmp_path)
    assert [e[:2] for e in errors] == [("E604", 3)]
    assert "topic 'gcn.example.topic' is defined again, differently" in errors[0][3]
