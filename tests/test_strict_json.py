"""NaN and Infinity in a notice never make invalid JSON in what tracerules sends, and an
oversized payload is kept as its prefix, size and hash (issue 11, item 10)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA, NOTICES
from tests.sql import sql_rows, sql_value
from tests.test_webhook import Loopback, server  # noqa: F401  (the loopback HTTP server)
from tracerules.rules.compile import load_ruleset
from tracerules.runtime.engine.engine import Engine
from tracerules.runtime.sources.files import notice_from_file
from tracerules.runtime.sources.notices import DEFAULT_MAX_BYTES, STORED_PREFIX
from tracerules.runtime.store.store import Store

GBM = NOTICES / "fermi_gbm_json" / "2_trigger.flight1.example.json"


def strict(body: bytes) -> Any:
    """A parser that accepts JSON only: NaN, Infinity and -Infinity are not JSON."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(body, parse_constant=refuse)


def rules(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "hooks.yaml"
    path.write_text(
        f"""schema_version: 1
triggers:
  - id: gbm-hook
    topics: [gcn.notices.fermi.gbm]
    event_id: trigger_id
    event_time: trigger_time
    expiry: 1 d
    fields:
      trigger_id: {{jsonpath: "$.id[0]", as: string}}
      trigger_time: {{jsonpath: "$.trigger_time", as: time}}
      odd: {{jsonpath: "$.odd", as: auto}}
      huge: {{jsonpath: "$.huge", as: auto}}
      many: {{jsonpath: "$.many", as: auto}}
      ra: {{jsonpath: "$.ra", as: angle}}
      dec: {{jsonpath: "$.dec", as: angle}}
    conditions:
      always: exists(trigger_id)
    actions:
      - type: webhook
        url: "{url}/default"
      - type: webhook
        url: "{url}/custom"
        body: {{odd: "{{odd}}", huge: "{{huge}}", many: "{{many}}", note: "odd is {{odd}}"}}
"""
    )
    return path


def test_webhook_bodies_are_strict_json_whatever_the_notice_holds(
    server: Loopback,  # noqa: F811
    tmp_path: Path,
) -> None:
    doc = GBM.read_text()
    hostile = doc.replace("{", '{"odd": NaN, "huge": Infinity, "many": [1.5, -Infinity],', 1)
    notice = dataclasses.replace(notice_from_file(GBM), payload=hostile.encode(), digest="")
    store = Store(tmp_path / "store.sqlite")
    engine = Engine(
        load_ruleset([DATA / "rules" / "topics.yaml", rules(tmp_path, server.url)]),
        store,
        out_dir=tmp_path / "out",
    )
    (decision,) = engine.process(notice).decisions
    assert [a.status for a in decision.actions] == ["done", "done"], decision.actions
    bodies = {seen.path: strict(seen.body) for seen in server.seen}
    fields = bodies["/default"]["fields"]
    assert fields["odd"] is None and fields["huge"] is None
    assert bodies["/custom"]["odd"] is None and bodies["/custom"]["huge"] is None
    assert bodies["/custom"]["note"] == "odd is nan"  # text may say so; a number may not
    store.close()


def test_an_oversized_payload_is_stored_as_prefix_size_and_hash(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.sqlite")
    engine = Engine(load_ruleset([DATA / "rules"]), store, out_dir=tmp_path / "out")
    real = notice_from_file(GBM)
    padding = b" " * (DEFAULT_MAX_BYTES + 1024)  # whitespace: still a well-formed notice
    payload = real.payload.replace(b"{", b"{" + padding, 1)
    notice = dataclasses.replace(real, payload=payload, digest="")
    processed = engine.process(notice)
    assert processed.status == "dead"
    digest = hashlib.sha256(payload).hexdigest()
    assert processed.reason is not None and digest in processed.reason
    assert f"first {STORED_PREFIX} bytes" in processed.reason
    row = sql_rows(store, "SELECT size, sha256, length(payload) AS kept FROM notices")[0]
    assert (row["size"], row["sha256"], row["kept"]) == (len(payload), digest, STORED_PREFIX)
    reason = sql_value(store, "SELECT reason FROM dead_letters")
    assert reason == processed.reason
    again = engine.process(dataclasses.replace(notice, offset=notice.offset + 1))
    assert again.status == "duplicate"  # recognised by the whole payload's hash
    assert sql_value(store, "SELECT count(*) FROM notices WHERE duplicate_of IS NULL") == 1
    store.close()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_strict_json_writes_null_for_what_json_cannot_hold(value: float) -> None:
    from tracerules.products.actions.templating import strict_json

    assert strict(strict_json({"a": value, "b": [value, {"c": value}]}).encode()) == {
        "a": None,
        "b": [None, {"c": None}],
    }
