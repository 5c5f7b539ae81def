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
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tracerules.dsl import ast
from tracerules.dsl.context import Context
from tracerules.dsl.parser import parse
from tracerules.dsl.values import Missing, Type
from tracerules.errors import DslError

if TYPE_CHECKING:
    from tracerules.rules.compile import CompiledField, TriggerCompiler

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


def parse_masks(tc: TriggerCompiler) -> dict[str, ast.Expr] | None:
    """Every field's missing_if, parsed; None after a syntax error (reported)."""
    out: dict[str, ast.Expr] = {}
    ok = True
    for name, fspec in tc.spec.fields.items():
        if fspec.missing_if is None:
            continue
        try:
            out[name] = parse(fspec.missing_if)
        except DslError as err:
            tc.dsl_error(err, ("fields", name, "missing_if"))
            ok = False
    return out if ok else None


def attach_masks(
    tc: TriggerCompiler, fields: tuple[CompiledField, ...], masks: dict[str, ast.Expr]
) -> tuple[CompiledField, ...] | None:
    """Attach each missing_if test to its field, once every field's type is known."""
    from tracerules.rules.compile import PREDECLARED

    selected = {f.name for f in fields if f.select is not None} | set(PREDECLARED)
    out = []
    for f in fields:
        node = masks.get(f.name)
        if node is None:
            out.append(f)
            continue
        loc = ("fields", f.name, "missing_if")
        try:
            test = tc.expression_compiler().compile(node)
        except DslError as err:
            tc.dsl_error(err, loc)
            continue
        late = sorted(test.names - selected) if f.select is not None else []
        if test.type not in (Type.BOOL, Type.ANY) or late:
            tc.error(
                "E310",
                f"missing_if of '{f.name}' reads '{late[0]}', computed after it is read"
                if late
                else f"missing_if must be true/false, not {test.type.value}",
                loc,
                "a selected field's missing_if reads selected fields only: mask "
                f"'{late[0]}' itself, or compute '{f.name}' with expr:"
                if late
                else f"compare the value, e.g. '{f.name} == 0'",
            )
            continue
        text = " ".join(str(tc.spec.fields[f.name].missing_if).split())
        masked = replace(f, mask=test.fn, mask_text=text, functions=f.functions | test.functions)
        out.append(replace(masked, reads=f.reads | (test.names - {f.name})))
    return tuple(out) if len(out) == len(fields) else None
