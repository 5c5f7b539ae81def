"""Replayed notices keep one identity (issue 16, items 12 and 13): a stable sequence number
stands in for the Kafka offset, whatever the packaging, and replaying the same notices into
the same store recognises them instead of storing them again. Real notices, a real store."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from typer.testing import CliRunner

from tests.conftest import DATA, NOTICES
from tests.sql import rows_at
from tracerules.cli.main import app

GBM = NOTICES / "fermi_gbm_json"
SWIFT = NOTICES / "swift_chain"
RULES = """schema_version: 1
triggers:
  - id: gbm-every-notice
    topics: [gcn.notices.fermi.gbm]
    event_id: trigger_id
    event_time: trigger_time
    fields:
      trigger_id: {jsonpath: "$.id[0]", as: string}
      trigger_time: {jsonpath: "$.trigger_time", as: time}
    conditions:
      known: exists(trigger_id)
    actions:
      - type: notice
        path: "gbm/{event_id}/{topic}-{offset}.json"
"""


def dry_run(*args: str) -> str:
    result = CliRunner().invoke(app, ["dry-run", "--quiet", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def rules(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "topics.yaml").write_text((DATA / "rules" / "topics.yaml").read_text())
    (folder / "gbm.yaml").write_text(RULES)
    return folder


def products(tmp_path: Path, name: str, source: Path) -> dict[str, bytes]:
    out = tmp_path / name
    dry_run("--rules", str(rules_dir(tmp_path)), "--products", str(out), str(source))
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def rules_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    return folder if folder.is_dir() else rules(tmp_path)


def test_each_replayed_notice_writes_its_own_product(tmp_path: Path) -> None:
    written = products(tmp_path, "out", GBM)
    assert len(written) == 7  # seven notices, seven files: none overwrote another
    names = sorted(Path(n).name for n in written)
    assert names == [f"gcn.notices.fermi.gbm-{i}.json" for i in range(7)]
    # numbered in notice-time order: record_number 1..7 are the notices in time order
    for name, payload in written.items():
        number = int(name.rsplit("-", 1)[1].split(".")[0])
        assert json.loads(payload)["record_number"] == number + 1, name


def test_the_numbers_do_not_depend_on_the_packaging(tmp_path: Path) -> None:
    folder = products(tmp_path, "from-folder", GBM)
    assert len(folder) == 7
    archive = tmp_path / "gbm.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(GBM.iterdir(), reverse=True):  # archive order is not notice order
            tar.add(path, arcname=path.name)
    export = tmp_path / "gbm.ndjson"
    export.write_text(
        "".join(
            json.dumps({"topic": "gcn.notices.fermi.gbm", "payload": p.read_text()}) + "\n"
            for p in sorted(GBM.iterdir())[::-1]
        )
    )
    assert products(tmp_path, "from-tar", archive) == folder
    assert products(tmp_path, "from-ndjson", export) == folder


def _counts(store: Path) -> tuple[int, list[tuple[str, int]], int]:
    notices = rows_at(store, "SELECT count(*) FROM notices")[0][0]
    topics = rows_at(store, "SELECT topic, count FROM topic_stats ORDER BY topic")
    decisions = rows_at(store, "SELECT count(*) FROM decisions")[0][0]
    return notices, topics, decisions


def test_replaying_the_same_notices_into_the_same_store_adds_nothing(tmp_path: Path) -> None:
    store = tmp_path / "tracerules.sqlite"
    args = ("--rules", str(DATA / "rules"), "--store", str(store), str(GBM), str(SWIFT))
    dry_run(*args)
    first = _counts(store)
    text = dry_run(*args)
    assert _counts(store) == first  # no second copy of any notice, topic count or decision
    assert "0 notices (29 more already in the store or repeated)" in " ".join(text.split())
    served = CliRunner().invoke(app, ["notices", "list", "--store", str(store), "--format", "json"])
    assert served.exit_code == 0, served.output
    listed = json.loads(served.stdout)
    rows = listed if isinstance(listed, list) else listed.get("notices", listed)
    assert len(rows) == first[0]
