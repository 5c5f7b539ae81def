"""Safe to leave unattended (issue 11) against the real service and broker: secrets, a failing
destination, SIGTERM and kill -9 during a command, a full disk."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import kafka_broker as kb
from tests.service_harness import (
    Publisher,
    ServiceProcess,
    check_exactly_once,
    notice_files,
    service_topics,
    variants,
    wait_until,
)
from tests.torture_support import (
    SECRET_ENV,
    Endpoint,
    command_rules,
    destination_rules,
    kill_trials,
    leak_counts,
    marker_action,
    read_marks,
    secret_rules,
    swift_copies,
    wait_attempted,
)

pytestmark = pytest.mark.kafka

SWIFT = notice_files("swift_chain", "0[25]_*")


@pytest.fixture
def echo_api() -> Iterator[Endpoint]:
    api = Endpoint("echo")
    yield api
    api.close()


def test_eight_secret_shapes_leak_nowhere(
    tmp_path: Path,
    kafka_broker: kb.KafkaBroker,
    echo_api: Endpoint,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    rules = secret_rules(tmp_path / "rules", echo_api.url)
    service = ServiceProcess(tmp_path, service_topics(kafka_broker.bootstrap), rules=rules)
    try:
        service.start("--start", "latest")
        service.wait_assigned()
        produced = Publisher(service.bootstrap).send_files(SWIFT)
        wait_attempted(service, produced)
        assert service.stop() == 0
    finally:
        service.close()
    statuses = dict(service.sql_rows("SELECT type || position, count(*) FROM actions GROUP BY 1"))
    assert statuses, "the actions ran"
    assert any("/hook" in path for _, path in echo_api.arrivals), "the API saw the secrets"
    counts = leak_counts(tmp_path, service.store, service.out, rules)
    assert counts == dict.fromkeys(counts, 0)


# -- one failing destination -------------------------------------------------------------------


def _action_delays(service: ServiceProcess, trigger: str) -> list[float]:
    rows = service.sql_rows(
        "SELECT updated_at - created_at FROM actions WHERE trigger=? AND status='done'", (trigger,)
    )
    return [float(d) for (d,) in rows]


def test_a_failing_destination_delays_no_other_and_is_retried_until_it_recovers(
    tmp_path: Path, kafka_broker: kb.KafkaBroker, echo_api: Endpoint
) -> None:
    bad = Endpoint("bad", fail=1, hang=60)
    rules = destination_rules(tmp_path / "rules", bad.url, echo_api.url, bad_timeout=4)
    service = ServiceProcess(tmp_path, service_topics(kafka_broker.bootstrap), rules=rules)
    try:
        service.start("--start", "latest")
        service.wait_assigned()
        produced = Publisher(service.bootstrap).send(swift_copies(6, "d"), pause=0.2)
        wait_until(
            lambda: len(_action_delays(service, "to-good")) == 2 * len(produced),
            30,
            "the healthy destination's actions",
        )
        delays = _action_delays(service, "to-good")
        assert max(delays) <= 1.0, delays
        wait_until(
            lambda: service.sql_rows(
                "SELECT count(*) FROM actions WHERE trigger='to-bad' AND retry_at IS NOT NULL"
            )[0][0],
            30,
            "a retry planned for the failing destination",
        )
        bad.mode = "echo"  # the endpoint recovers within the event's expiry
        bad.release()
        service.wait_processed(produced, timeout=90)
        bad_runs = service.sql_rows("SELECT status, log FROM actions WHERE trigger='to-bad'")
        assert {status for status, _ in bad_runs} == {"done"}
        assert any("failed; tried again" in log for _, log in bad_runs), bad_runs
        assert service.stop() == 0
    finally:
        service.close()
        bad.close()


# -- SIGTERM and kill -9 during a command --------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _command_service(tmp_path: Path, bootstrap: str, seconds: float) -> tuple[ServiceProcess, Path]:
    marks = tmp_path / "marks.txt"
    rules = command_rules(tmp_path / "rules", marker_action(tmp_path, marks, seconds))
    return ServiceProcess(tmp_path, service_topics(bootstrap), rules=rules), marks


def test_sigterm_stops_a_running_command_and_a_restart_runs_it_again(
    tmp_path: Path, kafka_broker: kb.KafkaBroker
) -> None:
    service, marks = _command_service(tmp_path, kafka_broker.bootstrap, 60)
    try:
        service.start("--start", "latest")
        service.wait_assigned()
        Publisher(service.bootstrap).send_files(SWIFT[:1])
        wait_until(lambda: read_marks(marks), 30, "the command to start")
        ((_, first, _, _),) = read_marks(marks)
        assert service.stop(timeout=40) == 0
        assert not _alive(first), "the command outlived the service"
        service.start("--start", "latest")
        wait_until(lambda: len(read_marks(marks)) == 2, 60, "the command to run again")
        assert service.stop(timeout=40) == 0
        status = service.sql_rows("SELECT status, log FROM actions")
        assert status[0][0] == "pending" and "interrupted by shutdown" in status[0][1]
    finally:
        service.close()


def test_after_kill_9_a_restart_waits_for_the_first_copy_of_a_command(
    tmp_path: Path, kafka_broker: kb.KafkaBroker
) -> None:
    service, marks = _command_service(tmp_path, kafka_broker.bootstrap, 8)
    try:
        service.start("--start", "latest")
        service.wait_assigned()
        Publisher(service.bootstrap).send_files(SWIFT[:1])
        wait_until(lambda: read_marks(marks), 30, "the command to start")
        service.kill()
        service.start("--start", "latest")
        wait_until(lambda: len(read_marks(marks)) == 4, 60, "both copies to finish")
        assert service.stop() == 0
    finally:
        service.close()
    kinds = [kind for kind, *_ in read_marks(marks)]
    assert kinds == ["start", "end", "start", "end"], "the second copy started beside the first"
    (status,) = service.sql_rows("SELECT status FROM actions")
    assert status == ("done",)


# -- a full disk ----------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_is_degraded_in_status_and_work_resumes_when_space_returns(
    tmp_path: Path, small_disk: Path, kafka_broker: kb.KafkaBroker
) -> None:
    service = ServiceProcess(tmp_path, service_topics(kafka_broker.bootstrap))
    service.store, service.out = small_disk / "store.sqlite", small_disk / "out"  # logs aside
    service.start("--start", "latest")
    try:
        service.wait_assigned()
        filler = _fill(small_disk)
        produced = Publisher(service.bootstrap).send(variants(12))

        def full() -> int | None:
            code, text = service.status_cli()
            return code if "disk          FULL" in text else None

        assert wait_until(full, 30, "the full disk in status") == 1
        service.check_alive()
        filler.unlink()
        service.wait_processed(produced, timeout=90)
        check_exactly_once(service, produced)
        wait_until(lambda: "disk          OK" in service.status_cli()[1], 20, "the disk OK again")
        assert service.stop() == 0
    finally:
        service.close()


def test_kill_9_during_actions_loses_nothing_and_never_runs_a_copy_beside_another(
    tmp_path: Path, kafka_broker: kb.KafkaBroker
) -> None:
    figures = kill_trials(tmp_path, service_topics(kafka_broker.bootstrap), trials=2)
    assert figures["notices"] == 16
    assert figures["lost"] == figures["overlapping"] == figures["not run"] == 0, figures
