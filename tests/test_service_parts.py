"""The service's parts without a broker: settings, start positions, statistics, stream health,
crash recovery of actions, action workers, rule watching, logs, status and the command line."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.service_harness import NOTICES, SERVICE_RULES, wait_until
from tests.sql import sql_rows, sql_run, sql_value
from tracerules.cli.main import app
from tracerules.dsl.values import Missing
from tracerules.errors import RuleError
from tracerules.rules.compile import RuleSet, load_ruleset
from tracerules.runtime.dispatch.workers import MAX_CLAIMS, ActionWorkers, owner_token, recover
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.service import logs
from tracerules.runtime.service.health import Recorder, heartbeat_time, snapshot, stream_health
from tracerules.runtime.service.kafka import parse_stats
from tracerules.runtime.service.kafka_settings import (
    KafkaSettings,
    KafkaSetupError,
    StartPosition,
    consumer_config,
    load_settings,
)
from tracerules.runtime.service.loop import resolve_group
from tracerules.runtime.service.watch import RuleWatcher
from tracerules.runtime.sources.files import notice_from_file
from tracerules.runtime.sources.notices import Notice
from tracerules.runtime.store.lock import lock_store
from tracerules.runtime.store.store import Store

runner = CliRunner()
BAT = NOTICES / "swift_chain" / "02_BAT_GRB_Pos_1201696-785.xml"


# -- settings ---------------------------------------------------------------------------------


def test_start_positions_are_latest_earliest_or_a_time() -> None:
    assert StartPosition.parse("latest") == StartPosition("latest")
    assert StartPosition.parse(" Earliest ") == StartPosition("earliest")
    at = StartPosition.parse("2023-12-10T12:00:00Z")
    assert at.kind == "time" and at.at == 1702209600.0
    assert str(at) == "2023-12-10T12:00:00Z"
    with pytest.raises(ValueError, match="latest, earliest or an ISO 8601 time"):
        StartPosition.parse("yesterday")


def test_gcn_needs_client_credentials_and_a_known_domain() -> None:
    with pytest.raises(KafkaSetupError, match="GCN_KAFKA_CLIENT_ID"):
        load_settings(env={})
    with pytest.raises(KafkaSetupError, match="unknown GCN domain"):
        load_settings(domain="example.org", env={"GCN_KAFKA_CLIENT_ID": "id"})
    plain = load_settings(bootstrap_servers="127.0.0.1:9092", env={})
    assert plain.where == "127.0.0.1:9092" and plain.client_id is None


def test_settings_merge_file_environment_and_command_line(tmp_path: Path) -> None:
    config = tmp_path / "kafka.properties"
    config.write_text(
        "# GCN credentials\nclient_id = file-id\nclient_secret = file-secret\n"
        "domain = test.gcn.nasa.gov\nfetch.wait.max.ms = 300\nsasl.password = pw-1234\n"
    )
    env = {"GCN_KAFKA_CLIENT_SECRET": "env-secret", "KAFKA_FETCH_WAIT_MAX_MS": "200"}
    settings = load_settings(config_file=config, overrides={"session.timeout.ms": "6000"}, env=env)
    assert settings.client_id == "file-id"
    assert settings.client_secret == "env-secret"  # the environment wins over the file
    assert settings.domain == "test.gcn.nasa.gov"
    assert settings.where == "kafka.test.gcn.nasa.gov"
    assert settings.config["fetch.wait.max.ms"] == "200"
    assert settings.config["session.timeout.ms"] == "6000"
    assert not {"client_id", "client_secret", "domain"} & set(settings.config)
    assert set(settings.secrets()) == {"env-secret", "pw-1234"}
    assert "env-secret" not in repr(settings) and "pw-1234" not in repr(settings)


def test_a_config_file_error_names_the_line(tmp_path: Path) -> None:
    config = tmp_path / "kafka.properties"
    config.write_text("client_id = x\nthis line has no equals sign\n")
    with pytest.raises(KafkaSetupError, match=r"kafka.properties:2: expected key = value"):
        load_settings(config_file=config, env={})
    with pytest.raises(KafkaSetupError, match="cannot read"):
        load_settings(config_file=tmp_path / "missing", env={})


def test_consumer_settings_keep_the_users_and_never_auto_commit() -> None:
    settings = KafkaSettings(
        bootstrap_servers="h:1",
        config={"auto.offset.reset": "earliest", "enable.auto.commit": "true", "group.id": "mine"},
    )
    config = consumer_config(settings, "ours")
    assert config["auto.offset.reset"] == "earliest"  # setdefault: the user's choice stays
    assert config["group.id"] == "mine"
    assert config["enable.auto.commit"] is False  # ... except this: commit after storage only
    assert config["enable.auto.offset.store"] is False
    assert config["bootstrap.servers"] == "h:1"
    assert consumer_config(KafkaSettings(bootstrap_servers="h:1"), "ours")["group.id"] == "ours"
    assert consumer_config(KafkaSettings(bootstrap_servers="h:1"), "g")["auto.offset.reset"] == (
        "latest"
    )


STATS = {
    "brokers": {
        "127.0.0.1:9092/bootstrap": {"state": "UP"},
        "GroupCoordinator": {"state": "UP"},
    },
    "topics": {
        "t": {
            "partitions": {
                "0": {"desired": True, "app_offset": 7, "committed_offset": 5, "hi_offset": 9},
                "1": {"desired": True, "app_offset": -1001, "committed_offset": 4, "hi_offset": 3},
                "2": {"desired": False, "app_offset": 1, "committed_offset": 1, "hi_offset": 1},
                "-1": {"desired": False, "app_offset": -1001, "hi_offset": -1001},
            }
        }
    },
}


def test_statistics_give_the_connection_and_the_lag() -> None:
    stats = parse_stats(json.dumps(STATS))
    assert stats.connected
    lags = {(p.topic, p.partition): p for p in stats.partitions}
    assert set(lags) == {("t", 0), ("t", 1)}  # not the unassigned and internal ones
    assert lags[("t", 0)].lag == 4  # high watermark minus committed
    assert lags[("t", 1)].lag == 0  # a watermark behind the commit (Tansu): never negative
    down = {**STATS, "brokers": {"b/1": {"state": "DOWN"}, "GroupCoordinator": {"state": "INIT"}}}
    assert not parse_stats(json.dumps(down)).connected


# -- stream health ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "state"),
    [
        (None, "FAILURE"),
        (-2.0, "OK"),  # a heartbeat from a clock slightly ahead
        (0.0, "OK"),
        (4.99, "OK"),
        (5.0, "DELAYED"),
        (59.99, "DELAYED"),
        (60.0, "FAILURE"),
        (3600.0, "FAILURE"),
    ],
)
def test_stream_health_thresholds(age: float | None, state: str) -> None:
    now = 1_700_000_000.0
    assert stream_health(None if age is None else now - age, now).state == state


def test_a_heartbeat_is_dated_by_its_alert_datetime() -> None:
    payload = b'{"$schema": "x", "alert_datetime": "2024-07-25T15:50:35.792451Z"}'
    beat = Notice("gcn.heartbeat", payload, created=1721922636.0, received=1721922637.0)
    assert heartbeat_time(beat) == pytest.approx(1721922635.792451)


PUBLISHED = 1721922636.0


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "must be a JSON object"),
        (b"[1]", "not list"),
        (b"{}", "alert_datetime: expected a time"),
        (b'{"alert_datetime": ' + b"9" * 400 + b"}", "too large"),
        (b'{"alert_datetime": "' + b"9" * 400 + b'"}', "not an ISO 8601 time"),
        (b'{"alert_datetime": Infinity}', "not a finite number"),
        (b'{"alert_datetime": NaN}', "not a finite number"),
        (b'{"alert_datetime": 1e999}', "not a finite number"),
        (b'{"alert_datetime": "2099-01-01T00:00:00Z"}', "after it was published"),
        (b'{"alert_datetime": "1970-01-01T00:00:00Z"}', "before it was published"),
        (b"[" * 100_000 + b"]" * 100_000, "too deeply nested"),
    ],
)
def test_an_implausible_heartbeat_has_a_reason_and_never_raises(
    payload: bytes, reason: str
) -> None:
    beat = Notice("gcn.heartbeat", payload, created=PUBLISHED, received=PUBLISHED + 1)
    made = heartbeat_time(beat)
    assert isinstance(made, Missing) and reason in made.reason


@pytest.mark.parametrize("last", [float("inf"), float("nan"), 2_000_000_000.0])
def test_stream_health_ignores_a_heartbeat_time_that_cannot_be(last: float) -> None:
    health = stream_health(last, 1_700_000_000.0)
    assert health.state == "FAILURE" and "not plausible" in health.reason


# -- actions: workers and crash recovery ------------------------------------------------------


@pytest.fixture
def rules() -> RuleSet:
    return load_ruleset([SERVICE_RULES])


@pytest.fixture
def planned(tmp_path: Path, rules: RuleSet) -> Iterator[Store]:
    """A store holding one pending notice action (the Swift BAT position passes)."""
    store = Store(tmp_path / "store.sqlite")
    processed = Engine(rules, store, out_dir=tmp_path / "out", run_actions=False).process(
        notice_from_file(BAT, offset=0)
    )
    assert [a.status for d in processed.decisions for a in d.actions] == ["pending"]
    yield store
    store.close()


def dead_owner() -> str:
    child = subprocess.Popen(["true"])
    child.wait()
    return owner_token(child.pid)


def running(store: Store, owner: str | None, attempts: int = 1, age: float = 0.0) -> int:
    action_id = int(sql_value(store, "SELECT id FROM actions"))
    sql_run(
        store,
        "UPDATE actions SET status='running', owner=?, attempts=?, updated_at=? WHERE id=?",
        (owner, attempts, time.time() - age, action_id),
    )
    return action_id


def status_of(store: Store) -> str:
    return str(sql_value(store, "SELECT status FROM actions"))


def test_an_action_cut_off_by_a_dead_process_runs_again(planned: Store, rules: RuleSet) -> None:
    action_id = running(planned, dead_owner())
    assert recover(planned, rules) == [action_id]
    assert status_of(planned) == "pending"
    assert "requeued: it was running when process" in sql_value(planned, "SELECT log FROM actions")


def test_an_action_of_a_live_process_is_never_taken(planned: Store, rules: RuleSet) -> None:
    running(planned, owner_token(), age=3600)
    assert recover(planned, rules) == []
    assert status_of(planned) == "running"


def test_an_action_without_an_owner_waits_for_its_whole_budget(
    planned: Store, rules: RuleSet
) -> None:
    running(planned, None, age=10)  # timeout 2 s, but a live worker may still be finishing
    assert recover(planned, rules) == []
    running(planned, None, age=120)
    assert len(recover(planned, rules)) == 1
    assert status_of(planned) == "pending"


def test_an_action_abandoned_too_often_fails(planned: Store, rules: RuleSet) -> None:
    running(planned, dead_owner(), attempts=MAX_CLAIMS)
    assert len(recover(planned, rules)) == 1
    assert status_of(planned) == "failed"
    assert "given up" in sql_value(planned, "SELECT log FROM actions")


def test_workers_run_pending_and_recovered_actions(
    planned: Store, rules: RuleSet, tmp_path: Path
) -> None:
    running(planned, dead_owner())
    workers = ActionWorkers(planned.path, lambda: rules, tmp_path / "out", count=2)
    workers.start()
    try:
        workers.wake()
        wait_until(lambda: status_of(planned) == "done", 10, "the recovered action")
    finally:
        assert workers.stop(5)
    row = sql_rows(planned, "SELECT attempts, owner, files FROM actions")[0]
    assert row["attempts"] == 2 and row["owner"] == workers.token
    (written,) = json.loads(row["files"])
    assert Path(written).read_bytes() == BAT.read_bytes()


# -- rules, logs, store, status ---------------------------------------------------------------


def test_rule_watcher_reloads_changes_refuses_broken_sets_and_reloads_on_request(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "rules"
    shutil.copytree(SERVICE_RULES, folder)
    watcher = RuleWatcher([folder], interval=0.05)
    watcher.start()
    try:
        assert watcher.take() is None
        rule_file = folder / "service.yaml"
        rule_file.write_text(rule_file.read_text() + "\n# edited\n")
        reloaded = wait_until(watcher.take, 5, "a reload")
        assert isinstance(reloaded, RuleSet) and len(reloaded.triggers) == 3
        rule_file.write_text("schema_version: 1\ntriggers: [{id: x}]\n")
        refused = wait_until(watcher.take, 5, "a refusal")
        assert isinstance(refused, RuleError) and refused.diagnostics
        watcher.request()  # SIGHUP: load again although nothing changed
        assert isinstance(wait_until(watcher.take, 5, "a requested reload"), RuleError)
    finally:
        watcher.stop()


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    yield stream
    logger = logging.getLogger(logs.LOGGER)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)


def test_logs_are_json_lines_without_secrets(log_stream: io.StringIO) -> None:
    logger = logs.setup("info", lambda: ["hunter22", 'quo"ted'], log_stream)
    logging.getLogger("tracerules.service").info(
        "notice", extra={"fields": {"url": "https://x/?token=hunter22", "q": 'a quo"ted b'}}
    )
    logger.debug("not shown at info")
    (line,) = log_stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["event"] == "notice" and entry["level"] == "info"
    assert entry["url"] == "https://x/?token=***"
    assert entry["q"] == "a *** b"
    assert "hunter22" not in line and "quo" not in line


def test_repeated_kafka_errors_are_logged_once_a_while(log_stream: io.StringIO) -> None:
    logs.setup("info", list, log_stream)
    kafka = logging.getLogger("tracerules.kafka")
    for elapsed in (0, 3, 7):
        kafka.warning(
            "kafka error",
            extra={"fields": {"error": f"refused (after {elapsed}ms in state CONNECT)"}},
        )
    kafka.warning("kafka error", extra={"fields": {"error": "another one"}})
    assert len(log_stream.getvalue().splitlines()) == 2


def test_one_service_per_store(tmp_path: Path) -> None:
    first = lock_store(tmp_path / "store.sqlite")
    assert first is not None
    assert lock_store(tmp_path / "store.sqlite") is None
    first.close()
    again = lock_store(tmp_path / "store.sqlite")
    assert again is not None
    again.close()


def test_the_group_id_persists_with_the_store(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    assert resolve_group(path, "chosen", echo=False) == "chosen"
    assert resolve_group(path, None, echo=True).startswith("tracerules-echo-")
    assert resolve_group(path, None, echo=False).startswith("tracerules-")
    store = Store(path)
    Recorder(store).put("group", id="kept-group")
    store.close()
    assert resolve_group(path, None, echo=False) == "kept-group"


def test_status_without_a_service(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["status", "--store", str(tmp_path / "none.sqlite")])
    assert missing.exit_code == 2 and "no store at" in missing.output
    path = str(tmp_path / "store.sqlite")
    Store(path).close()
    result = runner.invoke(app, ["status", "--store", path])
    assert result.exit_code == 1
    assert "service       never ran with this store" in result.output
    assert "stream        FAILURE: no heartbeat was ever seen" in result.output
    as_json = runner.invoke(
        app, ["status", "--store", str(tmp_path / "store.sqlite"), "-f", "json"]
    )
    data = json.loads(as_json.output)
    assert data["healthy"] is False and data["dead_letters"] == 0 and data["decisions"] == []


def test_status_shows_topics_dead_letters_and_decisions(planned: Store) -> None:
    recorder = Recorder(planned)
    recorder.started(group="g", kafka="h:1", start="latest", store=planned.path)
    now = time.time()
    beat = json.dumps({"alert_datetime": now}).encode()
    assert recorder.heartbeat(Notice("gcn.heartbeat", beat, received=now)) is None
    recorder.kafka(True, {"h:1/1": "UP"})
    data = snapshot(planned)
    assert data["service"]["running"] and data["stream"]["health"] == "OK"
    assert [t["topic"] for t in data["topics"]] == [
        "gcn.classic.voevent.SWIFT_BAT_GRB_POS_ACK",
        "gcn.heartbeat",
    ]
    (decision,) = data["decisions"]
    assert decision["trigger"] == "swift-grb" and decision["conclusion"] == "PASS"
    assert decision["actions"][0]["status"] == "pending"
    result = runner.invoke(app, ["status", "--store", planned.path])
    assert result.exit_code == 0, result.output
    assert "#1 " in result.output and "swift-grb 1201696 PASS [notice pending]" in result.output


def test_run_and_echo_refuse_bad_arguments_before_connecting(tmp_path: Path) -> None:
    store = ["--store", str(tmp_path / "s.sqlite")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GCN_KAFKA", "KAFKA_"))}
    no_credentials = runner.invoke(app, ["run", str(SERVICE_RULES), *store], env=env)
    assert no_credentials.exit_code == 2 and "GCN_KAFKA_CLIENT_ID" in no_credentials.output
    bad_start = runner.invoke(app, ["run", "--start", "soon", *store])
    assert bad_start.exit_code == 2
    broken = tmp_path / "broken.yaml"
    broken.write_text("schema_version: 1\ntriggers: [{id: x}]\n")
    result = runner.invoke(app, ["run", str(broken), *store, "--bootstrap-servers", "h:1"])
    assert result.exit_code == 1 and "the rules do not load" in result.output
    assert runner.invoke(app, ["echo", "forever", *store]).exit_code == 2
    held = lock_store(tmp_path / "s.sqlite")
    try:
        busy = runner.invoke(
            app, ["echo", "1d", str(SERVICE_RULES), *store, "--bootstrap-servers", "h:1"]
        )
    finally:
        assert held is not None
        held.close()
    assert busy.exit_code == 1 and "is using the store" in busy.output
