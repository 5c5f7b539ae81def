"""Action and product types, chosen by `type:` in a trigger's `actions` list.

Each type is a pydantic config model (with `extra="forbid"`) plus a function that runs it.
Third parties add types through the `tracerules.actions` entry-point group; nothing is
discovered by scanning modules.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field


class ActionConfig(BaseModel):
    """Settings common to every action type."""

    # Built on first use: the types a rule set does not use (or only inherits from, such as
    # webhook for mwa and atca) are never built (issue 16: load time).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    type: str
    name: str | None = Field(None, description="a label for logs; defaults to the type")
    timeout: float = Field(30.0, gt=0, description="seconds before the action is abandoned")
    retries: int = Field(0, ge=0, le=10, description="extra attempts after a failure")

    # Config fields holding `{name}` templates, checked against the trigger's fields at load.
    template_fields: ClassVar[tuple[str, ...]] = ()
    # Config fields naming a site (`site: mwa`): checked against the declared sites at load,
    # and resolved onto CompiledAction.sites.
    site_refs: ClassVar[tuple[str, ...]] = ()

    def label(self) -> str:
        return self.name or self.type

    def templates(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for key in self.template_fields:
            value = getattr(self, key)
            if isinstance(value, str):
                out[key] = value
            elif isinstance(value, list | tuple):
                out.update({f"{key}.{i}": v for i, v in enumerate(value) if isinstance(v, str)})
            elif isinstance(value, Mapping):
                out.update({f"{key}.{k}": v for k, v in value.items() if isinstance(v, str)})
        return out


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An action's configuration as stored with each planned action, and run from it."""

    text: str  # canonical JSON of the configuration
    digest: str  # its sha256

    @classmethod
    def of(cls, config: ActionConfig) -> Snapshot:
        """The options as the rule wrote them (defaults left out, so that validating the
        JSON again gives the same configuration), in a canonical form."""
        options = config.model_dump(mode="json", exclude_unset=True)
        text = json.dumps(options, sort_keys=True, separators=(",", ":"))
        return cls(text, hashlib.sha256(text.encode()).hexdigest())


@dataclass(frozen=True)
class ActionRequest:
    """Everything an action needs to run: the rendered values and where to write."""

    trigger: str
    event_id: str
    decision_id: int
    idempotency_key: str
    values: Mapping[str, Any]  # template names: fields plus notice/trigger facts
    payload: bytes
    out_dir: Path
    notice: Any = None  # the parsed notice, for products that read it
    extras: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ActionOutcome:
    ok: bool
    log: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    disk_full: bool = False  # it met a full disk: the service shows its disk FULL in `status`


Runner = Callable[[Any, ActionRequest], ActionOutcome]


@dataclass(frozen=True)
class ActionType:
    name: str
    config: type[ActionConfig]
    run: Runner
    doc: str
    writes_files: bool = False  # a file product: rendered by dry-run --products


_TYPES: dict[str, ActionType] = {}
_LOADED = False

# The built-in types by name, each imported only when a rule uses it: loading rules that only
# write notices must not import numpy for the sky-map products (issue 16: load time).
_BUILTIN_MODULES: dict[str, str] = {
    "notice": "tracerules.products.actions.notice",
    "observation": "tracerules.products.actions.observation",
    "gw-alert": "tracerules.products.actions.gw_alert",
    "plugin": "tracerules.products.actions.plugin",
    "webhook": "tracerules.products.actions.webhook",
    "command": "tracerules.products.actions.command",
    "kafka": "tracerules.products.actions.kafka_message",
    "mwa": "tracerules.products.actions.mwa",
    "atca": "tracerules.products.actions.atca",
}


def register(action_type: ActionType) -> None:
    _TYPES[action_type.name] = action_type


def _load_builtin(name: str) -> ActionType | None:
    module = _BUILTIN_MODULES.get(name)
    if module is None:
        return None
    if name not in _TYPES:
        register(importlib.import_module(module).ACTION)
    return _TYPES[name]


def _load_builtin_types() -> None:
    """Every type: the built-in ones, then those of installed plugins (entry points)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for name in _BUILTIN_MODULES:
        _load_builtin(name)
    for ep in entry_points(group="tracerules.actions"):
        loaded = ep.load()
        register(loaded() if callable(loaded) and not isinstance(loaded, ActionType) else loaded)


def action_types() -> Mapping[str, ActionType]:
    _load_builtin_types()
    return dict(_TYPES)


def get(name: str) -> ActionType | None:
    """The action type called `name`; installed plugins are looked up only for a name that
    is not built in (reading entry points scans every installed package)."""
    found = _load_builtin(name)
    if found is not None:
        return found
    _load_builtin_types()
    return _TYPES.get(name)


def field_refs(config: ActionConfig) -> tuple[str, ...]:
    """The keys of an action's config that name one of its trigger's fields: those its
    `used_field_refs()` gives when it has one, else all its `field_refs`."""
    used = getattr(config, "used_field_refs", None)
    return tuple(used()) if callable(used) else tuple(getattr(config, "field_refs", ()))
