"""JSON-shaped templates for request bodies and messages, and their secrets.

A body is written in YAML as any mix of mappings, lists and scalars; every string in it is a
`{name}` template. A string that is exactly one `{name}` becomes the value itself, keeping its
JSON type (a number stays a number; a missing value, stored as null, stays null; a real "-"
stays "-"). Inside text a missing value is written "-". `${env:NAME}` references
are kept through rendering and resolved only at send time by :func:`resolve_tree`, so what is
logged or stored never holds a secret.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from tracerules.dsl.templates import compile_template, resolve_env, template_names
from tracerules.dsl.values import Missing

_WHOLE = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def tree_templates(prefix: str, tree: Any) -> dict[str, str]:
    """Every string in a tree by its dotted path (list items by index), for load-time checks."""
    if isinstance(tree, str):
        return {prefix: tree}
    if isinstance(tree, Mapping):
        items: Iterable[tuple[Any, Any]] = tree.items()
    elif isinstance(tree, list | tuple):
        items = enumerate(tree)
    else:
        return {}
    out: dict[str, str] = {}
    for key, value in items:
        out.update(tree_templates(f"{prefix}.{key}", value))
    return out


def render_tree(tree: Any, values: Mapping[str, Any]) -> Any:
    """The tree with every string template filled in from ``values`` (env refs kept)."""
    if isinstance(tree, str):
        whole = _WHOLE.match(tree)
        if whole and whole.group(1) in values:
            value = values[whole.group(1)]
            return None if isinstance(value, Missing) else value
        return render_text(tree, values)
    if isinstance(tree, Mapping):
        return {str(k): render_tree(v, values) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [render_tree(v, values) for v in tree]
    return tree


def resolve_tree(tree: Any, environ: Mapping[str, str] | None = None) -> Any:
    """The tree with `${env:NAME}` replaced by the environment's values (send time only)."""
    if isinstance(tree, str):
        return resolve_env(tree, environ)
    if isinstance(tree, Mapping):
        return {k: resolve_tree(v, environ) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [resolve_tree(v, environ) for v in tree]
    return tree


def render_text(text: str, values: Mapping[str, Any]) -> str:
    """One string template filled in (env refs kept); a name without a value, or with a
    missing one (null), gives '-'.

    Names were checked when the rules loaded; a value can still be absent at run time (an
    action planned under an older revision of the rule), which must not crash the action.
    """
    known = {*values.keys(), *(name for name, _ in template_names(text))}
    return compile_template(text, known)(values)


def strict_json(tree: Any, **options: Any) -> str:
    """JSON that every strict parser reads: a notice's NaN or Infinity (Python writes them as
    bare NaN and Infinity, which is not JSON) becomes null, like any other missing number."""
    return json.dumps(_finite(tree), allow_nan=False, **options)


def _finite(tree: Any) -> Any:
    if isinstance(tree, float):
        return tree if math.isfinite(tree) else None
    if isinstance(tree, Mapping):
        return {k: _finite(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [_finite(v) for v in tree]
    return tree
