"""The `notice` action: write the raw notice, byte for byte, to a templated path."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from tracerules.dsl.templates import compile_template
from tracerules.products.actions.io import atomic_write, safe_relative
from tracerules.products.actions.registry import (
    ActionConfig,
    ActionOutcome,
    ActionRequest,
    ActionType,
)


class NoticeConfig(ActionConfig):
    """Write the notice as received under the output folder."""

    type: Literal["notice"]
    path: str = Field(
        "{trigger}/{event_id}/{topic}-{partition}-{offset}.{ext}",
        description="a relative path template; {field} names and notice facts are filled in",
    )
    template_fields: ClassVar[tuple[str, ...]] = ("path",)


def run(config: NoticeConfig, request: ActionRequest) -> ActionOutcome:
    render = compile_template(config.path, request.values.keys())
    relative = safe_relative(render(request.values))
    target = request.out_dir / relative
    atomic_write(target, request.payload)
    return ActionOutcome(True, [f"wrote {relative}"], [str(target)])


ACTION = ActionType("notice", NoticeConfig, run, __doc__ or "", writes_files=True)
