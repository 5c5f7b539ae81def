"""`missing_if:` on a field: a placeholder value read from a notice becomes a missing value.

Real notices carry sentinels that look like data: Fermi GBM Alert and INTEGRAL SPI-ACS
notices put RA/Dec 0, 0 with error 0 and `Coords_Type` 0, GBM `Fin_Pos` always says
`Burst_Signif` 0.00. A condition reading such a value would pass on nothing; masked, it
votes UNKNOWN with the reason, like any absent value.

A mask on a selected field sees every selected field as read (before any mask applies), so
masks do not depend on the order fields are written in; a mask on a computed field runs
right after the field is computed and may read any field computed before it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from tracerules.dsl.context import Context
from tracerules.dsl.values import Missing

if TYPE_CHECKING:
    from tracerules.rules.compile import CompiledField

Mask = Callable[[Context], Any]


def placeholder(name: str, text: str) -> Missing:
    """The missing value a masked field holds: it says which test found the placeholder."""
    return Missing(f"{name} is a placeholder (missing_if: {text})")


def apply_masks(fields: Iterable[CompiledField], ctx: Context) -> None:
    """Replace the value of every field whose mask holds; all tests first, then the
    replacements, so one mask never sees another's result. A test that cannot be decided
    (it reads a missing value) leaves the value alone."""
    values = ctx.values
    hits = [f for f in fields if f.mask is not None and f.mask(ctx) is True]
    for f in hits:
        values[f.name] = placeholder(f.name, f.mask_text)
