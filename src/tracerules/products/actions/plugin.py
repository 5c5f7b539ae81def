"""The `plugin` action: your own Python, with everything the decision knows.

Two forms:

* ``entry: package.module:function`` is imported and called in the service's process with a
  :class:`PluginContext`. It succeeds when it returns None, True or 0, and fails when it
  returns False or another number, or raises. A hung entry point is abandoned at the time
  limit, but a thread cannot be killed: use ``script`` for code you do not trust to return.
* ``script: path/to/plugin.py`` is run with the service's own interpreter (``sys.executable``),
  the output folder as its argument and the context as JSON on stdin, and only the environment
  it declares in ``env`` (plus PATH, HOME, LANG, LC_ALL, TZ and PYTHONPATH). Its exit code is the
  verdict (stderr is logged, not judged); at the time limit it is killed with its children.

The context holds the notice (topic, partition, offset, id, and its payload inline as text or
as a file path), the fields, the decision, and the files written by the decision's earlier
actions when the dispatcher provides them (``request.extras["files"]``). A plugin failure is
recorded on its own action; the other actions and the service carry on.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from tracerules import __version__
from tracerules.dsl.templates import resolve_env
from tracerules.errors import exception_tail
from tracerules.products.actions.io import atomic_write, out_of_space, safe_relative
from tracerules.products.actions.process import child_env, inner_timeout, run_process
from tracerules.products.actions.registry import (
    ActionConfig,
    ActionOutcome,
    ActionRequest,
    ActionType,
)
from tracerules.products.actions.templating import render_text, strict_json

NOTICE_FACTS = ("topic", "partition", "offset", "notice_id", "ext")
DECISION_FACTS = ("decision", "conclusion", "trigger", "event_id", "event_time")


class PluginConfig(ActionConfig):
    """Run a Python plugin: an entry point in-process, or a script with the interpreter."""

    type: Literal["plugin"]
    entry: str | None = Field(None, description="module:function, called with a PluginContext")
    script: str | None = Field(None, description="a Python script, run with sys.executable")
    args: list[str] = Field(default_factory=list, description="extra script arguments")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="a script's environment (templates, ${env:NAME} for secrets); besides these "
        "it gets only PATH, HOME, LANG, LC_ALL, TZ and PYTHONPATH",
    )
    folder: str = Field(
        "plugins/{trigger}/{event_id}",
        description="the plugin's output folder (relative template), passed as its argument",
    )
    payload: Literal["inline", "file", "none"] = Field(
        "inline", description="notice payload in the context: as text, as a file path, or not"
    )

    template_fields: ClassVar[tuple[str, ...]] = ("folder", "args", "env")

    @model_validator(mode="after")
    def _one_form(self) -> PluginConfig:
        if (self.entry is None) == (self.script is None):
            raise ValueError("give exactly one of entry (module:function) or script (a path)")
        if self.entry is not None and ":" not in self.entry:
            raise ValueError(f"entry must be module:function, not {self.entry!r}")
        return self


@dataclass
class PluginContext:
    """What a plugin is told. ``log`` collects lines for the action's log."""

    tool: str
    trigger: str
    event_id: str
    decision: dict[str, Any]
    notice: dict[str, Any]
    fields: dict[str, Any]
    files: list[str]
    folder: str
    idempotency_key: str
    log: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        data = asdict(self)
        del data["log"]
        return strict_json(data, default=str).encode()


def _context(config: PluginConfig, request: ActionRequest, folder: Path) -> PluginContext:
    values = dict(request.values)
    notice: dict[str, Any] = {k: values.get(k) for k in NOTICE_FACTS}
    if config.payload == "inline":
        notice["payload"] = request.payload.decode("utf-8", "replace")
    elif config.payload == "file":
        path = folder / f"notice-{values.get('notice_id', 'x')}.{values.get('ext', 'txt')}"
        atomic_write(path, request.payload)
        notice["payload_path"] = str(path)
    facts = set(NOTICE_FACTS) | set(DECISION_FACTS) | {"date", "received", "created"}
    return PluginContext(
        tool=f"tracerules {__version__}",
        trigger=request.trigger,
        event_id=request.event_id,
        decision={
            "id": request.decision_id,
            "conclusion": values.get("conclusion"),
            "event_time": values.get("event_time"),
        },
        notice=notice,
        fields={k: v for k, v in values.items() if k not in facts},
        files=[str(f) for f in request.extras.get("files", ())],
        folder=str(folder),
        idempotency_key=request.idempotency_key,
    )


def _load(entry: str) -> Callable[[PluginContext], Any]:
    module_name, _, attr = entry.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{entry} is not callable")
    fn: Callable[[PluginContext], Any] = target
    return fn


def _run_entry(config: PluginConfig, context: PluginContext) -> ActionOutcome:
    assert config.entry is not None
    try:
        result = _load(config.entry)(context)
    except Exception as err:
        tail = exception_tail(err)
        return ActionOutcome(False, [*context.log, f"plugin {config.entry} raised {tail}"])
    ok = result is None or result is True or (type(result) is int and result == 0)
    verdict = "ok" if ok else f"failed (returned {result!r})"
    return ActionOutcome(ok, [*context.log, f"plugin {config.entry}: {verdict}"])


def _run_script(
    config: PluginConfig, request: ActionRequest, context: PluginContext
) -> ActionOutcome:
    assert config.script is not None
    script = Path(config.script).expanduser()
    if not script.is_file():
        return ActionOutcome(False, [f"plugin script {script} not found"])
    args = [resolve_env(render_text(a, request.values)) for a in config.args]
    env = {k: resolve_env(render_text(v, request.values)) for k, v in config.env.items()}
    argv = [sys.executable, str(script.resolve()), context.folder, *args]
    try:
        result = run_process(
            argv,
            timeout=inner_timeout(config.timeout),
            stdin=context.to_json(),
            cwd=Path(context.folder),
            env=child_env(env, "PYTHONPATH"),
            on_start=request.extras.get("on_child"),
        )
    except OSError as err:
        return ActionOutcome(
            False, [f"cannot run plugin {script}: {err}"], disk_full=out_of_space(err)
        )
    log = [f"plugin {script.name}", *result.log_lines()]
    if result.timed_out:
        log.append(f"killed after {result.seconds:.1f} s (time limit)")
        return ActionOutcome(False, log, detail={"timed_out": True})
    ok = result.returncode == 0
    log.append(f"exit code {result.returncode}" + ("" if ok else " (failure)"))
    return ActionOutcome(ok, log, detail={"exit": result.returncode})


def run(config: PluginConfig, request: ActionRequest) -> ActionOutcome:
    values = {"trigger": request.trigger, "event_id": request.event_id, **request.values}
    relative = safe_relative(render_text(config.folder, values))
    folder = request.out_dir / relative
    folder.mkdir(parents=True, exist_ok=True)
    context = _context(config, request, folder)
    if config.entry is not None:
        return _run_entry(config, context)
    return _run_script(config, request, context)


ACTION = ActionType("plugin", PluginConfig, run, __doc__ or "")
