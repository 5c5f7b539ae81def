"""Read-only access to the store and the rules, as the dashboard's request threads need it.

Each request thread gets its own `Store(path, read_only=True)` (SQLite `mode=ro`, and
`query_only` on top), so the dashboard can never write to the service's store. The rules are
reloaded when one of their files changes, so "current conditions" follow the rules on disk.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracerules.rules.compile import RuleSet
from tracerules.runtime.store.store import Store


class StorePool:
    """One read-only connection per thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()

    def get(self) -> Store:
        store: Store | None = getattr(self._local, "store", None)
        if store is None:
            store = Store(self.path, read_only=True)
            self._local.store = store
        return store


@dataclass
class Rules:
    """The rule set, reloaded when a rule file changes; `error` says why none is loaded."""

    paths: Sequence[Path]
    ruleset: RuleSet | None = None
    error: str | None = None
    _stamp: tuple[tuple[str, float], ...] = ()
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def current(self) -> RuleSet | None:
        with self._lock:
            stamp = self._stamps()
            if stamp != self._stamp:
                self._load()
                self._stamp = self._stamps()
            return self.ruleset

    def _stamps(self) -> tuple[tuple[str, float], ...]:
        files = [p for path in self.paths for p in _yaml_files(Path(path))]
        return tuple((str(p), p.stat().st_mtime) for p in files if p.exists())

    def _load(self) -> None:
        from tracerules.errors import RuleError
        from tracerules.rules.compile import load_ruleset

        try:
            self.ruleset, self.error = load_ruleset(list(self.paths)), None
        except RuleError as err:  # keep the last good rule set, and say why
            self.error = f"the rules do not load ({len(err.diagnostics)} error(s))"
        except OSError as err:
            self.error = f"the rules cannot be read: {err}"


def _yaml_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
    return [path]


class TtlCache:
    """Values recomputed at most every `ttl` seconds: the summary counts scan the notices."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._values: dict[object, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: object, compute: Callable[[], Any]) -> Any:
        now = time.monotonic()
        with self._lock:
            hit = self._values.get(key)
            if hit is not None and now - hit[0] < self.ttl:
                return hit[1]
        value = compute()
        with self._lock:
            self._values = {key: (now, value)}  # one entry: the rules' identity is in the key
        return value
