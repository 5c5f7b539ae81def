"""Does the packaging change a decision? The month archive replayed five ways, compared.

Replays ../shared/corpus/archives/gcn-voevents-2023-11.tar.bz2 with the example rules as the
tar itself, as the folder it unpacks to, as a tar of that folder with its members in reversed
order, as an NDJSON export (newest line first) and as the store of the folder replay; then
compares the decisions notice by notice (payload hash, trigger, event, conclusion, in
evaluation order) with the folder's. Prints the number of differing decisions per packaging,
which must be 0, and how many notices shared their time with another (what the tie-break
decides). Exit status 1 if any decision differs.

    python bench/order_check.py [--archive PATH] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from shared_data import ARCHIVE, require_archive

from tracerules.rules.compile import RuleSet, load_ruleset
from tracerules.runtime.engine.replay import replay
from tracerules.runtime.sources.files import Skipped, iter_notices
from tracerules.runtime.store.history import iter_decisions

ROOT = Path(__file__).resolve().parents[1]
Decided = list[tuple[str, str, str | None, str]]


def unpack(archive: Path, folder: Path, limit: int | None) -> list[Path]:
    """The archive's files written to `folder` (the first `limit` only, if given)."""
    files = []
    with tarfile.open(archive, "r|*") as tar:
        for member in tar:
            if limit is not None and len(files) >= limit:
                break
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is None:
                continue
            path = folder / member.name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(handle.read())
            files.append(path)
    return files


def tar_of(folder: Path, files: list[Path], out: Path) -> Path:
    """A tar of `files`, its members in the order given."""
    with tarfile.open(out, "w") as tar:
        for path in files:
            tar.add(path, arcname=str(path.relative_to(folder)))
    return out


def ndjson_export(folder: Path, out: Path) -> Path:
    lines = [
        json.dumps({"topic": n.topic, "payload": n.payload.decode("utf-8", "replace")})
        for n in iter_notices([folder])
    ]
    out.write_text("".join(line + "\n" for line in reversed(lines)))
    return out


def decide(rules: RuleSet, source: Path, store: Path) -> Decided:
    result = replay(rules, iter_notices([source], skipped=Skipped()), store_path=store)
    try:
        decided = []
        for decision in iter_decisions(result.store):
            row = result.store.notice(decision.notice_id or -1)
            sha = row["sha256"] if row is not None else "-"
            decided.append((sha, decision.trigger, decision.event_id, decision.conclusion.value))
        return decided
    finally:
        result.close()


def differing(first: Decided, second: Decided) -> int:
    """Decisions that are not the same at the same place, plus those only one side has."""
    return sum(a != b for a, b in zip(first, second, strict=False)) + abs(len(first) - len(second))


def tied_notices(folder: Path) -> int:
    times = Counter(n.received for n in iter_notices([folder]))
    return sum(count for count in times.values() if count > 1)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    parser.add_argument("--rules", type=Path, default=ROOT / "examples" / "rules")
    parser.add_argument("--limit", type=int, default=None, help="only the first N files")
    args = parser.parse_args(list(argv) if argv is not None else None)
    archive = require_archive(args.archive)
    rules = load_ruleset([args.rules])
    with tempfile.TemporaryDirectory(prefix="tracerules-order-") as tmp_name:
        tmp = Path(tmp_name)
        folder = tmp / "folder"
        files = unpack(archive, folder, args.limit)
        source = archive if args.limit is None else tar_of(folder, files, tmp / "first.tar")
        print(f"{len(files)} files, {tied_notices(folder)} notices share their time with another")
        start = time.perf_counter()
        by_folder = decide(rules, folder, tmp / "folder.sqlite")
        print(f"folder: {len(by_folder)} decisions in {time.perf_counter() - start:.1f} s")
        packagings = {
            "tar": source,
            "reversed tar": tar_of(folder, files[::-1], tmp / "reversed.tar"),
            "ndjson export": ndjson_export(folder, tmp / "export.ndjson"),
            "store": tmp / "folder.sqlite",
        }
        total = 0
        for name, path in packagings.items():
            start = time.perf_counter()
            decided = decide(rules, path, tmp / f"{name.replace(' ', '-')}.sqlite")
            count = differing(by_folder, decided)
            total += count
            print(
                f"{name}: {len(decided)} decisions in {time.perf_counter() - start:.1f} s, "
                f"{count} differ from the folder's"
            )
    print(f"differing decisions: {total}")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
