"""`tracerules dry-run --products` over the example notices writes the MWA and ATCA requests
that a live run sends: the stand-ins of both services receive exactly those requests.

The example rules (examples/rules/mwa.yaml, atca.yaml) are copied with one change, the
services' URLs pointed at the local stand-ins, so the dry run and the live run read the same
rules. The live run is the engine itself over the same notices.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from typer.testing import CliRunner

from tests.observatory_standins import (
    ATCA_TOKEN,
    MWA_KEY,
    StandIn,
    atca_answer,
    mwa_answer,
    serve,
)
from tests.sql import sql_rows
from tracerules.cli.main import app
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.sources.files import iter_notices
from tracerules.runtime.store.store import Store

ROOT = Path(__file__).parents[1]
EXAMPLES = ROOT / "examples"
runner = CliRunner()


@pytest.fixture
def services(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[StandIn, StandIn]]:
    monkeypatch.setenv("MWA_SECURE_KEY", MWA_KEY)
    monkeypatch.setenv("ATCA_TOKEN", ATCA_TOKEN)
    with serve(mwa_answer) as mwa, serve(atca_answer) as atca:
        yield mwa, atca


def example_rules(tmp_path: Path, mwa: StandIn, atca: StandIn) -> Path:
    folder = tmp_path / "rules"
    shutil.copytree(EXAMPLES / "rules", folder, symlinks=False)
    for name, url in (("mwa", mwa.url), ("atca", atca.url)):
        path = folder / f"{name}.yaml"
        text = path.read_text()
        assert f"      - type: {name}\n" in text
        path.write_text(
            text.replace(f"      - type: {name}\n", f"      - type: {name}\n        url: {url}\n")
        )
    return folder


def written(products: Path, service: str) -> list[dict[str, Any]]:
    requests = []
    for path in sorted((products / "requests" / service).glob("*.json")):
        requests += json.loads(path.read_text())["requests"]
    return requests


def normalised(method: str, url: str, body: dict[str, str]) -> tuple[str, str, str, str]:
    parts = urlsplit(url)
    path = parts.path or "/"  # what a client sends for a bare host
    return method, path, json.dumps(sorted(parse_qsl(parts.query))), json.dumps(body)


def received(stand_in: StandIn, secret_field: str, secret: str) -> list[tuple[str, ...]]:
    out = []
    for r in stand_in.received:
        body = {k: ("***" if k == secret_field and v == secret else v) for k, v in r.body.items()}
        query = json.dumps(sorted(r.query.items()))
        out.append((r.method, r.path, query, json.dumps(body)))
    return out


def test_dry_run_products_are_exactly_what_the_services_receive(
    tmp_path: Path, services: tuple[StandIn, StandIn]
) -> None:
    mwa, atca = services
    rules = example_rules(tmp_path, mwa, atca)
    products = tmp_path / "products"
    notices = EXAMPLES / "notices"
    result = runner.invoke(
        app, ["dry-run", "--rules", str(rules), "--products", str(products), str(notices), "-q"]
    )
    assert result.exit_code == 0, result.output
    assert mwa.received == [] and atca.received == []  # a dry run sends nothing
    mwa_written, atca_written = written(products, "mwa"), written(products, "atca")
    # Swift 1201696 and the first GBM ground position (MWA); Swift 1201696 (ATCA); and the
    # mock MS181101ab, whose complete sky maps (examples/notices/lvk_json/MS181101ab.tar.xz)
    # are planned as test observations: a buffer dump and VCS, then VCS again.
    assert [r["name"] for r in mwa_written] == [
        "triggerobs",
        "triggerbuffer",
        "triggervcs",
        "triggervcs",
        "triggerobs",
    ]
    assert [r["name"] for r in atca_written] == ["rapid_response"]
    text = "".join(p.read_text() for p in (products / "requests").rglob("*.json"))
    assert MWA_KEY not in text and ATCA_TOKEN not in text and '"***"' in text

    engine = Engine(load_ruleset([rules]), Store(tmp_path / "live.sqlite"), out_dir=tmp_path)
    for notice in iter_notices([notices], None):
        engine.process(notice)
    sent_mwa = received(mwa, "secure_key", MWA_KEY)
    sent_atca = received(atca, "authToken", ATCA_TOKEN)
    assert [normalised(r["method"], r["url"], r["body"]) for r in mwa_written] == sent_mwa
    assert [normalised(r["method"], r["url"], r["body"]) for r in atca_written] == sent_atca
    rows = sql_rows(engine.store, "SELECT type, status FROM actions WHERE type IN ('mwa', 'atca')")
    # The second GBM ground position is 1 deg from the first: within the 4 deg re-point
    # threshold, so it clashes with the observation it would repeat, in both runs.
    # (The mock's later stages clash with its own test observation likewise.)
    assert sorted((r["type"], r["status"]) for r in rows) == [
        ("atca", "done"),
        *[("mwa", "clash")] * 4,
        *[("mwa", "done")] * 4,
    ]
