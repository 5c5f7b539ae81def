"""The fast YAML path (rules/yaml_plain.py) gives exactly what ruamel's safe loader gives."""

from __future__ import annotations

import datetime
import gc
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import MarkedYAMLError

from tracerules.rules.loader import load_paths
from tracerules.rules.yaml_plain import load_plain, yaml_reader

ROOT = Path(__file__).resolve().parents[1]
RULE_FILES = sorted(
    [*(ROOT / "examples" / "rules").glob("*.yaml"), *(ROOT / "tests" / "data").rglob("*.yaml")]
)


def _same(a: Any, b: Any) -> bool:
    """Equal, with the same types and key order (True == 1 would hide a bool read as int)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def _ruamel(text: str) -> Any:
    return yaml_reader("safe").load(text)


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_rule_file_reads_as_ruamel_reads_it(path: Path) -> None:
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        expected = _ruamel(text)
    except MarkedYAMLError as err:
        with pytest.raises(type(err)):
            load_plain(text)
        return
    assert _same(load_plain(text), expected)


SCALARS = """\
plain: text
quoted: '1'
double: "true"
ints: [0, -3, +7, 0o17, 0x1F, 1_000]
floats: [1.5, -2e3, .inf, -.Inf, .nan, 6.]
bools: [true, false, True, FALSE]
yaml11: [yes, no, on, off, 010]
sexagesimal: 1:30
nulls: [~, null, Null, ]
empty:
date: 2019-04-25
stamp: 2019-04-25T08:18:05.123Z
folded: >
  two
  lines
literal: |
  kept
   as is
explicit: [!!str 12, !!int "12", !!float 1]
1: an int key
null: a null key
"""


@pytest.mark.parametrize(
    "text",
    [
        SCALARS,
        "",
        "# only a comment\n",
        "just a string\n",
        "- a\n- {b: [c, {d: e}]}\n",
        "base: &b {x: 1, y: [1, 2]}\nuse: *b\nagain: [*b, *b]\n",
        "<<: {a: 1}\nb: 2\n",
        "base: &b {a: 1}\nderived:\n  <<: *b\n  c: 2\n",
        # merges: own keys win, a list's first mapping wins, merged keys come first
        "a: &a {x: 1, y: 2}\nb: &b {y: 3, z: 4}\nc:\n  w: 0\n  <<: [*a, *b]\n  x: 9\n",
        "a: &a {x: 1}\nb: &b {<<: *a, y: 2}\nc: {<<: *b, z: 3}\n",
        "a: &a {x: 1}\nc: {x: 2, x: 3, <<: *a}\n",
        "a: &a {x: 1, <<: *a}\n",
        "a: &a {x: 1}\nc: {<<: *a, '<<': quoted}\n",
        "c: {<<: {}, <<: {x: 1}}\n",
        "set: !!set {a, b}\n",
        "omap: !!omap [a: 1, b: 2]\n",
        "? [a, b]\n: complex key\n",
        "= : a value key\n",
    ],
)
def test_documents_read_as_ruamel_reads_them(text: str) -> None:
    assert _same(load_plain(text), _ruamel(text))


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\na: 2\n",
        "a: {b: 1, b: 2}\n",
        "x: !custom 1\n",
        "a: *missing\n",
        "a: [1, 2\n",
        "a: 1\n---\nb: 2\n",
        "a: &a {x: 1}\nc: {<<: *a, <<: *a}\n",
        "a: &a {x: 1}\nc: {<<: [*a, 2]}\n",
    ],
)
def test_errors_are_ruamel_errors_with_their_marks(text: str) -> None:
    with pytest.raises(MarkedYAMLError) as expected:
        _ruamel(text)
    with pytest.raises(type(expected.value)) as got:
        load_plain(text)
    assert str(got.value) == str(expected.value)


def test_aliases_stay_shared_and_recursive_anchors_stay_cycles() -> None:
    """The expansion guard measures shared nodes once: copies would hide an alias bomb."""
    data = load_plain("base: &b {x: [1, 2]}\nuse: *b\nlist: &l [a, *l]\n")
    assert data["use"] is data["base"]
    assert data["list"][1] is data["list"]


def test_values_keep_ruamel_types() -> None:
    data = load_plain(SCALARS)
    assert data["yaml11"] == ["yes", "no", "on", "off", 10]  # YAML 1.2, not 1.1
    assert data["sexagesimal"] == "1:30"
    assert data["date"] == datetime.date(2019, 4, 25)
    assert data[1] == "an int key"
    assert data[None] == "a null key"
    assert data["empty"] is None


def test_plain_rule_files_skip_ruamel_constructor(monkeypatch: pytest.MonkeyPatch) -> None:
    """What made reading rule files slow: the generic constructor runs only for documents
    outside the plain subset (sets, complex keys, errors)."""

    def refuse(self: Any, node: Any) -> Any:
        raise AssertionError("ruamel's constructor ran")

    monkeypatch.setattr(SafeConstructor, "construct_document", refuse)
    examples = sorted((ROOT / "examples" / "rules").glob("*.yaml"))
    assert any("<<: *" in p.read_text() for p in examples)  # lvk.yaml merges shared fields
    result = load_paths([ROOT / "examples" / "rules"])
    assert not [d for d in result.diagnostics if d.is_error]
    assert sum(len(f.triggers) for f in result.files) >= 10
    with pytest.raises(AssertionError, match="constructor ran"):
        load_plain("s: !!set {a, b}\n")


def test_loading_pauses_the_garbage_collector_and_restores_it() -> None:
    """The collector's passes over the objects loading makes found nothing to free and cost
    a sixth of the load time; it is on again afterwards, and stays off if it was off. The
    pass it owed when switched back on (over every object made, all alive) is skipped too."""
    from tracerules.rules.compile import load_ruleset

    passes: list[str] = []

    def count(phase: str, info: dict[str, int]) -> None:
        passes.append(phase)

    gc.callbacks.append(count)
    try:
        rules = load_ruleset([ROOT / "examples" / "rules"])
    finally:
        gc.callbacks.remove(count)
    assert len(rules.triggers) >= 10
    assert passes.count("start") == 0
    assert gc.isenabled()
    gc.disable()
    try:
        load_ruleset([ROOT / "examples" / "rules"])
        assert not gc.isenabled()
    finally:
        gc.enable()


def _fresh_process(code: str) -> list[str]:
    """What `code` prints, run in a new interpreter: the first load of a process is the
    one that freezes, so it is tested where it is the first."""
    head = "import gc\nfrom tracerules.rules.compile import load_ruleset\n"
    head += f"RULES = [{str(ROOT / 'examples' / 'rules')!r}]\n"
    done = subprocess.run(
        [sys.executable, "-c", head + code], capture_output=True, text=True, check=True
    )
    return done.stdout.split()


def test_the_first_load_leaves_its_objects_frozen_and_the_next_releases_them() -> None:
    """Frozen, the rule set is skipped by the collector's full passes, the last of which ran
    as a short command exited (a tenth of a second); a reload unfreezes them, so the cycles
    of a replaced rule set are still freed, and leaves nothing frozen (issue 16)."""
    out = _fresh_process(
        "rules = load_ruleset(RULES)\n"
        "print(gc.get_freeze_count() > 10_000, gc.isenabled())\n"
        "rules = load_ruleset(RULES)\n"
        "print(gc.get_freeze_count(), gc.isenabled(), len(rules.triggers) >= 10)\n"
    )
    assert out == ["True", "True", "0", "True", "True"]


def test_loading_leaves_objects_someone_else_froze_frozen() -> None:
    """A server that froze its objects before forking keeps them frozen across loads, and
    the loads freeze nothing more of their own."""
    out = _fresh_process(
        "gc.freeze()\n"
        "frozen = gc.get_freeze_count()\n"
        "for _ in range(2):\n"
        "    load_ruleset(RULES)\n"
        "    print(frozen - 100 <= gc.get_freeze_count() <= frozen, gc.isenabled())\n"
    )
    assert out == ["True", "True", "True", "True"]
