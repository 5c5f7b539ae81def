"""The whole issue-11 torture run: hostile input, then operations (both on loopback only).

Runs bench/torture_input.py (poison payloads on every topic and the heartbeat, mutated rule
files through validate and a live reload) and bench/torture_ops.py (secret shapes, a failing
destination, kill -9 during actions) one after the other, each in its own process so one
crashing harness cannot hide the other's figures, and exits non-zero if either missed a
target.

    python bench/torture.py [--input-args "--count 2000"] [--ops-args "--trials 5"]
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PARTS = ("torture_input.py", "torture_ops.py")


def run_part(script: str, extra: list[str]) -> int:
    print(f"\n===== {script} {' '.join(extra)}".rstrip(), flush=True)
    started = time.monotonic()
    code = subprocess.call([sys.executable, str(BENCH / script), *extra])
    print(f"===== {script}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-args", default="", help="options for torture_input.py")
    parser.add_argument("--ops-args", default="", help="options for torture_ops.py")
    args = parser.parse_args()
    extras = {PARTS[0]: shlex.split(args.input_args), PARTS[1]: shlex.split(args.ops_args)}
    codes = {script: run_part(script, extras[script]) for script in PARTS}
    print(
        "\n"
        + "  ".join(f"{name}: {'met' if code == 0 else 'MISSED'}" for name, code in codes.items())
    )
    return 0 if all(code == 0 for code in codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
