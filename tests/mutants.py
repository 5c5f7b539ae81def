"""Mutated rule files, and a runner that validates them where a crash cannot hide.

Shared by tests/test_hostile_rules.py (a small fixed sample) and bench/torture_input.py
(10,000). Each mutant is a real rule file with one to three mutations: byte noise, invalid
UTF-8 and control characters, cut or shuffled lines, deep nesting (flow, block, sequences,
parentheses), alias bombs and cycles, numbers no float holds, very long scalars.

The runner validates in forked children, a batch each: a child that dies by a signal is a
crash of the file it was on, one that stops answering is killed and its file counted as over
time, and the rest of the batch goes on in a new child.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import json
import os
import random
import re
import select
import signal
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
# Each seed rule file, with the topics file it is validated beside.
SEEDS = {
    "service": (DATA / "service_rules" / "service.yaml", DATA / "service_rules" / "topics.yaml"),
    "engine": (DATA / "rules" / "engine.yaml", DATA / "rules" / "topics.yaml"),
}
NOISE = [
    b"\xff",
    b"\xfe\xff",
    b"\x00",
    b"\x01",
    b"\x1b[0m",
    b"\t",
    b"\r",
    b":",
    b": ",
    b"- ",
    b"[",
    b"{",
    b"]",
    b"}",
    b"&a ",
    b"*a",
    b'"',
    b"'",
    b"|",
    b">",
    b"!!python/object:os.system ",
    b"%YAML 1.1\n",
    b"@",
    b"`",
    b"? ",
    b"<<: *a\n",
    b"\xe2\x80\xae",
    b"\xef\xbb\xbf",
    b"${env:",
    b"{{",
    b"#",
    b"\n---\n",
]


def _bomb(levels: int, width: int) -> bytes:
    lines = [b"b0: &b0 [" + b", ".join([b"lol"] * width) + b"]"]
    for i in range(1, levels):
        refs = b", ".join([b"*b%d" % (i - 1)] * width)
        lines.append(b"b%d: &b%d [%s]" % (i, i, refs))
    return b"\n".join(lines) + b"\n"


def _mutate(text: bytes, rng: random.Random) -> bytes:
    lines = text.split(b"\n")
    at = rng.randrange(len(text) + 1)
    op = rng.randrange(16)
    if op == 0:  # flip a byte
        if not text:
            return text
        i = rng.randrange(len(text))
        return text[:i] + bytes([rng.randrange(256)]) + text[i + 1 :]
    if op == 1:
        return text[:at] + rng.choice(NOISE) + text[at:]
    if op == 2:
        return text[:at]
    if op == 3:
        i = rng.randrange(len(lines))
        del lines[i]
    elif op == 4:
        i = rng.randrange(len(lines))
        lines.insert(i, lines[rng.randrange(len(lines))])
    elif op == 5:
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif op == 6:  # deep flow nesting, up to past libyaml's segfault
        n = rng.choice([100, 1_000, 10_000, 30_000, 40_000])
        return text[:at] + b"[" * n + text[at:]
    elif op == 7:  # deep block nesting
        n = rng.choice([70, 200, 800])
        block = b"".join(b" " * i + b"k%d:\n" % i for i in range(n))
        lines.insert(rng.randrange(len(lines)), block)
    elif op == 8:
        n = rng.choice([100, 5_000, 30_000])
        lines.insert(rng.randrange(len(lines)), b"x: " + b"- " * n + b"y")
    elif op == 9:  # an alias bomb at top level
        lines.insert(0, _bomb(rng.randint(5, 12), rng.randint(5, 12)))
    elif op == 10:
        lines.insert(1, b"cyc: &c [1, *c]" if rng.random() < 0.5 else b"m: &m {<<: *m}")
    elif op == 11:  # numbers no float or int conversion survives
        big = rng.choice([b"9" * 400, b"9" * 5000, b"1e999", b"-1e999", b".nan", b".inf"])
        numbered = [i for i, line in enumerate(lines) if re.search(rb"\d", line)] or [0]
        i = rng.choice(numbered)
        lines[i] = re.sub(rb"\d+(\.\d+)?", lambda _: big, lines[i], count=1)
    elif op == 12:  # deep parentheses in an expression
        n = rng.choice([50, 500, 5_000])
        cond = b"(" * n + b"1 < 2" + b")" * n
        for i, line in enumerate(lines):
            if b" < " in line or b" > " in line or b"==" in line:
                key = line.split(b":")[0]
                lines[i] = key + b': "' + cond + b'"'
                break
    elif op == 13:  # a very long scalar
        i = rng.randrange(len(lines))
        lines[i] = lines[i] + b"x" * rng.choice([1_000, 100_000, 2_000_000])
    elif op == 14:  # indentation shifted
        i = rng.randrange(len(lines))
        lines[i] = b" " * rng.randrange(1, 9) + lines[i]
    else:
        lines.insert(rng.randrange(len(lines)), b"*nowhere")
    return b"\n".join(lines)


def mutants(count: int, seed: int = 11, only: str | None = None) -> Iterator[tuple[str, bytes]]:
    """`count` mutated rule files (the seed's name, the bytes), the same for the same seed;
    with `only`, the first `count` of that seed's (the same files as in the whole sequence)."""
    rng = random.Random(seed)
    seeds = {name: rule.read_bytes() for name, (rule, _) in SEEDS.items()}
    made = 0
    while made < count:
        name = rng.choice(sorted(seeds))
        text = seeds[name]
        for _ in range(rng.choice([1, 1, 2, 3])):
            text = _mutate(text, rng)
        if only is None or name == only:
            made += 1
            yield name, text


def write_mutants(folder: Path, count: int, seed: int = 11, only: str | None = None) -> list[Path]:
    """The mutants as files named `m00042.<seed name>.yaml`, for `validate_file`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (name, text) in enumerate(mutants(count, seed, only)):
        path = folder / f"m{index:05d}.{name}.yaml"
        path.write_bytes(text)
        paths.append(path)
    return paths


def rule_set_of(path: Path) -> list[Path]:
    """A mutant with the topics file of its seed: the set `validate` is given."""
    return [path, SEEDS[path.name.split(".")[1]][1]]


@dataclass
class Outcome:
    index: int
    seconds: float = 0.0
    uncaught: str | None = None  # the exception validate let out, if any
    crashed: str | None = None  # the signal or timeout that ended the child
    errors: int = 0
    lineless: list[str] | None = None  # errors without a line
    codes: list[str] | None = None  # the first errors, as "E108@3:74"


def validate_file(path: Path) -> dict[str, Any]:
    """What `tracerules validate` does in-process, reduced to the figures."""
    from tracerules.errors import exception_tail
    from tracerules.rules.compile import compile_loaded
    from tracerules.rules.loader import load_paths

    warnings.simplefilter("ignore")  # ruamel warns about reused anchors on stderr
    started = time.perf_counter()
    out: dict[str, Any] = {}
    try:
        _, diagnostics = compile_loaded(load_paths(rule_set_of(path)))
        errors = [d for d in diagnostics if d.is_error]
        out["errors"] = len(errors)
        out["lineless"] = [f"{d.code} {d.message[:80]}" for d in errors if d.span.line < 1]
        out["codes"] = [f"{d.code}@{d.span.line}:{d.span.col}" for d in errors[:5]]
    except BaseException as err:  # counting what escapes is the point
        out["uncaught"] = exception_tail(err)[:200]
    out["seconds"] = time.perf_counter() - started
    return out


def run_forked(
    files: Sequence[Path],
    check: Callable[[Path], dict[str, Any]] = validate_file,
    batch: int = 100,
    timeout: float = 20.0,
) -> list[Outcome]:
    """`check` each file in forked children; crashes and hangs are outcomes, not the end."""
    outcomes: list[Outcome] = []
    pending = list(range(len(files)))
    while pending:
        todo, pending = pending[:batch], pending[batch:]
        while todo:
            done = _one_child(files, todo, check, timeout)
            outcomes += done
            todo = todo[len(done) :]
    return outcomes


def _one_child(
    files: Sequence[Path],
    todo: list[int],
    check: Callable[[Path], dict[str, Any]],
    timeout: float,
) -> list[Outcome]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one JSON line per file
        os.close(read_end)
        with os.fdopen(write_end, "w", buffering=1) as out:
            for index in todo:
                out.write(json.dumps({"index": index, **check(files[index])}) + "\n")
        os._exit(0)
    os.close(write_end)
    results: list[Outcome] = []
    buffer = b""
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while len(results) < len(todo):
            ready, _, _ = select.select([pipe], [], [], timeout)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                results.append(Outcome(todo[len(results)], timeout, crashed="over time"))
                break
            chunk = pipe.read(65536)
            if not chunk:  # the child died
                break
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                item = json.loads(line)
                results.append(Outcome(**item))
    _, status = os.waitpid(pid, 0)
    if len(results) < len(todo) and os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        if not (results and results[-1].crashed == "over time"):
            results.append(Outcome(todo[len(results)], crashed=sig))
    elif len(results) < len(todo) and not (results and results[-1].crashed):
        results.append(Outcome(todo[len(results)], crashed=f"exit {os.WEXITSTATUS(status)}"))
    return results
