"""What the operator commands share: opening the store and the rules, time options, output.

The operator commands (`notices`, `events`, `retrigger`, `topics`) read the service's store
and print a rich table, or the same data as JSON with `--format json`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.text import Text

from tracerules.cli.glyphs import factor_light
from tracerules.dsl.convert import to_time
from tracerules.dsl.values import Missing
from tracerules.products.actions.templating import strict_json
from tracerules.rules.compile import RuleSet
from tracerules.runtime.engine.decisions import Factor
from tracerules.runtime.store.dialect import StoreLocation, display_location, store_exists
from tracerules.runtime.store.store import Store
from tracerules.timetext import utc_text

STORE_ENV: Final = "TRACERULES_STORE"
DEFAULT_STORE: Final = "tracerules.sqlite"
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A bad option or a missing store: printed, exit status 2."""


def store_path(option: StoreLocation | None) -> StoreLocation:
    """`--store`, else $TRACERULES_STORE, else ./tracerules.sqlite: a SQLite file's path, or
    a `postgresql://` URL (kept a string)."""
    return option or os.environ.get(STORE_ENV) or Path(DEFAULT_STORE)


def open_store(option: StoreLocation | None, *, read_only: bool = False) -> Store:
    """The existing store (never a new empty one by mistake); `read_only` for the commands
    that only read it: they work beside a running service and on a file they cannot write."""
    path = store_path(option)
    if not store_exists(path):
        raise UsageError(
            f"no store at {display_location(path)}: pass --store, set ${STORE_ENV}, "
            "or fill one with "
            "`tracerules run` or `tracerules dry-run --store FILE`"
        )
    return connect_store(path, read_only=read_only)


def connect_store(path: StoreLocation, *, read_only: bool = False) -> Store:
    """Open (or create) the store at `path`; a file that is not a database or a server that
    does not answer is a UsageError saying so, not a traceback."""
    from tracerules.runtime.store.dialect import store_errors

    try:
        return Store(path, read_only=read_only)
    except store_errors() as err:
        raise UsageError(f"cannot open the store {display_location(path)}: {err}") from err


def rule_folders(given: Sequence[Path] | None, store: Store) -> list[Path]:
    """`--rules`, else the folders of the rule files that made the store's decisions (the
    rules as they are now, where they were), else ./rules if it exists, else none."""
    if given:
        return list(given)
    recorded = store.decision_rule_files()
    folders = sorted({Path(f).parent for f in recorded if Path(f).is_file()})
    return folders or [p for p in [Path("rules")] if p.is_dir()]


def load_rules(paths: Sequence[Path]) -> RuleSet:
    from tracerules.errors import RuleError
    from tracerules.rules.compile import load_ruleset

    try:
        return load_ruleset(list(paths))
    except RuleError as err:
        first = err.diagnostics[0] if err.diagnostics else None
        where = f"{first.span.path}:{first.span.line}: {first.message}" if first else str(err)
        raise UsageError(
            f"the rules in {', '.join(map(str, paths))} do not load ({where}); "
            "run `tracerules validate`"
        ) from err


def parse_time(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    value = to_time(text)
    if isinstance(value, Missing):
        raise UsageError(f"{option} {text!r} is not an ISO 8601 time")
    return float(value)


def iso(seconds: float | None) -> str:
    return utc_text(seconds)


def light(factor: Factor) -> Text:
    """A factor as its shape (✓ ~ ✕ ?), coloured when colour is on; `*` when inherited."""
    return factor_light(factor)


def lights(factors: Sequence[Factor]) -> Text:
    return Text(" ").join(light(f) for f in factors)


def factor_json(factor: Factor) -> dict[str, Any]:
    return {
        "name": factor.name,
        "vote": factor.vote.value,
        "inherited": factor.inherited,
        "reason": factor.reason,
        "detail": factor.detail,
    }


def print_json(data: Any) -> None:
    # strict: an infinite time an older tracerules stored prints as null, not as Infinity
    print(strict_json(data, indent=2, default=str))


def console() -> Console:
    """Rich output; piped output gets wide lines instead of rich's default 80 columns."""
    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 180)


def fail(message: str, status: int = EXIT_USAGE) -> int:
    print(f"error: {message}", file=sys.stderr)
    return status
