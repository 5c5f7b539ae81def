"""A `--trigger` that names no trigger is a usage error, never an empty result.

Without this check `--trigger nope` filters every event out and the command prints nothing
and succeeds, which reads as "no events" rather than "typo".
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

SHOWN = 10  # trigger ids listed when there are no close matches


def unknown_trigger(name: str, known: Iterable[str], where: str) -> str | None:
    """The error message when `name` is not one of `known` (triggers in `where`), else None."""
    ids = sorted(set(known))
    if name in ids:
        return None
    message = f"--trigger '{name}' names no trigger in {where}"
    close = difflib.get_close_matches(name, ids, n=3, cutoff=0.5)
    if close:
        return message + "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    if not ids:
        return message + " (it has none)"
    listed = ", ".join(ids[:SHOWN]) + (f", ... ({len(ids)} in all)" if len(ids) > SHOWN else "")
    return f"{message}; it has: {listed}"
