"""The `command` action: run a program with an argv template, never through a shell.

Each item of ``argv`` is a `{name}` template, so a field value is always exactly one argument
whatever it contains: no quoting, no injection. `${env:NAME}` in ``argv`` or ``env`` is read
when the command runs (prefer ``env`` for secrets: argv is visible to other local users).
The command sees only the environment it declares, plus PATH, HOME, LANG, LC_ALL and TZ. The
exit code decides success; stderr is logged, not judged. On timeout the command and its
children are killed.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from tracerules.dsl.templates import resolve_env
from tracerules.products.actions.io import out_of_space, safe_relative
from tracerules.products.actions.process import child_env, inner_timeout, run_process
from tracerules.products.actions.registry import (
    ActionConfig,
    ActionOutcome,
    ActionRequest,
    ActionType,
)
from tracerules.products.actions.templating import render_text


class CommandConfig(ActionConfig):
    """Run a program: argv is a list of templates; the exit code is the verdict."""

    type: Literal["command"]
    argv: list[str] = Field(description="the program and its arguments, each a template")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="the command's environment (templates); besides these it gets only "
        "PATH, HOME, LANG, LC_ALL and TZ",
    )
    cwd: str | None = Field(None, description="working folder, relative to the output folder")
    ok_exit: list[int] = Field(default_factory=lambda: [0], description="exit codes of success")

    template_fields: ClassVar[tuple[str, ...]] = ("argv", "env", "cwd")

    @field_validator("argv")
    @classmethod
    def _argv(cls, value: list[str]) -> list[str]:
        if not value or not value[0].strip():
            raise ValueError("argv needs at least the program")
        return value


def run(config: CommandConfig, request: ActionRequest) -> ActionOutcome:
    values = request.values
    shown = [render_text(arg, values) for arg in config.argv]  # env refs still unresolved
    argv = [resolve_env(arg) for arg in shown]
    env = child_env({k: resolve_env(render_text(v, values)) for k, v in config.env.items()})
    cwd = request.out_dir
    if config.cwd:
        cwd = request.out_dir / safe_relative(render_text(config.cwd, values))
    cwd.mkdir(parents=True, exist_ok=True)
    try:
        result = run_process(
            argv,
            timeout=inner_timeout(config.timeout),
            cwd=cwd,
            env=env,
            on_start=request.extras.get("on_child"),
        )
    except OSError as err:
        why = f"cannot run {shown[0]}: {err.strerror or err}"
        return ActionOutcome(False, [why], disk_full=out_of_space(err))
    log = [f"ran {' '.join(shown)}", *result.log_lines()]
    if result.timed_out:
        log.append(f"killed after {result.seconds:.1f} s (time limit)")
        return ActionOutcome(False, log, detail={"timed_out": True})
    ok = result.returncode in config.ok_exit
    log.append(f"exit code {result.returncode}" + ("" if ok else " (failure)"))
    return ActionOutcome(ok, log, detail={"exit": result.returncode})


ACTION = ActionType("command", CommandConfig, run, __doc__ or "")
