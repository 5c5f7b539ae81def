"""Traffic lights in the terminal: a shape per vote, coloured when colour is on.

The shapes are the HTML report's (report/lights.py), so a light reads the same piped, under
`NO_COLOR`, for a colour-blind reader and in the browser; colour only adds to the shape. Rich
drops the colour itself when the output is not a terminal or `NO_COLOR` is set.
"""

from __future__ import annotations

from typing import Final

from rich.text import Text

from tracerules.dsl.values import Vote
from tracerules.report.lights import GLYPHS
from tracerules.runtime.engine.decisions import Factor

COLOURS: Final = {
    Vote.PASS: "green",
    Vote.MAYBE: "yellow",
    Vote.FAIL: "red",
    Vote.UNKNOWN: "grey50",
}
INHERITED_MARK: Final = "*"  # after the shape: the vote of an earlier notice stands


def vote_light(vote: Vote, inherited: bool = False) -> Text:
    """One vote as its shape (✓ ~ ✕ ?), `*` after it when inherited, dimmed in colour."""
    style = f"dim {COLOURS[vote]}" if inherited else COLOURS[vote]
    return Text(GLYPHS[vote.value] + (INHERITED_MARK if inherited else ""), style=style)


def factor_light(factor: Factor) -> Text:
    return vote_light(factor.vote, factor.inherited)


def legend() -> Text:
    """The key, in the same shapes and colours as the lights."""
    parts: list[Text | str] = ["legend: "]
    for vote in Vote:
        parts += [vote_light(vote), f" {vote.value}  "]
    parts += [vote_light(Vote.PASS, True), " inherited from an earlier notice"]
    return Text.assemble(*parts)
