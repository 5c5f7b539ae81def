"""`tracerules dry-run` as a user runs it: every kind of source, the output formats, the
filters, notice-time order, and products that stay inside --products while live actions never
run. Real notices from tests/data, the test rules, a real store."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest
from lxml import html as lxml_html
from typer.testing import CliRunner

from tests.conftest import DATA, NOTICES
from tracerules.cli.main import app

RULES = DATA / "rules"
FOLDERS = ("fermi_gbm_json", "swift_chain", "lvk_voevent", "integral")


def dry_run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, ["dry-run", "--quiet", *args])
    assert result.exit_code == code, result.output
    return result.stdout if code == 0 else result.output


def as_json(*args: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(dry_run("--rules", str(RULES), "--format", "json", *args))
    return doc


def outcome(doc: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    """Per (trigger, event): the conclusions in order. What a replay decided, nothing else."""
    return {
        (e["trigger"], e["event_id"]): [d["conclusion"] for d in e["decisions"]]
        for e in doc["events"]
    }


def notice_files() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (NOTICES / folder).iterdir())


@pytest.fixture(scope="module")
def reference() -> dict[tuple[str, str], list[str]]:
    """The folders given as they are: the result every other kind of source must match."""
    return outcome(as_json(*(str(NOTICES / f) for f in FOLDERS)))


def test_the_reference_run_decides_the_known_events(
    reference: dict[tuple[str, str], list[str]],
) -> None:
    gbm = reference[("gbm-json", "745121685")]
    assert len(gbm) == 7  # one decision per notice of the burst
    assert reference[("lvk-voevent", "S191110af")][-1] == "FAIL"  # retracted
    assert ("swift-grb", "1201696") in reference


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2"])
def test_tar_archives_replay_like_the_files(
    tmp_path: Path, mode: str, reference: dict[tuple[str, str], list[str]]
) -> None:
    suffix = {"w": ".tar", "w:gz": ".tar.gz", "w:bz2": ".tar.bz2"}[mode]
    archive = tmp_path / f"notices{suffix}"
    with tarfile.open(archive, mode) as tar:  # type: ignore[call-overload]
        for path in reversed(notice_files()):  # archive order is not notice order
            tar.add(path, arcname=f"{path.parent.name}/{path.name}")
    assert outcome(as_json(str(archive))) == reference


def test_files_in_any_order_are_replayed_in_notice_time_order(
    reference: dict[tuple[str, str], list[str]],
) -> None:
    shuffled = notice_files()[::-1]
    assert outcome(as_json(*map(str, shuffled))) == reference


def test_an_ndjson_export_replays_like_the_files(
    tmp_path: Path, reference: dict[tuple[str, str], list[str]]
) -> None:
    export = tmp_path / "export.ndjson"
    with export.open("w") as handle:
        for path in notice_files():
            if path.suffix == ".json":  # JSON notices as they are, one per line
                handle.write(json.dumps(json.loads(path.read_bytes())) + "\n")
            else:  # VOEvents wrapped with their topic, as an export of a store would be
                topic = "gcn.classic.voevent.UNUSED"
                text = path.read_text()
                handle.write(json.dumps({"topic": topic, "payload": text}) + "\n")
    # The wrapped VOEvents keep the topic the export names, so only the JSON ones decide.
    got = outcome(as_json(str(export)))
    assert got == {k: v for k, v in reference.items() if k[0] == "gbm-json"}


def test_a_kept_store_is_a_source_too(
    tmp_path: Path, reference: dict[tuple[str, str], list[str]]
) -> None:
    kept = tmp_path / "kept.sqlite"
    as_json("--store", str(kept), *(str(NOTICES / f) for f in FOLDERS))
    assert kept.is_file()
    assert outcome(as_json(str(kept))) == reference


def test_topic_override_sends_every_notice_to_one_topic() -> None:
    doc = as_json("--topic", "gcn.notices.fermi.gbm", str(NOTICES / "fermi_gbm_json"))
    assert {e["trigger"] for e in doc["events"]} == {"gbm-json"}
    # The GBM VOEvents forced onto the JSON topic cannot be read: dead letters, not a crash.
    forced = as_json("--topic", "gcn.notices.fermi.gbm", str(NOTICES / "swift_chain"))
    assert forced["events"] == []
    assert forced["summary"]["dead_letters"] == len(list((NOTICES / "swift_chain").iterdir()))


def test_an_unknown_trigger_is_a_usage_error_with_close_matches() -> None:
    sources = [str(NOTICES / f) for f in FOLDERS]
    typo = dry_run("--rules", str(RULES), "--trigger", "swift-grbb", *sources, code=2)
    assert "--trigger 'swift-grbb' names no trigger in the rules" in typo
    assert "did you mean 'swift-grb'" in typo
    nope = dry_run("--rules", str(RULES), "--trigger", "nope", *sources, code=2)
    assert "'nope' names no trigger" in nope
    assert "gbm-json" in nope  # no close match: the triggers there are are listed


def test_trigger_and_time_filters() -> None:
    sources = [str(NOTICES / f) for f in FOLDERS]
    only = as_json("--trigger", "swift-grb", *sources)
    assert {e["trigger"] for e in only["events"]} == {"swift-grb"}
    everything = as_json(*sources)
    times = sorted(n["time"] for e in everything["events"] for n in e["notices"])
    middle = times[len(times) // 2]
    late = as_json("--since", middle, *sources)
    late_times = [n["time"] for e in late["events"] for n in e["notices"]]
    assert late_times and min(late_times) >= middle
    early = as_json("--until", middle, *sources)
    assert max(n["time"] for e in early["events"] for n in e["notices"]) <= middle
    assert "not an ISO 8601 time" in dry_run(
        "--rules", str(RULES), "--since", "last tuesday", *sources, code=2
    )


def test_ndjson_is_one_event_a_line_and_matches_json() -> None:
    source = str(NOTICES / "fermi_gbm_json")
    lines = dry_run("--rules", str(RULES), "--format", "ndjson", source).splitlines()
    events = [json.loads(line) for line in lines]
    assert events == as_json(source)["events"]


def test_text_output_shows_lights_conclusions_and_a_legend() -> None:
    text = dry_run("--rules", str(RULES), str(NOTICES / "fermi_gbm_json"))
    assert "gbm-json" in text and "745121685" in text
    for word in ("localised", "UNKNOWN", "PASS", "inherited"):
        assert word in text, word
    assert "7 notices" in text


def test_html_output_is_one_self_contained_page(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    dry_run(
        "--rules",
        str(RULES),
        "--format",
        "html",
        "--output",
        str(page),
        str(NOTICES / "swift_chain"),
    )
    doc = lxml_html.fromstring(page.read_text())
    assert doc.xpath("//*[contains(@class, 'light')]")
    assert not doc.xpath("//script[@src] | //link[@href]")  # nothing fetched from anywhere


def test_products_go_only_into_the_products_folder_and_live_actions_never_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copy(RULES / "topics.yaml", rules)
    marker = tmp_path / "the-command-ran"
    (rules / "gbm.yaml").write_text(
        f"""schema_version: 1
triggers:
  - id: gbm-live
    topics: [gcn.notices.fermi.gbm]
    event_id: trigger_id
    event_time: trigger_time
    expiry: 1 d
    fields:
      trigger_id: {{jsonpath: "$.id[0]", as: string}}
      trigger_time: {{jsonpath: "$.trigger_time", as: time}}
    conditions:
      known: exists(trigger_id)
    actions:
      - type: notice
        path: "gbm/{{event_id}}/{{notice_id}}.json"
      - type: command
        argv: [touch, "{marker}"]
"""
    )
    monkeypatch.chdir(tmp_path)
    source = str(NOTICES / "fermi_gbm_json")
    dry_run("--rules", str(rules), source)
    assert not marker.exists() and not (tmp_path / "gbm").exists()  # nothing written at all
    products = tmp_path / "products"
    dry_run("--rules", str(rules), "--products", str(products), source)
    written = sorted(p.relative_to(products) for p in products.rglob("*") if p.is_file())
    assert len(written) == 7 and all(p.parts[:2] == ("gbm", "745121685") for p in written)
    assert not marker.exists()  # a command is a live action: never in a dry run


def test_missing_sources_and_broken_rules_are_usage_errors(tmp_path: Path) -> None:
    assert "no such file or folder" in dry_run(
        "--rules", str(RULES), str(tmp_path / "nowhere"), code=2
    )
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.yaml").write_text("schema_version: 1\ntriggers: [\n")
    result = CliRunner().invoke(app, ["dry-run", "--rules", str(broken), str(NOTICES / "maxi")])
    assert result.exit_code != 0
    assert "bad.yaml:" in result.output
