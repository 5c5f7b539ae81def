"""A total notice order (issue 12, item 1): the same notices give the same decisions, notice by
notice, whether they come from a folder, a tar archive (in any member order), an NDJSON export
or a store; files that are not notices are skipped and counted, never taken for notices.
Real notices (the bundled examples), a real store."""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.sql import sql_rows
from tracerules.cli.main import app
from tracerules.rules.compile import RuleSet, load_ruleset
from tracerules.runtime.engine.replay import replay
from tracerules.runtime.sources.files import Skipped, iter_notices
from tracerules.runtime.sources.notices import Notice
from tracerules.runtime.sources.order import (
    gcn_counter,
    in_notice_order,
    order_key,
    serial_number,
    stage_rank,
)
from tracerules.runtime.store.history import iter_decisions, sequence

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTICES = EXAMPLES / "notices"
CHIME = NOTICES / "chime"
GBM_VOEVENT = NOTICES / "fermi_gbm_voevent" / "558621112"
DATA = Path(__file__).resolve().parent / "data" / "notices"
DAY_STREAM = DATA / "day_stream"
ARRIVAL = DAY_STREAM / "_day-stream_2023-11-01_order.txt"  # the order GCN broadcast them in
CHIME_EVENT = "427325191"  # detection, update and retraction, all stamped 07:19:10.765268

# (payload sha256, trigger, event id, conclusion) per decision, in evaluation order
Decided = list[tuple[str, str, str | None, str]]


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_ruleset([EXAMPLES / "rules"])


def decide(rules: RuleSet, notices: Iterable[Notice], store: Path) -> Decided:
    result = replay(rules, notices, store_path=store)
    try:
        decided = []
        for decision in iter_decisions(result.store):
            row = result.store.notice(decision.notice_id or -1)
            assert row is not None
            decided.append(
                (row["sha256"], decision.trigger, decision.event_id, decision.conclusion.value)
            )
        return decided
    finally:
        result.close()


def tar_of(folder: Path, archive: Path, *, reverse: bool) -> Path:
    """`tar -cjf archive -C parent folder`, its members in name order or reversed."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    with tarfile.open(archive, "w:bz2") as tar:
        for path in reversed(files) if reverse else files:
            tar.add(path, arcname=str(path.relative_to(folder.parent)))
    return archive


def ndjson_export(notices: Iterable[Notice], path: Path) -> Path:
    """An export as a consumer would write it: topic and payload per line, newest first."""
    lines = [json.dumps({"topic": n.topic, "payload": n.payload.decode()}) for n in notices]
    path.write_text("".join(line + "\n" for line in reversed(lines)))
    return path


def chime_conclusions(decided: Decided) -> list[str]:
    return [c for _, trigger, event, c in decided if (trigger, event) == ("chime-frb", CHIME_EVENT)]


def test_every_packaging_of_the_examples_decides_alike(rules: RuleSet, tmp_path: Path) -> None:
    folder_store = tmp_path / "folder.sqlite"
    by_folder = decide(rules, iter_notices([NOTICES]), folder_store)
    packagings = {
        "tar": tar_of(NOTICES, tmp_path / "ex.tar.bz2", reverse=False),
        "reversed tar": tar_of(NOTICES, tmp_path / "reversed.tar.bz2", reverse=True),
        "ndjson": ndjson_export(iter_notices([NOTICES]), tmp_path / "ex.ndjson"),
        "store": folder_store,
    }
    assert len(by_folder) > 100  # every example trigger decided something
    for name, source in packagings.items():
        decided = decide(rules, iter_notices([source]), tmp_path / f"{name}.sqlite")
        assert decided == by_folder, name
    # the detection and its update pass, the retraction (same time stamp) comes last
    assert chime_conclusions(by_folder) == ["PASS", "PASS", "FAIL"]


def chime_with_a_retraction_hashing_first(folder: Path) -> list[Path]:
    """The CHIME event's three notices, the retraction padded with spaces (the same JSON) until
    its SHA-256 sorts before the others': only its stage can put it last."""
    folder.mkdir()
    files = sorted(CHIME.glob("*.json"))
    lowest = min(hashlib.sha256(p.read_bytes()).hexdigest() for p in files)
    for path in files:
        (folder / path.name).write_bytes(path.read_bytes())
    retraction = (CHIME / "03_frb.retraction.example.json").read_bytes()
    padded = next(
        retraction + b" " * n
        for n in range(1, 10_000)
        if hashlib.sha256(retraction + b" " * n).hexdigest() < lowest
    )
    (folder / "03_frb.retraction.example.json").write_bytes(padded)
    return sorted(folder.iterdir())


def test_a_retraction_of_the_same_time_comes_last_in_any_order(
    rules: RuleSet, tmp_path: Path
) -> None:
    files = [p for p in chime_with_a_retraction_hashing_first(tmp_path / "c") if p.name[0] == "0"]
    for turn, order in enumerate((files, files[::-1], [files[2], files[0], files[1]])):
        archive = tmp_path / f"chime{turn}.tar"
        with tarfile.open(archive, "w") as tar:
            for path in order:
                tar.add(path, arcname=path.name)
        decided = decide(rules, iter_notices([archive]), tmp_path / f"chime{turn}.sqlite")
        assert chime_conclusions(decided) == ["PASS", "PASS", "FAIL"], [p.name for p in order]


def test_the_order_key_reads_serials_and_stages_from_the_payload() -> None:
    packet = b'<voe:VOEvent><What><Param name="Pkt_Ser_Num" value="24"/></What></voe:VOEvent>'
    swapped = b'<VOEvent><Param dataType="string" value=" 3" name="Pkt_Ser_Num"/></VOEvent>'
    assert (serial_number(packet), serial_number(swapped)) == (24, 3)
    assert serial_number(b'{"record_number": 7, "id": ["1"]}') == 7
    assert serial_number(b'{"alert_type": "initial"}') == -1
    lvk = b'<VOEvent><Param name="AlertType" dataType="string" value="Retraction"/></VOEvent>'
    assert stage_rank(lvk) > stage_rank(b'{"alert_type": "EARLY_WARNING"}')
    assert stage_rank(b'{"alert_type": "PRELIMINARY"}') < stage_rank(b'{"alert_type": "update"}')
    assert stage_rank(b'{"no": "stage"}') == 0
    # the serial number decides before the stage, the hash only when nothing else does
    first, second = b'{"record_number": 1, "alert_type": "update"}', b'{"record_number": 2}'
    assert order_key(5.0, first, "f") < order_key(5.0, second, "0")
    assert order_key(5.0, b"{}", "a") < order_key(5.0, b"{}", "b") < order_key(6.0, b"{}", "0")


def test_gcn_s_voevent_counter_orders_notices_of_one_second_across_its_wrap() -> None:
    gnd = (GBM_VOEVENT / "04_GBM_Gnd_Pos_2018-09-14T12-31-47.25_558621112_57-872.xml").read_bytes()
    assert gcn_counter(gnd) == 872 and serial_number(gnd) == 24  # Pkt_Ser_Num: per type
    lvk = next((NOTICES / "lvk_voevent").glob("*.xml")).read_bytes()
    assert gcn_counter(lvk) == -1  # the LVK's own IVORNs carry no GCN counter

    def sent(counter: int) -> bytes:
        return (
            f'<voe:VOEvent ivorn="ivo://nasa.gsfc.gcn/SWIFT#X_1_{counter}-{counter:03d}"/>'.encode()
        )

    # 998, 999, 000, 001: GCN's counter wrapped within the second; the last sent stays last
    tied = [(c, 5.0, sent(c), f"{c:064x}") for c in (1, 999, 0, 998)]
    assert in_notice_order(tied) == [998, 999, 0, 1]
    assert in_notice_order([(c, 5.0, sent(c), "0") for c in (7, 3, 500)]) == [3, 7, 500]


def test_real_notices_of_one_second_go_in_the_order_gcn_sent_them() -> None:
    """In the day stream of 2023-11-01, a KONUS light curve and an IPN raw notice share
    their time stamp; GCN sent the light curve first, whatever the order they are read in."""
    notices = list(iter_notices([DAY_STREAM]))
    by_time: dict[float, list[Notice]] = {}
    for notice in notices:
        by_time.setdefault(notice.received or 0.0, []).append(notice)
    ties = [group for group in by_time.values() if len(group) > 1]
    assert ties
    arrival = [Path(line).name.replace(":", "-") for line in ARRIVAL.read_text().split()]
    for group in ties:
        for order in (group, group[::-1]):
            rows = ((n.name, n.received or 0.0, n.payload, n.digest) for n in order)
            assert in_notice_order(rows) == sorted((n.name for n in group), key=arrival.index)


def test_the_chime_notices_sort_alike_whatever_order_they_come_in() -> None:
    notices = list(iter_notices([CHIME]))
    notices.sort(key=lambda n: order_key(n.received or 0.0, n.payload, n.digest))
    stages = [json.loads(n.payload)["alert_type"] for n in notices]
    assert stages.index("retraction") == len(stages) - 1
    assert stages.index("initial") < stages.index("update")


def test_files_that_are_not_notices_are_skipped_and_counted(tmp_path: Path) -> None:
    inner = tmp_path / "inner.tar.gz"
    with tarfile.open(inner, "w:gz") as tar:
        tar.add(NOTICES / "README.md", arcname="ABOUT.md")
        tar.add(CHIME / "01_frb.detection.example.json", arcname="frb.json")
    archive = tmp_path / "mixed.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(NOTICES / "README.md", arcname="notices/README.md")
        tar.add(NOTICES / "PROVENANCE.tsv", arcname="notices/PROVENANCE.tsv")
        tar.add(NOTICES / "README.md", arcname="notices/NOTES")
        tar.add(CHIME / "03_frb.retraction.example.json", arcname="notices/retraction.json")
        tar.add(inner, arcname="notices/inner.tar.gz")
    skipped = Skipped()
    notices = list(iter_notices([archive], skipped=skipped))
    assert sorted(n.name or "" for n in notices) == ["frb.json", "notices/retraction.json"]
    assert {n.topic for n in notices} == {"gcn.notices.chime.frb"}  # nothing as "unknown"
    assert dict(skipped) == {".md": 2, ".tsv": 1, "(no suffix)": 1}
    assert skipped.describe() == (
        "4 files that are not notices skipped (1 (no suffix), 2 .md, 1 .tsv)"
    )


# The start of a macOS AppleDouble file (magic, version, "Mac OS X" filler, one entry): what
# macOS tar and Finder's zip store as `._NAME` beside every file that has extended attributes.
APPLE_DOUBLE = (
    b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \x00\x01"
    + b"\x00\x00\x00\x09\x00\x00\x00\x32\x00\x00\x0e\xb0"
    + b"\x00" * 64
)


def test_macos_metadata_files_are_skipped_whatever_their_suffix(tmp_path: Path) -> None:
    folder = tmp_path / "notices"
    (folder / "__MACOSX" / "notices").mkdir(parents=True)
    detection = CHIME / "01_frb.detection.example.json"
    (folder / "01.json").write_bytes(detection.read_bytes())
    for name in ("._01.json", "__MACOSX/notices/._01.json", "._old.tar.gz", "__MACOSX/x.xml"):
        (folder / name).write_bytes(APPLE_DOUBLE)
    archive = tmp_path / "mac.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(folder, arcname="notices")
    for source in (folder, archive):
        skipped = Skipped()
        notices = list(iter_notices([source], skipped=skipped))
        assert [Path(n.name or "").name for n in notices] == ["01.json"], source
        assert {n.topic for n in notices} == {"gcn.notices.chime.frb"}
        assert dict(skipped) == {"macOS metadata": 4}
        assert skipped.describe() == "4 files that are not notices skipped (4 macOS metadata)"


def dry_run(*args: str) -> str:
    rules = ("--rules", str(EXAMPLES / "rules"))
    result = CliRunner().invoke(app, ["dry-run", "--quiet", *rules, *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def without_ids(value: object) -> object:
    """A dry run's JSON without what names the container: store ids and file names."""
    if isinstance(value, dict):
        return {k: without_ids(v) for k, v in value.items() if k not in ("id", "notice_id", "name")}
    if isinstance(value, list):
        return [without_ids(v) for v in value]
    return value


def test_dry_run_of_a_folder_and_of_its_tar_print_the_same(tmp_path: Path) -> None:
    archive = tar_of(NOTICES, tmp_path / "ex.tar.bz2", reverse=True)
    folder = json.loads(dry_run("--format", "json", str(NOTICES)))
    tarred = json.loads(dry_run("--format", "json", str(archive)))
    assert folder["summary"] == tarred["summary"]
    assert folder["summary"]["skipped_files"] == {".md": 1, ".tsv": 1}
    assert without_ids(folder) == without_ids(tarred)
    text = " ".join(dry_run(str(archive)).split())
    assert "2 files that are not notices skipped (1 .md, 1 .tsv)" in text


def test_offset_numbers_of_replayed_notices_follow_the_notice_order(
    rules: RuleSet, tmp_path: Path
) -> None:
    """`{offset}` of a replayed notice is its place in the same order: the CHIME detection,
    update and retraction of one time stamp are numbered as they are evaluated."""
    files = chime_with_a_retraction_hashing_first(tmp_path / "chime")
    numbered = []
    for turn, order in enumerate((files, files[::-1])):
        archive = tmp_path / f"chime{turn}.tar"
        with tarfile.open(archive, "w") as tar:
            for path in order:
                tar.add(path, arcname=path.name)
        result = replay(rules, iter_notices([archive]), store_path=tmp_path / f"{turn}.sqlite")
        try:
            rows = sql_rows(result.store, "SELECT id, sha256, payload FROM notices")
            places = {r["sha256"]: sequence(result.store, r["id"]) for r in rows}
            stages = {r["sha256"]: json.loads(r["payload"])["alert_type"] for r in rows}
        finally:
            result.close()
        assert sorted(places.values()) == [0, 1, 2, 3]
        by_place = [stages[sha] for sha in sorted(places, key=places.__getitem__)]
        assert by_place[0] == "initial" and by_place[-1] == "retraction"
        numbered.append(places)
    assert numbered[0] == numbered[1]
