"""`{name}` templates for paths, bodies and argv, checked against known names at load.

`${env:NAME}` references are kept as written by `render` and resolved only by `resolve_env`
at the moment an action runs, so secrets never reach the store, logs or products.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from tracerules.errors import DslError

ENV_REF: Final = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
_FORMATTER = string.Formatter()

Template = Callable[[Mapping[str, Any]], str]


def template_names(text: str) -> list[tuple[str, int]]:
    """The names a template uses, with their 1-based column in the text."""
    masked = ENV_REF.sub(lambda m: "#" * len(m.group(0)), text)
    names: list[tuple[str, int]] = []
    col = 1
    try:
        for literal, name, _spec, _conv in _FORMATTER.parse(masked):
            col += len(literal)
            if name is not None:
                names.append((name, col + 1))
                col += len(name) + 2 + len(_spec or "") + (1 if _spec else 0)
    except ValueError as err:
        raise DslError(
            "E802",
            f"bad template: {err}",
            1,
            col,
            1,
            hint="write {field} for a value and {{ or }} for a literal brace",
        ) from None
    return names


def compile_template(text: str, known: Iterable[str]) -> Template:
    """Check the names now; rendering later fills them, writing '-' for a missing value."""
    known_set = set(known)
    for name, col in template_names(text):
        if name not in known_set:
            from difflib import get_close_matches

            close = get_close_matches(name, sorted(known_set), n=1)
            raise DslError(
                "E802",
                f"the template uses unknown name '{name}'",
                1,
                col,
                len(name),
                hint=f"did you mean '{close[0]}'?"
                if close
                else "available: " + ", ".join(sorted(known_set)),
            )
    masked_refs: list[str] = []

    def mask(match: re.Match[str]) -> str:
        masked_refs.append(match.group(0))
        return f"\x00{len(masked_refs) - 1}\x00"

    body = ENV_REF.sub(mask, text)

    def render(values: Mapping[str, Any]) -> str:
        out = _FORMATTER.vformat(body, (), _Filled(values))
        for i, ref in enumerate(masked_refs):
            out = out.replace(f"\x00{i}\x00", ref)
        return out

    return render


class _Filled(dict[str, Any]):
    def __init__(self, values: Mapping[str, Any]) -> None:
        super().__init__(values)

    def __missing__(self, key: str) -> str:
        return "-"

    def __getitem__(self, key: str) -> Any:
        value = super().get(key)
        from tracerules.dsl.values import Missing

        # Missing while planning; null (None) once stored: either way not there.
        return "-" if value is None or isinstance(value, Missing) else value


def resolve_env(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace `${env:NAME}` with the environment's value; a missing one is an error."""
    env = os.environ if environ is None else environ

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise KeyError(f"environment variable {name} is not set")
        return env[name]

    return ENV_REF.sub(lookup, text)


def secrets_in(text: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """The secret values a text refers to, for redaction."""
    env = os.environ if environ is None else environ
    return [env[name] for name in ENV_REF.findall(text) if env.get(name)]
