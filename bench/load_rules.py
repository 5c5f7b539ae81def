"""Loading and compiling 200 trigger files, and `tracerules --help` start-up.

Targets (issue 2): 200 trigger files load and compile in under 2 s; `--help` under 0.5 s.
Each figure is the median of several runs, in fresh processes so import time counts.

    python bench/load_rules.py [--files 200] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LOAD = """
import sys, time
t0 = time.perf_counter()
from tracerules.rules.compile import load_ruleset
rules = load_ruleset([sys.argv[1]])
print(time.perf_counter() - t0, len(rules.triggers))
"""


def make_rules(folder: Path, count: int) -> None:
    """`count` files of one trigger each: the example triggers, round robin, under new ids."""
    from ruamel.yaml import YAML

    yaml = YAML()
    (folder / "topics.yaml").write_text((ROOT / "rules" / "topics.yaml").read_text())
    triggers = []
    for example in sorted((ROOT / "examples" / "rules").glob("*.yaml")):
        if example.name != "topics.yaml" and not example.name.endswith(".test.yaml"):
            triggers += yaml.load(example.read_text()).get("triggers", [])
    for written in range(count):
        trigger = triggers[written % len(triggers)]
        trigger["id"] = f"n{written}-{str(trigger['id']).split('-', 1)[-1]}"
        with (folder / f"{written:03d}.yaml").open("w") as handle:
            yaml.dump({"schema_version": 1, "triggers": [trigger]}, handle)


def median_run(argv: list[str], runs: int) -> tuple[float, str]:
    times, out = [], ""
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - start)
        out = done.stdout
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_rules(folder, args.files)
        floor, _ = median_run([sys.executable, "-c", "pass"], args.runs)
        wall, out = median_run([sys.executable, "-c", LOAD, str(folder)], args.runs)
        inner, triggers = out.split()
        help_wall, _ = median_run([sys.executable, "-m", "tracerules.cli", "--help"], args.runs)
    print(
        f"load+compile {args.files} files ({triggers} triggers): "
        f"{wall:.3f} s per process (in-process {float(inner):.3f} s)  target < 2 s"
    )
    print(
        f"tracerules --help: {help_wall:.3f} s  target < 0.5 s "
        f"(bare python start-up floor {floor:.3f} s, ratio {help_wall / floor:.1f})"
    )


if __name__ == "__main__":
    main()
