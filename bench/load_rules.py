"""Loading and compiling 200 trigger files, and `tracerules --help` start-up.

Targets (issue 16): 200 trigger files load and compile in at most 1 s per process; `--help`
in at most 0.3 s. The same files are also checked by `tracerules validate`, the command a user
runs (the command line's own start-up and exit included), against the same 1 s. Each figure is
the median of several runs, in fresh processes so import time counts. Wall time is what a
user waits; the CPU time of the process (user + system) is printed beside it because it hardly
moves when other work shares the machine.

Python's bytecode is cached in a folder of this run (after one untimed warm-up), as a
pip-installed tracerules has it from its install. The same figures with no bytecode written
(PYTHONDONTWRITEBYTECODE, as in CI, where an editable install's modules are then compiled
from source on every run) are printed too.

    python bench/load_rules.py [--files 200] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import resource
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
    yaml.preserve_quotes = True  # `ra: "19:39:25.0"` in a flow mapping must stay quoted
    for registry in sorted((ROOT / "rules").glob("*.yaml")):  # topics.yaml, sites.yaml
        (folder / registry.name).write_text(registry.read_text())
    triggers = []
    for example in sorted((ROOT / "examples" / "rules").glob("*.yaml")):
        if (ROOT / "rules" / example.name).exists() or example.name.endswith(".test.yaml"):
            continue  # the registries, copied above, and the rule tests
        triggers += yaml.load(example.read_text()).get("triggers", [])
    for written in range(count):
        trigger = triggers[written % len(triggers)]
        trigger["id"] = f"n{written}-{str(trigger['id']).split('-', 1)[-1]}"
        with (folder / f"{written:03d}.yaml").open("w") as handle:
            yaml.dump({"schema_version": 1, "triggers": [trigger]}, handle)


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bytecode_env(cache: Path, *, cached: bool) -> dict[str, str]:
    """The environment of the timed processes: bytecode written to and read from `cache`
    (for every module, so after one warm-up run), or none written, as CI runs: the project's
    modules, with no bytecode beside them, are compiled from source every time."""
    env = dict(os.environ)
    if cached:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(cache)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def median_run(
    argv: list[str], runs: int, env: dict[str, str] | None = None
) -> tuple[float, float, list[str]]:
    """Median wall and CPU seconds of `argv` run `runs` times, and the output of each run."""
    walls, cpus, outs = [], [], []
    for _ in range(runs):
        cpu = _child_cpu()
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
        walls.append(time.perf_counter() - start)
        cpus.append(_child_cpu() - cpu)
        outs.append(done.stdout)
    return statistics.median(walls), statistics.median(cpus), outs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "rules"
        folder.mkdir()
        make_rules(folder, args.files)
        load = [sys.executable, "-c", LOAD, str(folder)]
        help_argv = [sys.executable, "-m", "tracerules.cli", "--help"]
        validate = [sys.executable, "-m", "tracerules.cli", "validate", str(folder)]
        floor, floor_cpu, _ = median_run([sys.executable, "-c", "pass"], args.runs)
        for cached in (True, False):
            env = bytecode_env(Path(tmp) / f"pycache-{cached}", cached=cached)
            if cached:  # the warm-up writes the bytecode
                median_run(load, 1, env)
                median_run(help_argv, 1, env)
                median_run(validate, 1, env)
            wall, cpu, outs = median_run(load, args.runs, env)
            validate_wall, validate_cpu, checked = median_run(validate, args.runs, env)
            inner = statistics.median(float(out.split()[0]) for out in outs)
            triggers = outs[-1].split()[1]
            help_wall, help_cpu, _ = median_run(help_argv, args.runs, env)
            how = "bytecode cached, as installed" if cached else "no bytecode written"
            print(
                f"load+compile {args.files} files ({triggers} triggers), {how}: {wall:.3f} s "
                f"per process (cpu {cpu:.3f} s, in-process {inner:.3f} s)  target <= 1 s"
            )
            print(
                f"tracerules validate, same files, {how}: {validate_wall:.3f} s "
                f"(cpu {validate_cpu:.3f} s; {checked[-1].strip()})  target <= 1 s"
            )
            print(
                f"tracerules --help, {how}: {help_wall:.3f} s (cpu {help_cpu:.3f} s)  "
                f"target <= 0.3 s (bare python start-up floor {floor:.3f} s, "
                f"cpu {floor_cpu:.3f} s; ratio {help_wall / floor:.1f})"
            )


if __name__ == "__main__":
    main()
