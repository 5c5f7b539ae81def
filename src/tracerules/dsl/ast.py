"""Frozen AST nodes of the expression language, and `unparse`, their canonical text.

Positions are kept for error messages but left out of equality, so that
`parse(unparse(e)) == e` holds for any tree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tracerules.dsl.values import Vote


@dataclass(frozen=True, slots=True)
class Pos:
    """1-based line and column of a node in its expression text, and its length."""

    line: int = 1
    col: int = 1
    length: int = 1


NOWHERE = Pos()


@dataclass(frozen=True, slots=True)
class Num:
    value: int | float
    unit: str | None = None
    pos: Pos = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Str:
    value: str
    pos: Pos = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Bool:
    value: bool
    pos: Pos = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class VoteLit:
    vote: Vote
    pos: Pos = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Name:
    id: str
    pos: Pos = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ListExpr:
    items: tuple[Expr, ...]
    pos: Pos = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Expr
    pos: Pos = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class BinOp:
    op: str  # one of + - * / % ** &
    left: Expr
    right: Expr
    pos: Pos = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Compare:
    """A chain `a < b <= c`: every adjacent pair must hold."""

    operands: tuple[Expr, ...]
    ops: tuple[str, ...]
    pos: Pos = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class In:
    item: Expr
    container: Expr
    negated: bool = False
    pos: Pos = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Logic:
    op: str  # "and" | "or"
    operands: tuple[Expr, ...]
    pos: Pos = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr
    pos: Pos = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Call:
    func: str
    args: tuple[Expr, ...]
    pos: Pos = field(default=NOWHERE, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Case:
    whens: tuple[tuple[Expr, Expr], ...]
    default: Expr | None = None
    pos: Pos = field(default=NOWHERE, compare=False, repr=False)


Expr = (
    Num
    | Str
    | Bool
    | VoteLit
    | Name
    | ListExpr
    | Neg
    | BinOp
    | Compare
    | In
    | Logic
    | Not
    | Call
    | Case
)

_ATOMS = (Num, Str, Bool, VoteLit, Name, ListExpr, Call, Case)


def _wrapped(node: Expr) -> str:
    text = unparse(node)
    return text if isinstance(node, _ATOMS) else f"({text})"


def _number(node: Num) -> str:
    text = repr(node.value)
    return f"{text} {node.unit}" if node.unit else text


def unparse(node: Expr) -> str:
    """Canonical source text; every compound operand is parenthesised."""
    match node:
        case Num():
            return _number(node)
        case Str(value=value):
            return json.dumps(value, ensure_ascii=False)
        case Bool(value=value):
            return "true" if value else "false"
        case VoteLit(vote=vote):
            return vote.value
        case Name(id=name):
            return name
        case ListExpr(items=items):
            return "[" + ", ".join(unparse(i) for i in items) + "]"
        case Neg(operand=operand):
            return f"-{_wrapped(operand)}"
        case BinOp(op=op, left=left, right=right):
            return f"{_wrapped(left)} {op} {_wrapped(right)}"
        case Compare(operands=operands, ops=ops):
            parts = [_wrapped(operands[0])]
            for op, operand in zip(ops, operands[1:], strict=True):
                parts += [op, _wrapped(operand)]
            return " ".join(parts)
        case In(item=item, container=container, negated=negated):
            return f"{_wrapped(item)} {'not in' if negated else 'in'} {_wrapped(container)}"
        case Logic(op=op, operands=operands):
            return f" {op} ".join(_wrapped(o) for o in operands)
        case Not(operand=operand):
            return f"not {_wrapped(operand)}"
        case Call(func=func, args=args):
            return f"{func}(" + ", ".join(unparse(a) for a in args) + ")"
        case Case(whens=whens, default=default):
            parts = ["case"]
            for cond, result in whens:
                parts += ["when", unparse(cond), "then", unparse(result)]
            if default is not None:
                parts += ["else", unparse(default)]
            return " ".join([*parts, "end"])
    raise TypeError(f"not an expression node: {node!r}")
