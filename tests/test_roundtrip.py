"""parse(unparse(e)) == e for any expression tree, and the grammar stays unambiguous."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracerules.dsl import ast
from tracerules.dsl.parser import build_parser, parse
from tracerules.dsl.values import ALL_UNITS, Vote

KEYWORDS = {
    "and",
    "or",
    "not",
    "in",
    "case",
    "when",
    "then",
    "else",
    "end",
    "true",
    "false",
    "PASS",
    "MAYBE",
    "FAIL",
    "UNKNOWN",
}
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
    lambda s: s not in KEYWORDS
)
numbers = st.one_of(
    st.integers(min_value=0, max_value=10**12),
    st.floats(min_value=0, max_value=1e300, allow_nan=False, allow_infinity=False),
)
leaves = st.one_of(
    st.builds(ast.Num, numbers, st.one_of(st.none(), st.sampled_from(ALL_UNITS))),
    st.builds(ast.Str, st.text(max_size=12)),
    st.builds(ast.Bool, st.booleans()),
    st.builds(ast.VoteLit, st.sampled_from(list(Vote))),
    st.builds(ast.Name, names),
)


def _extend(children: st.SearchStrategy[ast.Expr]) -> st.SearchStrategy[ast.Expr]:
    many = st.lists(children, min_size=2, max_size=4).map(tuple)
    return st.one_of(
        st.builds(ast.ListExpr, st.lists(children, max_size=3).map(tuple)),
        st.builds(ast.Neg, children),
        st.builds(
            ast.BinOp, st.sampled_from(["+", "-", "*", "/", "%", "**", "&"]), children, children
        ),
        st.builds(
            lambda ops, xs: ast.Compare(tuple(xs[: len(ops) + 1]), tuple(ops)),
            st.lists(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), min_size=1, max_size=3),
            st.lists(children, min_size=4, max_size=4),
        ),
        st.builds(ast.In, children, children, st.booleans()),
        st.builds(ast.Logic, st.sampled_from(["and", "or"]), many),
        st.builds(ast.Not, children),
        st.builds(ast.Call, names, st.lists(children, max_size=3).map(tuple)),
        st.builds(
            ast.Case,
            st.lists(st.tuples(children, children), min_size=1, max_size=3).map(tuple),
            st.one_of(st.none(), children),
        ),
    )


expressions = st.recursive(leaves, _extend, max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(expressions)
def test_parse_unparse_round_trip(expr: ast.Expr) -> None:
    text = ast.unparse(expr)
    assert parse(text) == expr, text


def test_grammar_builds_in_strict_mode() -> None:
    # Strict mode turns shift/reduce conflicts and terminal collisions into errors.
    parser = build_parser(strict=True)
    assert parser.parse("1 < x <= 2") == ast.Compare(
        (ast.Num(1), ast.Name("x"), ast.Num(2)), ("<", "<=")
    )


def test_positions_are_not_part_of_equality() -> None:
    assert parse("a  +  b") == parse("a + b")
    assert parse("a + b").pos != parse("  a + b").pos


def test_the_stand_alone_parser_is_written_from_the_grammar_as_it_is() -> None:
    """Rules load with the parser Lark's stand-alone tool wrote from grammar.lark (no Lark
    import: issue 16, load time). After a grammar change, write it again:
    `python -m tracerules.dsl.standalone`."""
    from tracerules.dsl import _lalr
    from tracerules.dsl.parser import grammar_text
    from tracerules.dsl.standalone import grammar_digest

    assert grammar_digest(grammar_text()) == _lalr.GRAMMAR_SHA256


def _positions(node: object) -> list[object]:
    """Every position in a tree, in order (positions are left out of equality)."""
    found: list[object] = []
    if isinstance(node, tuple):
        for item in node:
            found += _positions(item)
    elif hasattr(node, "__dataclass_fields__"):
        for name in node.__dataclass_fields__:
            value = getattr(node, name)
            found += [value] if name == "pos" else _positions(value)
    return found


@settings(max_examples=300, deadline=None)
@given(expressions)
def test_the_stand_alone_parser_reads_as_lark_in_strict_mode(expr: ast.Expr) -> None:
    text = ast.unparse(expr)
    for written in (text, f"\n  {text}\n"):  # positions on a later line too
        quick, strict = build_parser().parse(written), build_parser(strict=True).parse(written)
        assert quick == strict
        assert _positions(quick) == _positions(strict)


@pytest.mark.parametrize("text", ["snr >", "snr = 8", "f(1,,2)", "case when a then", "1 2", "'x"])
def test_the_stand_alone_parser_refuses_what_lark_refuses(text: str) -> None:
    with pytest.raises(Exception) as quick:
        build_parser().parse(text)
    with pytest.raises(Exception) as strict:
        build_parser(strict=True).parse(text)
    seen = [
        (type(e).__name__, e.line, e.column, set(getattr(e, "expected", ()) or ()))
        for e in (quick.value, strict.value)
    ]
    assert seen[0] == seen[1]
