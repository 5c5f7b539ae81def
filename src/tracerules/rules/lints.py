"""Lints: legal rules that are probably not what the author meant.

Each lint is a class; its identifier is derived from the class name (UnusedField ->
unused-field), and a trigger switches one off with `lint: {disable: [unused-field]}`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, ClassVar

from tracerules.dsl import ast
from tracerules.errors import Diagnostic, DslError, Severity, Span
from tracerules.products.actions.registry import field_refs

if TYPE_CHECKING:
    from tracerules.rules.compile import CompiledField, CompiledTrigger
    from tracerules.rules.loader import LoadResult


class Lint:
    code: ClassVar[str]
    severity: ClassVar[Severity] = Severity.WARNING
    summary: ClassVar[str]

    @classmethod
    def ident(cls) -> str:
        return re.sub(r"(?<!^)(?=[A-Z])", "-", cls.__name__).lower()

    def check(self, trigger: CompiledTrigger) -> Iterator[tuple[str, Span, str | None]]:
        """Yield (message, span, hint) for each finding."""
        raise NotImplementedError


class UnusedField(Lint):
    code = "W001"
    summary = "a field that no condition, field or action template reads"

    def check(self, trigger: CompiledTrigger) -> Iterator[tuple[str, Span, str | None]]:
        used = {trigger.event_id, trigger.event_time}
        for cond in trigger.conditions:
            used.update(cond.names)
        for f in trigger.fields:
            used |= f.reads
        for action in trigger.actions:
            from tracerules.dsl.templates import template_names

            for text in action.config.templates().values():
                used |= {name for name, _ in template_names(text)}
            used |= {getattr(action.config, ref) for ref in field_refs(action.config)}
        for f in trigger.fields:
            if f.name not in used:
                yield (
                    f"field '{f.name}' is never used",
                    f.span,
                    "remove it, or use it in a condition",
                )


class ConstantCondition(Lint):
    code = "W002"
    summary = "a condition whose vote does not depend on the notice"

    def check(self, trigger: CompiledTrigger) -> Iterator[tuple[str, Span, str | None]]:
        for cond in trigger.conditions:
            if cond.const is not None:
                yield (
                    f"condition '{cond.name}' always votes {cond.const.value}",
                    cond.span,
                    "compare a field, or remove the condition",
                )


class NoConditions(Lint):
    code = "W003"
    summary = "a trigger with no conditions passes every notice of its topics"

    def check(self, trigger: CompiledTrigger) -> Iterator[tuple[str, Span, str | None]]:
        if not trigger.conditions:
            yield (
                f"trigger '{trigger.id}' has no conditions: every notice passes",
                trigger.span,
                "add conditions, or disable this lint if that is intended",
            )


class LiveWithoutActions(Lint):
    code = "W004"
    summary = "a live trigger that does nothing when it passes"

    def check(self, trigger: CompiledTrigger) -> Iterator[tuple[str, Span, str | None]]:
        if trigger.mode == "live" and not trigger.actions:
            yield (
                f"live trigger '{trigger.id}' has no actions",
                trigger.span,
                "add actions, or set mode: pretend",
            )


class DuplicateCondition(Lint):
    code = "W005"
    summary = "two conditions of one trigger with the same expression"

    def check(self, trigger: CompiledTrigger) -> Iterator[tuple[str, Span, str | None]]:
        seen: dict[ast.Expr, str] = {}
        for cond in trigger.conditions:
            if cond.node in seen:
                yield (
                    f"condition '{cond.name}' repeats '{seen[cond.node]}'",
                    cond.span,
                    "remove one of them",
                )
            seen.setdefault(cond.node, cond.name)


class CaseWithoutElse(Lint):
    code = "W006"
    summary = "a case with no else gives UNKNOWN when no branch matches"

    def check(self, trigger: CompiledTrigger) -> Iterator[tuple[str, Span, str | None]]:
        for cond in trigger.conditions:
            if isinstance(cond.node, ast.Case) and cond.node.default is None:
                yield (
                    f"condition '{cond.name}' has no else: when no branch matches it is "
                    "UNKNOWN, keeping the previous vote (or failing the first notice)",
                    cond.span,
                    "say what you mean: 'else FAIL', 'else MAYBE' or 'else UNKNOWN'",
                )


# `voe:` on any element but the root: VOEvent children are not in the namespace.
_VOE_CHILD = re.compile(r"\bvoe:(?!VOEvent\b)([A-Za-z_][\w.-]*)")


class NamespacedXpathStep(Lint):
    code = "W007"
    summary = "an XPath step such as voe:Param that matches nothing in a VOEvent"

    def check(self, trigger: CompiledTrigger) -> Iterator[tuple[str, Span, str | None]]:
        if trigger.format != "xml":
            return
        for f in trigger.fields:
            if f.select is None:
                continue
            found = _VOE_CHILD.search(f.source)
            if found is None:
                continue
            fixed = _VOE_CHILD.sub(r"\1", f.source)
            yield (
                f"field '{f.name}': '{found.group(0)}' never matches: in a VOEvent only the "
                "root element is in the voe namespace, so every notice would miss this field",
                _inside_selector(f, found.start(), len(found.group(0))),
                f"write {fixed}",
            )


def _inside_selector(f: CompiledField, offset: int, length: int) -> Span:
    """The place of `offset` characters into a field's xpath: text in the rule file."""
    from tracerules.rules.compile import place

    err = DslError("W007", "", 1, offset + 1, length)
    span = place(err, f.where.loaded, (*f.where.loc, "xpath")).span
    # A quoted scalar's origin is its quote (quotes are not kept in the tree): find the text.
    lines = f.where.loaded.text.splitlines()
    if 0 < span.line <= len(lines):
        found = lines[span.line - 1].find(f.source[offset : offset + length], span.col - 1)
        if found >= 0:
            return Span(span.path, span.line, found + 1, length)
    return span


LINTS: tuple[type[Lint], ...] = (
    UnusedField,
    ConstantCondition,
    NoConditions,
    LiveWithoutActions,
    DuplicateCondition,
    CaseWithoutElse,
    NamespacedXpathStep,
)


def run_lints(
    triggers: Sequence[CompiledTrigger],
    result: LoadResult | None = None,
    disabled: frozenset[str] = frozenset(),
) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    named = [(lint_cls, lint_cls.ident()) for lint_cls in LINTS]  # once, not per trigger
    for trigger in triggers:
        for lint_cls, ident in named:
            if ident in trigger.lint_disabled or ident in disabled:
                continue
            for message, span, hint in lint_cls().check(trigger):
                out.append(Diagnostic(lint_cls.code, message, span, hint, lint_cls.severity, ident))
    return out
