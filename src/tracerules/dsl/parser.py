"""Text to AST. The only module that sees Lark trees; they never leave it."""

from __future__ import annotations

import re
import sys
from functools import cache, lru_cache
from typing import Any, Protocol

from tracerules.dsl import ast
from tracerules.dsl._lalr import (
    Lark_StandAlone,
    Token,
    Transformer,
    Tree,
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
)
from tracerules.dsl.standalone import GRAMMAR, OPTIONS
from tracerules.dsl.values import ALL_UNITS, Vote, unit_type
from tracerules.errors import DslError

_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "b": "\b",
    "f": "\f",
    "/": "/",
    "\\": "\\",
    '"': '"',
    "'": "'",
}
_ESCAPE_RE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)

# Friendlier names for Lark's terminals in "expected ..." hints.
_TOKEN_NAMES = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "COMP_OP": "a comparison",
    "ADD_OP": "'+' or '-'",
    "MUL_OP": "'*', '/' or '%'",
    "MINUS": "'-'",
    "THEN": "'then'",
    "END": "'end'",
    "WHEN": "'when'",
    "ELSE": "'else'",
    "$END": "the end of the expression",
}


def grammar_text() -> str:
    return GRAMMAR.read_text(encoding="utf-8")


class Parser(Protocol):
    terminals: Any

    def parse(self, text: str) -> Any: ...


@cache
def _lark(strict: bool = False) -> Parser:
    """The LALR parser, with the AST transformer inside it. At run time: the stand-alone
    one generated from the grammar (dsl/standalone.py), which needs no Lark import. Strict
    mode, where Lark turns conflicts and terminal collisions into errors, runs in the test
    suite, on Lark itself and the same grammar and options."""
    if not strict:
        parser: Parser = Lark_StandAlone(transformer=_ToAst())  # type: ignore[no-untyped-call]
        return parser
    from lark import Lark

    strict_parser: Parser = Lark(grammar_text(), strict=True, transformer=_ToAst(), **OPTIONS)
    return strict_parser


def build_parser(strict: bool = False) -> Parser:
    return _lark(strict)


def _unescape(body: str) -> str:
    def repl(match: re.Match[str]) -> str:
        esc = match.group(1)
        if esc[0] == "u" and len(esc) == 5:
            return chr(int(esc[1:], 16))
        # Unknown escapes stay as written, so regexes like "\d+" read naturally.
        return _ESCAPES.get(esc, "\\" + esc)

    return _ESCAPE_RE.sub(repl, body)


# Tokens that carry meaning; the rest (keywords, brackets) only mark where a node starts.
_MEANINGFUL = frozenset({"NAME", "NUMBER", "STRING", "COMP_OP", "ADD_OP", "MUL_OP"})


def _extent(item: Any) -> tuple[int, int, int, int] | None:
    """(line, col, end line, end col) of a token, a node or a tuple of nodes. Tokens are the
    only text among a rule's children (whichever Lark made them: stand-alone or strict)."""
    if isinstance(item, str):
        tok: Any = item
        return (tok.line or 1, tok.column or 1, tok.end_line or 1, tok.end_column or 1)
    pos = getattr(item, "pos", None)
    if isinstance(pos, ast.Pos) and pos is not ast.NOWHERE:
        return (pos.line, pos.col, pos.line, pos.col + pos.length)
    if isinstance(item, tuple):
        marks = [m for m in map(_extent, item) if m]
        return (marks[0][0], marks[0][1], marks[-1][2], marks[-1][3]) if marks else None
    return None


def _span(children: list[Any]) -> ast.Pos:
    marks = [m for m in map(_extent, children) if m]
    if not marks:
        return ast.NOWHERE
    (line, col, _, _), (_, _, end_line, end_col) = marks[0], marks[-1]
    return ast.Pos(line, col, max(end_col - col, 1) if end_line == line else 1)


def _values(children: list[Any]) -> list[Any]:
    """The children that carry meaning: nodes, tuples and meaningful tokens."""
    return [c for c in children if c is not None and (not isinstance(c, str) or _meaningful(c))]


def _meaningful(token: Any) -> bool:
    return token.type in _MEANINGFUL


def _tok_pos(tok: Token) -> ast.Pos:
    return ast.Pos(tok.line or 1, tok.column or 1, len(tok))


MAX_NUMBER_CHARS = 100  # a literal longer than this is no measurement, and int() refuses 4,300
MAX_NESTING = 100  # brackets deep; the compiler recurses once per level


def _parse_number(tok: Token) -> int | float:
    text = str(tok)
    value: int | float
    if len(text) <= MAX_NUMBER_CHARS:
        if text.lower().startswith("0x"):
            value = int(text, 16)
        elif re.fullmatch(r"\d+", text):
            value = int(text)
        else:
            value = float(text)
        if abs(value) <= sys.float_info.max:  # also compared and scaled as a float
            return value
    raise DslError(
        "E206",
        "this number is too large",
        tok.line or 1,
        tok.column or 1,
        len(text),
        hint=f"numbers must be finite and under {sys.float_info.max:.1e}",
    )


def _too_deep(text: str) -> DslError | None:
    depth, line, col = 0, 1, 0
    for char in text:
        col += 1
        if char == "\n":
            line, col = line + 1, 0
        depth += (char in "([") - (char in ")]")
        if depth > MAX_NESTING:
            return DslError(
                "E206",
                f"brackets nested deeper than {MAX_NESTING} levels",
                line,
                col,
                1,
                hint="split the expression into named conditions",
            )
    return None


class _ToAst(Transformer[Token, ast.Expr]):
    """Runs inside the LALR parser (no parse tree is built); positions come from tokens."""

    def number(self, c: list[Token]) -> ast.Num:
        return ast.Num(_parse_number(c[0]), None, _span(c))

    def quantity(self, c: list[Token]) -> ast.Num:
        number, unit = c
        if unit_type(str(unit)) is None:
            raise DslError(
                "E203",
                f"unknown unit '{unit}'",
                unit.line or 1,
                unit.column or 1,
                len(unit),
                hint="units are " + ", ".join(ALL_UNITS),
            )
        return ast.Num(_parse_number(number), str(unit), _span(c))

    def string(self, c: list[Token]) -> ast.Str:
        return ast.Str(_unescape(str(c[0])[1:-1]), _span(c))

    def true(self, c: list[Any]) -> ast.Bool:
        return ast.Bool(True, _span(c))

    def false(self, c: list[Any]) -> ast.Bool:
        return ast.Bool(False, _span(c))

    def vote_pass(self, c: list[Any]) -> ast.VoteLit:
        return ast.VoteLit(Vote.PASS, _span(c))

    def vote_maybe(self, c: list[Any]) -> ast.VoteLit:
        return ast.VoteLit(Vote.MAYBE, _span(c))

    def vote_fail(self, c: list[Any]) -> ast.VoteLit:
        return ast.VoteLit(Vote.FAIL, _span(c))

    def vote_unknown(self, c: list[Any]) -> ast.VoteLit:
        return ast.VoteLit(Vote.UNKNOWN, _span(c))

    def name(self, c: list[Token]) -> ast.Name:
        return ast.Name(str(c[0]), _tok_pos(c[0]))

    def atom(self, c: list[Any]) -> Any:
        return _values(c)[0]  # a parenthesised expression: the brackets add nothing

    def arglist(self, c: list[Any]) -> tuple[ast.Expr, ...]:
        return tuple(_values(c))

    def call(self, c: list[Any]) -> ast.Call:
        func, *args = _values(c)
        return ast.Call(str(func), args[0] if args else (), _span(c))

    def list_(self, c: list[Any]) -> ast.ListExpr:
        items = _values(c)
        return ast.ListExpr(items[0] if items else (), _span(c))

    def neg(self, c: list[Any]) -> ast.Expr:
        sign, operand = _values(c)
        return ast.Neg(operand, _span(c)) if sign == "-" else operand

    def binop(self, c: list[Any]) -> ast.BinOp:
        left, op, right = _values(c)
        return ast.BinOp(str(op), left, right, _span(c))

    def pow(self, c: list[Any]) -> ast.BinOp:
        left, right = _values(c)
        return ast.BinOp("**", left, right, _span(c))

    def bitand_op(self, c: list[Any]) -> ast.BinOp:
        left, right = _values(c)
        return ast.BinOp("&", left, right, _span(c))

    def compare(self, c: list[Any]) -> ast.Compare:
        parts = _values(c)
        return ast.Compare(tuple(parts[0::2]), tuple(str(t) for t in parts[1::2]), _span(c))

    def in_(self, c: list[Any]) -> ast.In:
        item, box = _values(c)
        return ast.In(item, box, False, _span(c))

    def not_in(self, c: list[Any]) -> ast.In:
        item, box = _values(c)
        return ast.In(item, box, True, _span(c))

    def and_(self, c: list[Any]) -> ast.Logic:
        return ast.Logic("and", tuple(_values(c)), _span(c))

    def or_(self, c: list[Any]) -> ast.Logic:
        return ast.Logic("or", tuple(_values(c)), _span(c))

    def not_(self, c: list[Any]) -> ast.Not:
        return ast.Not(_values(c)[0], _span(c))

    def when(self, c: list[Any]) -> tuple[ast.Expr, ast.Expr]:
        cond, value = _values(c)
        return (cond, value)

    def case(self, c: list[Any]) -> ast.Case:
        whens = [v for v in c if isinstance(v, tuple)]
        rest = [v for v in _values(c) if not isinstance(v, tuple)]
        return ast.Case(tuple(whens), rest[0] if rest else None, _span(c))


@cache
def _terminal_texts() -> dict[str, str]:
    """Terminal name -> how a person would write it ('**' rather than __ANON_0)."""
    texts = dict(_TOKEN_NAMES)
    for term in _lark().terminals:
        if term.name not in texts and term.pattern.type == "str":
            texts[term.name] = f"'{term.pattern.value}'"
    return texts


def _expected(err: UnexpectedInput) -> str | None:
    texts = _terminal_texts()
    names = sorted({texts.get(t, t.lower()) for t in getattr(err, "expected", ()) or ()})
    if not names:
        return None
    listed = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
    return f"expected {listed}"


def _syntax_error(text: str, err: UnexpectedInput) -> DslError:
    line, col = err.line if err.line > 0 else 1, err.column if err.column > 0 else 1
    if isinstance(err, UnexpectedEOF) or (
        isinstance(err, UnexpectedToken) and err.token.type == "$END"
    ):
        last = text.rstrip().splitlines() or [""]
        return DslError(
            "E201",
            "the expression ends too early",
            len(last),
            len(last[-1]) + 1,
            hint=_expected(err),
        )
    if isinstance(err, UnexpectedCharacters):
        char = text.splitlines()[line - 1][col - 1] if text else ""
        hint = "strings are quoted with \" or '; '=' is written '=='" if char in "=`" else None
        return DslError("E201", f"unexpected character {char!r}", line, col, 1, hint=hint)
    token = err.token if isinstance(err, UnexpectedToken) else None
    shown = str(token) if token is not None else "input"
    return DslError(
        "E201", f"unexpected {shown!r}", line, col, max(len(shown), 1), hint=_expected(err)
    )


def parse(text: str) -> ast.Expr:
    """Parse one expression; raise DslError positioned within `text`.

    Trees are immutable (frozen nodes, positions relative to the text), so one text is
    parsed once per process: rule sets repeat the same conditions across triggers.
    """
    return _parse_once(text)


@lru_cache(maxsize=8192)
def _parse_once(text: str) -> ast.Expr:
    deep = _too_deep(text)
    if deep is not None:
        raise deep
    try:
        result: Any = _lark().parse(text)  # the transformer inside the parser gives an AST
    except UnexpectedInput as err:
        raise _syntax_error(text, err) from None
    assert not isinstance(result, Tree), "the parser runs without its transformer"
    expr: ast.Expr = result
    return expr
