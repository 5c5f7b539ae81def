"""The operator commands over a store filled by a dry run of real notices."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import DATA, NOTICES
from tests.sql import sql_run, sql_value
from tracerules.cli.main import app
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.engine.replay import replay
from tracerules.runtime.sources.files import iter_notices
from tracerules.runtime.store.store import Store

RULES = str(DATA / "rules")


@pytest.fixture
def store_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "store.sqlite"
    replay(load_ruleset([RULES]), iter_notices([NOTICES]), store_path=path).close()
    yield path


def run(store: Path, *args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(app, [*args, "--store", str(store), "--format", "json"])
    assert result.exit_code == code, result.output
    return json.loads(result.stdout) if code == 0 else result.output


def count(store: Path, sql: str, params: tuple[Any, ...] = ()) -> int:
    db = Store(store)
    try:
        return int(sql_value(db, sql, params))
    finally:
        db.close()


def test_notices_list_and_filters(store_file: Path) -> None:
    everything = run(store_file, "notices", "list", "--limit", "5")
    assert everything["total"] == count(store_file, "SELECT count(*) FROM notices")
    assert len(everything["notices"]) == 5
    received = [n["received"] for n in everything["notices"]]
    assert received == sorted(received, reverse=True)
    gbm = run(store_file, "notices", "list", "--topic", "gcn.notices.fermi.gbm")
    assert gbm["total"] == count(
        store_file, "SELECT count(*) FROM notices WHERE topic='gcn.notices.fermi.gbm'"
    )
    assert {n["topic"] for n in gbm["notices"]} == {"gcn.notices.fermi.gbm"}
    assert "745121685" in {e["event_id"] for n in gbm["notices"] for e in n["events"]}
    xml = run(store_file, "notices", "list", "--payload-format", "xml", "--limit", "500")
    assert xml["notices"] and {n["format"] for n in xml["notices"]} == {"xml"}
    swift = run(store_file, "notices", "list", "--event-id", "1201696")
    assert swift["total"] == count(
        store_file,
        "SELECT count(*) FROM event_notices en JOIN events e ON e.id=en.event "
        "WHERE e.event_id='1201696'",
    )
    window = run(
        store_file, "notices", "list", "--since", "2023-12-10T00:00", "--until", "2023-12-11"
    )
    assert 0 < window["total"] < everything["total"]
    bad = run(store_file, "notices", "list", "--since", "yesterday-ish", code=2)
    assert "not an ISO 8601 time" in bad


def test_notices_show_pretty_payload_and_envelope(store_file: Path) -> None:
    notice_id = run(store_file, "notices", "list", "--topic", "gcn.notices.fermi.gbm")["notices"][
        0
    ]["id"]
    shown = run(store_file, "notices", "show", str(notice_id))
    envelope = shown["envelope"]
    assert envelope["topic"] == "gcn.notices.fermi.gbm"
    assert {"partition", "offset", "created", "received"} <= envelope.keys()
    assert shown["payload"].startswith("{\n  ")  # indented JSON
    assert [d["trigger"] for d in shown["decisions"]] == ["gbm-json"]
    assert "no notice 999999" in run(store_file, "notices", "show", "999999", code=1)


def test_events_list_of_an_unknown_trigger_is_a_usage_error(store_file: Path) -> None:
    typo = run(store_file, "events", "list", "--trigger", "gbm-jsn", code=2)
    assert "--trigger 'gbm-jsn' names no trigger in the store" in typo
    assert "did you mean 'gbm-json'" in typo


def test_events_list_and_show_with_current_conditions(store_file: Path) -> None:
    listed = run(store_file, "events", "list", "--trigger", "gbm-json")
    assert [e["event_id"] for e in listed["events"]][-1] == "745121685"
    shown = run(store_file, "events", "show", "gbm-json", "745121685", "--rules", RULES)
    assert len(shown["notices"]) == 7 and len(shown["decisions"]) == 7
    first = shown["decisions"][0]["factors"]
    assert {f["name"]: f["vote"] for f in first}["localised"] == "UNKNOWN"
    assert any(f["inherited"] for d in shown["decisions"] for f in d["factors"])
    current = shown["current"]
    assert [f["name"] for f in current["factors"]] == ["expiry", "bright", "localised", "southern"]
    assert current["retrigger"] == "PASS"
    missing = run(store_file, "events", "show", "gbm-json", "nope", "--rules", RULES, code=1)
    assert "has no event 'nope'" in missing


def test_without_rules_the_files_that_decided_are_read_again(
    store_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./rules here: the store names its rule files
    shown = run(store_file, "events", "show", "gbm-json", "745121685")
    assert shown["current"]["retrigger"] == "PASS"
    # A rules folder that has moved away leaves the history readable, without current ones.
    db = Store(store_file)
    with db.transaction():
        sql_run(db, "UPDATE decisions SET rule_file = '/nowhere/rules.yaml'")
    db.close()
    assert run(store_file, "events", "show", "gbm-json", "745121685")["current"] is None


def test_topics(store_file: Path) -> None:
    rows = {r["topic"]: r for r in run(store_file, "topics", "--rules", RULES)}
    gbm = rows["gcn.notices.fermi.gbm"]
    assert gbm["count"] >= 7 and gbm["status"] == "subscribed" and gbm["triggers"] == ["gbm-json"]
    assert gbm["bytes"] == count(
        store_file, "SELECT sum(size) FROM notices WHERE topic='gcn.notices.fermi.gbm'"
    )
    assert any(r["status"] == "stored only" for r in rows.values())


def test_retrigger_of_a_maybe_event_acts_exactly_once(store_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "products"
    args = ("retrigger", "gbm-json", "745121685", "--rules", RULES, "--out", str(out))
    rehearsal = run(store_file, *args, "--dry-run", "--actor", "ada")
    # Long after the burst, expiry votes MAYBE; a person's retrigger promotes it to PASS.
    assert rehearsal["votes"] == "MAYBE" and rehearsal["conclusion"] == "PASS"
    assert [a["status"] for a in rehearsal["actions"]] == ["dry-run"]
    assert count(store_file, "SELECT count(*) FROM decisions WHERE source='manual'") == 0
    assert (
        count(store_file, "SELECT count(*) FROM actions WHERE idempotency_key LIKE '%manual%'") == 0
    )

    first = run(store_file, *args, "--actor", "ada")
    second = run(store_file, *args, "--actor", "grace")
    assert [a["status"] for a in first["actions"]] == ["done"]
    assert second["conclusion"] == "PASS" and second["actions"] == []
    assert second["already_started"] == [f"{first['actions'][0]['key']} (done)"]
    manual = count(
        store_file, "SELECT count(*) FROM actions WHERE idempotency_key LIKE 'gbm-json/%/manual-%'"
    )
    assert manual == 1
    assert len(list(out.rglob("*.json"))) == 1
    actors = count(
        store_file,
        "SELECT count(DISTINCT actor) FROM decisions WHERE source='manual' AND actor IN (?, ?)",
        ("ada", "grace"),
    )
    assert actors == 2
    text = CliRunner().invoke(app, [*args, "--store", str(store_file), "--dry-run"])
    assert text.exit_code == 0 and "already started" in text.stdout


def test_commands_refuse_a_missing_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["events", "list", "--store", str(tmp_path / "none.sqlite")])
    assert result.exit_code == 2
    assert not (tmp_path / "none.sqlite").exists()


def test_retrigger_shows_ages_a_person_can_read(store_file: Path) -> None:
    """Years after the burst, the expiry factor reads `age 2.3 yr > expiry 1 d`, not
    `age 1.09e+03 d` (issue 16, item 9)."""
    args = ("retrigger", "gbm-json", "745121685", "--rules", RULES, "--dry-run")
    rehearsal = run(store_file, *args)
    expiry = next(f for f in rehearsal["factors"] if f["name"] == "expiry")
    assert re.fullmatch(r"age \d+\.\d+ yr > expiry \d+(\.\d+)? (d|h|min)", expiry["detail"])
    text = CliRunner().invoke(app, [*args, "--store", str(store_file)])
    assert text.exit_code == 0 and "e+" not in text.stdout
    assert re.search(r"age \d+\.\d+ yr", text.stdout)
