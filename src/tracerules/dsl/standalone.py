"""Writes `dsl/_lalr.py`: the expression grammar's LALR parser, stand-alone.

The parser the rules load with is generated from `grammar.lark` by Lark's stand-alone tool:
its tables plus the few classes that run them, in one module. Importing Lark itself (its
grammar loader, the regex-collision checker it brings, tempfile, logging, pickle) cost more
than the hundred-odd expressions of a rule set take to parse (issue 16: load time). Lark, in
strict mode, still checks the grammar in the test suite, where a test also fails when
`grammar.lark` changed and `_lalr.py` was not written again:

    python -m tracerules.dsl.standalone
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

HERE = Path(__file__).parent
GRAMMAR = HERE / "grammar.lark"
OUT = HERE / "_lalr.py"
# The parser's options; the strict parser of the test suite uses the same.
OPTIONS: dict[str, object] = {
    "parser": "lalr",
    "lexer": "basic",  # no token depends on context; one lexer, checked once
    "maybe_placeholders": True,
    "keep_all_tokens": True,
}


def grammar_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def generate() -> str:
    """The text of `_lalr.py`, for the grammar as it is now."""
    from lark import Lark
    from lark.tools.standalone import gen_standalone

    text = GRAMMAR.read_text(encoding="utf-8")
    out = io.StringIO()
    out.write(
        "# Written by `python -m tracerules.dsl.standalone` from grammar.lark: do not edit.\n"
    )
    # Tables compressed: a third less text for Python to compile where no bytecode is kept.
    gen_standalone(Lark(text, **OPTIONS), out=out, compress=True)  # type: ignore[no-untyped-call]
    out.write(f"\nGRAMMAR_SHA256 = {grammar_digest(text)!r}\n")
    return out.getvalue()


if __name__ == "__main__":
    OUT.write_text(generate(), encoding="utf-8")
    print(f"wrote {OUT}")
