"""Where the benchmarks find the shared corpus, and what they say when it is not there.

The corpus is not part of the project: it sits beside the checkout (../shared/corpus) on the
machines that have it. Every benchmark takes its paths as options, defaults to that place,
and stops with a message naming the missing path and the option that gives it, rather than a
FileNotFoundError from deep inside.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"  # ../shared/corpus, beside the checkout
ARCHIVE = CORPUS / "archives" / "gcn-voevents-2023-11.tar.bz2"  # a month of real traffic


def missing(path: Path, what: str, option: str) -> NoReturn:
    raise SystemExit(
        f"error: {what} is missing: {path} does not exist.\n"
        f"  Give its place with {option} (it comes with the shared corpus, by default "
        f"{CORPUS}), or run the benchmark on a machine that has the corpus."
    )


def require(path: Path, what: str, option: str) -> Path:
    """`path` if it exists; otherwise stop with a message that says what is missing."""
    if not path.exists():
        missing(path, what, option)
    return path


def require_corpus(corpus: Path, option: str) -> Path:
    """A corpus folder with its MANIFEST.tsv."""
    require(corpus, "the shared corpus", option)
    require(corpus / "MANIFEST.tsv", "the corpus manifest", option)
    return corpus


def require_archive(archive: Path, option: str = "--archive PATH") -> Path:
    return require(archive, "the month archive (gcn-voevents-2023-11.tar.bz2)", option)
