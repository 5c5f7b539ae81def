"""Text to AST. The only module that sees Lark trees; they never leave it."""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from tracerules.dsl import ast
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
    return (files("tracerules.dsl") / "grammar.lark").read_text(encoding="utf-8")


@cache
def _lark(strict: bool = False) -> Lark:
    # Strict mode (collision checks) runs in the test suite; at run time the checked grammar
    # is built without it, and cached to disk by Lark, to keep start-up short.
    return Lark(
        grammar_text(),
        parser="lalr",
        propagate_positions=True,
        strict=strict,
        cache=not strict,
        maybe_placeholders=True,
    )


def build_parser(strict: bool = False) -> Lark:
    return _lark(strict)


def _unescape(body: str) -> str:
    def repl(match: re.Match[str]) -> str:
        esc = match.group(1)
        if esc[0] == "u" and len(esc) == 5:
            return chr(int(esc[1:], 16))
        # Unknown escapes stay as written, so regexes like "\d+" read naturally.
        return _ESCAPES.get(esc, "\\" + esc)

    return _ESCAPE_RE.sub(repl, body)


def _pos(meta: Any) -> ast.Pos:
    if getattr(meta, "empty", True):
        return ast.NOWHERE
    length = meta.end_pos - meta.start_pos if meta.end_line == meta.line else 1
    return ast.Pos(meta.line, meta.column, max(length, 1))


def _tok_pos(tok: Token) -> ast.Pos:
    return ast.Pos(tok.line or 1, tok.column or 1, len(tok))


def _parse_number(tok: Token) -> int | float:
    text = str(tok)
    if text.lower().startswith("0x"):
        return int(text, 16)
    if re.fullmatch(r"\d+", text):
        return int(text)
    return float(text)


@v_args(meta=True)
class _ToAst(Transformer[Token, ast.Expr]):
    def number(self, meta: Any, children: list[Token]) -> ast.Num:
        return ast.Num(_parse_number(children[0]), None, _pos(meta))

    def quantity(self, meta: Any, children: list[Token]) -> ast.Num:
        number, unit = children
        if unit_type(str(unit)) is None:
            raise DslError(
                "E203",
                f"unknown unit '{unit}'",
                unit.line or 1,
                unit.column or 1,
                len(unit),
                hint="units are " + ", ".join(ALL_UNITS),
            )
        return ast.Num(_parse_number(number), str(unit), _pos(meta))

    def string(self, meta: Any, children: list[Token]) -> ast.Str:
        return ast.Str(_unescape(str(children[0])[1:-1]), _pos(meta))

    def true(self, meta: Any, _: list[Any]) -> ast.Bool:
        return ast.Bool(True, _pos(meta))

    def false(self, meta: Any, _: list[Any]) -> ast.Bool:
        return ast.Bool(False, _pos(meta))

    def vote_pass(self, meta: Any, _: list[Any]) -> ast.VoteLit:
        return ast.VoteLit(Vote.PASS, _pos(meta))

    def vote_maybe(self, meta: Any, _: list[Any]) -> ast.VoteLit:
        return ast.VoteLit(Vote.MAYBE, _pos(meta))

    def vote_fail(self, meta: Any, _: list[Any]) -> ast.VoteLit:
        return ast.VoteLit(Vote.FAIL, _pos(meta))

    def vote_unknown(self, meta: Any, _: list[Any]) -> ast.VoteLit:
        return ast.VoteLit(Vote.UNKNOWN, _pos(meta))

    def name(self, meta: Any, children: list[Token]) -> ast.Name:
        return ast.Name(str(children[0]), _tok_pos(children[0]))

    def arglist(self, meta: Any, children: list[Any]) -> tuple[ast.Expr, ...]:
        return tuple(c for c in children if c is not None)

    def call(self, meta: Any, children: list[Any]) -> ast.Call:
        func, args = children
        return ast.Call(str(func), args or (), _pos(meta))

    def list_(self, meta: Any, children: list[Any]) -> ast.ListExpr:
        return ast.ListExpr(children[0] or (), _pos(meta))

    def neg(self, meta: Any, children: list[Any]) -> ast.Neg:
        return ast.Neg(children[0], _pos(meta))

    def binop(self, meta: Any, children: list[Any]) -> ast.BinOp:
        left, op, right = children
        return ast.BinOp(str(op), left, right, _pos(meta))

    def pow(self, meta: Any, children: list[Any]) -> ast.BinOp:
        return ast.BinOp("**", children[0], children[1], _pos(meta))

    def bitand_op(self, meta: Any, children: list[Any]) -> ast.BinOp:
        return ast.BinOp("&", children[0], children[1], _pos(meta))

    def compare(self, meta: Any, children: list[Any]) -> ast.Compare:
        return ast.Compare(tuple(children[0::2]), tuple(str(t) for t in children[1::2]), _pos(meta))

    def in_(self, meta: Any, children: list[Any]) -> ast.In:
        return ast.In(children[0], children[1], False, _pos(meta))

    def not_in(self, meta: Any, children: list[Any]) -> ast.In:
        return ast.In(children[0], children[1], True, _pos(meta))

    def and_(self, meta: Any, children: list[Any]) -> ast.Logic:
        return ast.Logic("and", tuple(children), _pos(meta))

    def or_(self, meta: Any, children: list[Any]) -> ast.Logic:
        return ast.Logic("or", tuple(children), _pos(meta))

    def not_(self, meta: Any, children: list[Any]) -> ast.Not:
        return ast.Not(children[0], _pos(meta))

    def when(self, meta: Any, children: list[Any]) -> tuple[ast.Expr, ast.Expr]:
        return (children[0], children[1])

    def case(self, meta: Any, children: list[Any]) -> ast.Case:
        *whens, default = children
        return ast.Case(tuple(whens), default, _pos(meta))


_TRANSFORMER = _ToAst()


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
    """Parse one expression; raise DslError positioned within `text`."""
    try:
        tree: Tree[Token] = _lark().parse(text)
    except UnexpectedInput as err:
        raise _syntax_error(text, err) from None
    try:
        return _TRANSFORMER.transform(tree)
    except Exception as err:  # Lark wraps errors raised inside the transformer
        inner = getattr(err, "orig_exc", err)
        if isinstance(inner, DslError):
            raise inner from None
        raise
