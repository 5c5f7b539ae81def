"""Benchmarks find the shared corpus through options, never a hard-coded absolute path, and
say what is missing instead of raising FileNotFoundError (issue 16, item 17). Each script is
run as a user would, pointed at a place that does not exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"

CASES = [
    ("dry_run.py", ["--archive", "{missing}"], "--archive"),
    ("engine.py", ["--archive", "{missing}"], "--archive"),
    ("latency.py", ["--archive", "{missing}"], "--archive"),
    ("products.py", ["{missing}"], "CORPUS_DIR"),
    ("skymap_maths.py", ["{missing}"], "CORPUS_DIR"),
    ("healpix.py", ["--corpus", "{missing}"], "--corpus"),
    ("check_example_fields.py", ["--corpus", "{missing}"], "--corpus"),
    ("topic_inference_check.py", ["--corpus", "{missing}"], "--corpus"),
]


@pytest.mark.parametrize(("script", "args", "option"), CASES, ids=[c[0] for c in CASES])
def test_a_missing_corpus_is_named_not_a_traceback(
    tmp_path: Path, script: str, args: list[str], option: str
) -> None:
    missing = tmp_path / "no-shared-here"
    argv = [a.format(missing=missing) for a in args]
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "FileNotFoundError" not in done.stderr, done.stderr
    assert "is missing" in done.stderr and str(missing) in done.stderr, done.stderr
    assert option in done.stderr


def test_no_benchmark_hard_codes_an_absolute_path() -> None:
    absolute = re.compile(r"""["'](/work|/home|/tmp|/Users)/""")
    for script in sorted(BENCH.glob("*.py")):
        found = absolute.findall(script.read_text())
        assert not found, f"{script.name} hard-codes {found}"
