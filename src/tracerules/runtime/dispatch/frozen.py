"""Actions frozen when planned: the exact configuration a planned action runs.

At plan time an action's configuration is written as JSON (the options its rule set, as
validated by its `type:`; `${env:NAME}` references kept as written, so no secret is in it)
and stored under its hash. A run rebuilds the action from that JSON through the `type:`
registry, whatever rules are loaded by then: an action planned before a reload or a restart
with edited rules runs as it was planned. One whose configuration cannot be rebuilt (its type
is gone, its plugin is not installed, its options no longer validate) is *superseded*: it is
reported and never run, and never replaced by whatever action now sits at its position.

Snapshots are made once per action when the rules are compiled (`CompiledAction.snapshot`)
and rebuilt once per distinct hash: no parsing per plan or per run beyond that.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from tracerules.products.actions.registry import ActionConfig, ActionType, get
from tracerules.rules.compile import RuleSet
from tracerules.runtime.dispatch.destinations import destination_of
from tracerules.runtime.dispatch.retry import Policy, policy_of

_CACHE_MOST: Final = 4096  # distinct configurations kept built (rules rarely hold more)


@dataclass(frozen=True)
class Frozen:
    """A planned action rebuilt from its snapshot, ready to run."""

    kind: ActionType
    config: ActionConfig

    @property
    def destination(self) -> str:
        return destination_of(self.kind.name, self.config, self.kind.writes_files)

    @property
    def policy(self) -> Policy:
        return policy_of(self.config)


@dataclass(frozen=True)
class Superseded:
    """Why a planned action cannot run as planned."""

    reason: str


def rebuild(text: str) -> Frozen | Superseded:
    """The action a snapshot describes, through the `type:` registry."""
    try:
        options: Any = json.loads(text)
    except ValueError as err:
        return Superseded(f"its stored configuration is not JSON ({err})")
    type_name = options.get("type") if isinstance(options, dict) else None
    if not isinstance(type_name, str):
        return Superseded("its stored configuration names no type")
    try:
        kind = get(type_name)
    except Exception as err:  # a broken plugin's entry point
        return Superseded(f"its action type '{type_name}' cannot be loaded: {err}")
    if kind is None:
        return Superseded(f"its action type '{type_name}' is no longer installed")
    try:
        config = kind.config.model_validate(options)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or type_name
        return Superseded(f"its configuration no longer validates ({where}: {first['msg']})")
    return Frozen(kind, config)


class FrozenActions:
    """Planned actions rebuilt from their snapshots, each distinct one once (thread-safe)."""

    def __init__(self) -> None:
        self._built: dict[str, Frozen | Superseded] = {}
        self._lock = threading.Lock()

    def of(self, store: Any, rules: RuleSet, row: Any) -> Frozen | Superseded:
        """The action a stored row runs: its snapshot; for a row planned before snapshots
        were stored, the action at its position if the rule file is still the revision its
        decision was made under."""
        digest = row["config_hash"]
        if digest is None:
            return legacy(store, rules, row)
        with self._lock:
            found = self._built.get(digest)
        if found is not None:
            return found
        text = store.action_config(digest)
        built = rebuild(text) if text is not None else Superseded("its configuration is lost")
        with self._lock:
            if len(self._built) >= _CACHE_MOST:
                self._built.clear()
            self._built[digest] = built
        return built


def legacy(store: Any, rules: RuleSet, row: Any) -> Frozen | Superseded:
    """A row planned before configurations were stored: the same rule file (same content
    hash) holds the same action at the same position; any other is superseded."""
    started = store.decision_start(row["decision"])
    revision = started[1] if started else None
    trigger = rules.trigger(row["trigger"])
    if trigger is None or row["position"] >= len(trigger.actions):
        return Superseded("planned before actions were frozen; its trigger no longer defines it")
    if trigger.revision != revision:
        return Superseded(
            f"planned before actions were frozen, under rule revision {revision}; "
            f"the loaded revision is {trigger.revision}"
        )
    action = trigger.actions[row["position"]]
    return Frozen(action.kind, action.config)


# One per process: the dispatcher, the workers' lanes and crash recovery share what is built.
FROZEN: Final = FrozenActions()
