"""The guard's quick bound on nesting (rules/guard.py) never lets through a file that the
line-by-line count would send to the exact check."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tracerules.rules import guard


def _line_by_line(text: str) -> bool:
    """The bound as it was: distinct indentations, most indicators on a line, brackets."""
    indents = len(set(guard._LINE_INDENT.findall(text)))
    indicators = max((len(run.split()) for run in guard._LINE_INDICATORS.findall(text)), default=0)
    brackets = text.count("[") + text.count("{")
    return indents + indicators + brackets > guard.MAX_DEPTH


lines = st.builds(
    lambda indent, marks, body: " " * indent + "".join(marks) + body,
    st.integers(min_value=0, max_value=90),
    st.lists(st.sampled_from(["- ", "? ", "-\t", "-  ", "? \t"]), max_size=4),
    st.sampled_from(["a: 1", "b", "[x, {y: 1}]", "{", "[[", "- x", "", " ", "# c - - d", "x-y"]),
)
texts = st.lists(lines, max_size=60).map("\n".join)


@settings(max_examples=500, deadline=None)
@given(texts)
def test_the_quick_bound_sends_on_whatever_the_line_count_would(text: str) -> None:
    if _line_by_line(text):
        assert guard._could_be_too_deep(text)


def test_the_quick_bound_clears_an_ordinary_rule_file() -> None:
    text = "triggers:\n  - id: a\n    fields:\n      x: {jsonpath: $.x}\n    topics: [t]\n"
    assert not guard._could_be_too_deep(text)


def test_deep_indentation_or_stacked_indicators_go_to_the_exact_count() -> None:
    deep = "\n".join(" " * (2 * depth) + f"k{depth}:" for depth in range(70))
    stacked = "- " * 70 + "x\n"
    assert guard._could_be_too_deep(deep)
    assert guard._could_be_too_deep(stacked)
    assert next(guard.screen("deep.yaml", deep)).code == "E108"
