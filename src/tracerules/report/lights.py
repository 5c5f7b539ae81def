"""Traffic lights for factors: pure functions from votes to small, escaped HTML snippets.

The HTML report and the web dashboard draw every light here, so the colours, the glyphs (for
readers who cannot tell red from green) and the hover text are the same everywhere. The
styles live in `templates/style.css` (classes `light`, `vote-*`, `inherited`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from html import escape
from typing import Final

from markupsafe import Markup

from tracerules.dsl.values import Vote
from tracerules.runtime.engine.decisions import Conclusion, Factor

GLYPHS: Final[Mapping[str, str]] = {
    Vote.PASS.value: "\u2713",  # check mark
    Vote.MAYBE.value: "~",
    Vote.FAIL.value: "\u2715",  # multiplication x
    Vote.UNKNOWN.value: "?",
}
MEANINGS: Final[Mapping[str, str]] = {
    Vote.PASS.value: "the condition holds",
    Vote.MAYBE.value: "a person should look (a retrigger promotes it to PASS)",
    Vote.FAIL.value: "the condition does not hold",
    Vote.UNKNOWN.value: "could not be evaluated: a value is missing or did not convert",
}


def vote_class(vote: Vote | str) -> str:
    """The CSS class of a vote or conclusion: `vote-pass`, `vote-maybe`, ..."""
    value = vote.value if isinstance(vote, Vote | Conclusion) else str(vote)
    return "vote-" + value.lower().replace("_", "-")


def factor_title(factor: Factor, condition: str | None = None) -> str:
    """Hover text: the condition, its vote, what it read, and why it could not vote."""
    head = f"{factor.name}: {factor.vote.value}"
    if factor.inherited:
        head += " (inherited from an earlier notice)"
    lines = [head]
    if condition:
        lines.append(f"condition: {' '.join(condition.split())}")
    if factor.detail:
        lines.append(f"values: {factor.detail}")
    if factor.reason:
        lines.append(f"{'this notice' if factor.inherited else 'reason'}: {factor.reason}")
    return "\n".join(lines)


@functools.lru_cache(maxsize=8192)  # a page repeats lights: inherited votes, the summary row
def light(factor: Factor, condition: str | None = None) -> Markup:
    """One factor as a coloured light; inherited votes are washed out."""
    classes = f"light {vote_class(factor.vote)}" + (" inherited" if factor.inherited else "")
    return Markup(
        f'<span class="{classes}" title="{escape(factor_title(factor, condition))}" '
        f'data-factor="{escape(factor.name)}" data-vote="{factor.vote.value}" role="img" '
        f'aria-label="{escape(factor.name)} {factor.vote.value}">'
        f"{GLYPHS[factor.vote.value]}</span>"
    )


def lights(factors: Iterable[Factor], conditions: Mapping[str, str] | None = None) -> Markup:
    """A row of lights, one per factor, in the trigger's order."""
    conditions = conditions or {}
    return Markup("").join(light(f, conditions.get(f.name)) for f in factors)


def blank(name: str) -> Markup:
    """The empty slot of a factor a decision does not have (the rules changed since)."""
    return Markup(
        f'<span class="light vote-none" title="{escape(name)}: not evaluated by this '
        'decision">\u00b7</span>'
    )


def badge(conclusion: Conclusion | Vote | str, text: str | None = None) -> Markup:
    """A conclusion (PASS, FAIL, ERROR, ...) as a coloured label."""
    value = conclusion.value if isinstance(conclusion, Conclusion | Vote) else str(conclusion)
    return Markup(
        f'<span class="badge {vote_class(value)}">{escape(text or value.replace("_", " "))}</span>'
    )


def legend() -> Markup:
    """The key to the lights, including the washed-out inherited look."""
    items = [
        f'<li><span class="light {vote_class(v)}" aria-hidden="true">{GLYPHS[v]}</span>'
        f"<b>{v}</b> {escape(MEANINGS[v])}</li>"
        for v in GLYPHS
    ]
    items.append(
        f'<li><span class="light {vote_class(Vote.PASS)} inherited" aria-hidden="true">'
        f"{GLYPHS[Vote.PASS.value]}</span><b>washed out</b> inherited: this notice could not "
        "vote, so the vote of an earlier notice stands</li>"
    )
    return Markup(f'<ul class="legend">{"".join(items)}</ul>')
