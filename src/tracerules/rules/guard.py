"""Bounds on what a rule file may be, checked before any YAML parser sees it.

A hostile or broken rule file must get a diagnostic at file:line:col, never a crash: libyaml
(ruamel's C parser) segfaults on nesting some 30,000 levels deep, the pure parser raises
RecursionError far earlier, a few kB of aliases expand into billions of nodes for everything
that walks the tree afterwards, and bytes that are not UTF-8 or not printable make the reader
raise. So the text is screened first, in one linear pass: size, encoding, printable
characters, nesting depth and alias count; after the fast parse, the tree's expanded size
and any alias cycle are measured on the shared nodes before anything walks it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

from tracerules.errors import Diagnostic, Span, exception_tail

T = TypeVar("T")

# The largest real rule files are some 20 kB; the pure-Python parser that positions errors
# takes about half a second on 256 kB.
MAX_BYTES: Final = 256 * 1024
MAX_DEPTH: Final = 64  # real rule files nest under 12 levels
MAX_ALIASES: Final = 256  # anchors are for sharing a few blocks, not thousands
MAX_NODES: Final = 200_000  # every node, with each alias counted as the copy it stands for

# YAML's printable characters (YAML 1.2, 5.1): anything else makes the reader raise.
_NOT_PRINTABLE: Final = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_ALIAS: Final = re.compile(r"(?:^|[\s\[\{,:])\*[^\s\[\]\{\},]+")
_BLOCK_SCALAR: Final = re.compile(r"(?:^|[\s:-])[|>][-+0-9]*\s*(?:#.*)?$")
_QUOTED: Final = re.compile(r"\"(?:[^\"\\]|\\.)*\"?|'(?:[^']|'')*'?")
_COMMENT: Final = re.compile(r"(?:^|\s)#.*$")
_INDICATORS: Final = re.compile(r"(?:[-?]\s+)+")
_BRACKETS: Final = re.compile(r"[\[\]{}]")
_LINE_INDENT: Final = re.compile(r"^ *(?=[^ \n])", re.MULTILINE)
_LINE_INDICATORS: Final = re.compile(r"^ *((?:[-?][^\S\n]+)+)", re.MULTILINE)
_TWO_INDICATORS: Final = re.compile(r"[-?][^\S\n]+[-?][^\S\n]")  # as `- - `: on any line
_BRACKET_CHARS: Final = ("[", "]", "{", "}")


def _at(path: str, text: str, index: int) -> Span:
    """The 1-based line and column of a character offset."""
    line = text.count("\n", 0, index) + 1
    col = index - (text.rfind("\n", 0, index) + 1) + 1
    return Span(path, line, col)


def read_screened(path: Path, diagnostics: list[Diagnostic]) -> str | None:
    """The text of a rule file, or None with a diagnostic (at a line) saying why not."""
    name = str(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as err:
        reason = err.strerror or str(err)
        diagnostics.append(
            Diagnostic("E105", f"cannot read the file: {reason}", Span(name, 1, 1), "check it")
        )
        return None
    if len(raw) > MAX_BYTES:
        diagnostics.append(
            Diagnostic(
                "E107",
                f"the file is over {MAX_BYTES // 1024} kB",
                Span(name, 1, 1),
                "split the rules into several files",
            )
        )
        return None
    text = _decoded(name, raw, diagnostics)
    if text is None:
        return None
    problem = next(screen(name, text), None)
    if problem is not None:
        diagnostics.append(problem)
        return None
    return text


def _decoded(name: str, raw: bytes, diagnostics: list[Diagnostic]) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        good = raw[: err.start].decode("utf-8")
        span = _at(name, good + "?", len(good))
        diagnostics.append(
            Diagnostic(
                "E105",
                f"not UTF-8: byte 0x{raw[err.start]:02x} cannot start or continue a character",
                span,
                "save the file as UTF-8",
            )
        )
        return None


def screen(name: str, text: str) -> Iterator[Diagnostic]:
    """The first problem that would make a YAML parser crash or stall, if any."""
    bad = _NOT_PRINTABLE.search(text)
    if bad is not None:
        code = ord(bad.group())
        yield Diagnostic(
            "E105",
            f"the character U+{code:04X} is not allowed in YAML",
            _at(name, text, bad.start()),
            "remove it (control characters and byte-order marks inside the text are refused)",
        )
        return
    if not _could_be_too_deep(text) and text.count("*") <= MAX_ALIASES:
        return  # the line-by-line count below cannot find anything
    yield from _structure(name, text)


def _could_be_too_deep(text: str) -> bool:
    """Whether nesting might pass MAX_DEPTH, from an upper bound found by C-speed scans.

    A line's depth is its open block levels, each at its own indentation, so no more than
    the distinct indentations in the file; plus its `- ` and `? ` indicators; plus the open
    brackets, no more than all of them. Real rule files stay far below: the exact count is
    only needed for files that come close (a tenth of the load time otherwise).

    Counting the distinct indentations and the indicators line by line was itself half the
    time spent reading a file (issue 16), so cruder bounds come first: no two indicators in
    a row anywhere means at most one per line, and no line indented by `budget` spaces
    means fewer than `budget` distinct indentations. Only a file they cannot clear is
    counted line by line."""
    brackets = text.count("[") + text.count("{")
    indicators = 1 if _TWO_INDICATORS.search(text) is None else _most_indicators(text)
    budget = MAX_DEPTH - brackets - indicators  # what the distinct indentations may take
    if budget > 0 and not _indented_by(text, budget):
        return False
    indents = len(set(_LINE_INDENT.findall(text)))
    return indents + indicators + brackets > MAX_DEPTH


def _most_indicators(text: str) -> int:
    """The most `- ` and `? ` indicators that open one line."""
    return max((len(run.split()) for run in _LINE_INDICATORS.findall(text)), default=0)


def _indented_by(text: str, spaces: int) -> bool:
    """Whether any line starts with `spaces` spaces (or more)."""
    indent = " " * spaces
    return text.startswith(indent) or "\n" + indent in text


def _structure(name: str, text: str) -> Iterator[Diagnostic]:
    """Nesting depth and alias count, from indentation, indicators and brackets."""
    indents: list[int] = []  # the block indentation of each open level
    flow = 0  # open [ and { (may span lines)
    aliases = 0
    scalar_above: int | None = None  # inside a | or > block scalar indented past this
    offset = 0
    for line in text.split("\n"):
        start, offset = offset, offset + len(line) + 1
        content = line.lstrip(" ")
        indent = len(line) - len(content)
        if scalar_above is not None and (not content.strip() or indent > scalar_above):
            continue
        scalar_above = None
        bare = _COMMENT.sub("", _QUOTED.sub('""', content)).rstrip()
        if not bare or bare.startswith(("%", "---", "...")):
            continue
        if flow == 0:
            while indents and indents[-1] >= indent:
                indents.pop()
            indents.append(indent)
        prefix = _INDICATORS.match(bare)
        depth = len(indents) + (len(prefix.group().split()) if prefix else 0)
        too_deep, flow = _flow_scan(bare, depth, flow)
        if too_deep is not None:
            yield Diagnostic(
                "E108",
                f"nesting deeper than {MAX_DEPTH} levels",
                _at(name, text, start + indent + too_deep),
                "flatten the structure; rule files need only a few levels",
            )
            return
        if _BLOCK_SCALAR.search(bare):
            scalar_above = indent
        found = _ALIAS.findall(bare)
        aliases += len(found)
        if aliases > MAX_ALIASES:
            yield Diagnostic(
                "E109",
                f"more than {MAX_ALIASES} aliases (*name)",
                Span(name, text.count("\n", 0, start) + 1, indent + 1),
                "write the shared blocks out, or use fewer anchors",
            )
            return


def _flow_scan(bare: str, depth: int, flow: int) -> tuple[int | None, int]:
    """Where in a line block depth plus open brackets first pass MAX_DEPTH (None if they
    do not), and the brackets open after it. Only brackets change the level, so only they
    and the first character are looked at: a character loop was a tenth of the load time."""
    if bare[:1] not in _BRACKET_CHARS and depth + flow > MAX_DEPTH:
        return 0, flow
    for found in _BRACKETS.finditer(bare):
        opens = found.group() in "[{"
        flow += 1 if opens else -(flow > 0)
        if depth + flow > MAX_DEPTH:
            return found.start(), flow
    return None, flow


def expansion(name: str, text: str, data: Any) -> Diagnostic | None:
    """An alias cycle, or a tree that expands past MAX_NODES, in what the parser returned.

    Aliases make shared nodes, not copies, so counting with a memo per node is linear in the
    file; anything that walks the tree naively would see every copy. Without a `*` there is
    no alias, so no cycle, and every value takes two characters of the file at least: no
    more than MAX_BYTES / 2 of them, under MAX_NODES."""
    if "*" not in text:
        return None
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Any) -> int:
        if not isinstance(node, dict | list):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise _CycleError
        open_nodes.add(key)
        children = node.values() if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_NODES:
                break
        open_nodes.discard(key)
        sizes[key] = total
        return total

    where = _first_alias(name, text)
    try:
        total = size(data)
    except _CycleError:
        return Diagnostic("E109", "an alias refers to a node that contains it", where)
    except RecursionError:  # the screen bounds depth, so only a deep cycle gets here
        return Diagnostic("E108", f"nesting deeper than {MAX_DEPTH} levels", where)
    if total > MAX_NODES:
        return Diagnostic(
            "E109",
            f"aliases expand the file to over {MAX_NODES:,} values",
            where,
            "an alias copies its anchor's whole block: do not nest aliases of aliases",
        )
    return None


class _CycleError(Exception):
    pass


def _first_alias(name: str, text: str) -> Span:
    found = re.search(r"\*[^\s\[\]\{\},]+", text)
    return _at(name, text, found.start()) if found else Span(name, 1, 1)


def never_raising(load: Callable[[Path, Any], T | None], path: Path, result: Any) -> T | None:
    """`load(path, result)`; an exception the checks did not foresee becomes a diagnostic at
    the file instead of a traceback (validate) or a dead reload thread (the service)."""
    try:
        return load(path, result)
    except (Exception, RecursionError) as err:
        result.diagnostics.append(
            Diagnostic(
                "E100",
                f"this file could not be checked: {exception_tail(err)[:250]}",
                Span(str(path), 1, 1),
                "simplify the file; please report it as a tracerules bug",
            )
        )
        return None


def empty_set(triggers: int, paths: Sequence[str | Path]) -> Diagnostic | None:
    """A rule set without a trigger acts on nothing: after a deletion or a bad checkout it is
    refused unless the operator asked for it (--allow-empty)."""
    if triggers:
        return None
    where = ", ".join(str(p) for p in paths) or "."
    return Diagnostic(
        "E110",
        "the rules hold no trigger: the service would act on nothing",
        Span(where, 1, 1),
        "restore the rule files, or pass --allow-empty if no trigger is what you want",
    )
