"""Observation requests, arbitrated per observatory (behaviour.md section 3).

`ObservatoryMixin` gives any action type an observatory: the engine then arbitrates before the
action may start. The `observation` type itself writes the request as a JSON file, for
schedulers that watch a folder; the `webhook` type sends it to an observatory's API.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, field_validator

from tracerules import __version__
from tracerules.dsl.convert import to_angle, to_duration
from tracerules.dsl.templates import compile_template
from tracerules.dsl.values import Missing
from tracerules.products.io import atomic_write, safe_relative
from tracerules.products.registry import ActionConfig, ActionOutcome, ActionRequest, ActionType


def _parsed(value: Any, convert: Any, what: str) -> float:
    result = convert(value)
    if isinstance(result, Missing) or result <= 0:
        raise ValueError(f"{value!r} is not a positive {what}")
    return float(result)


class ObservatoryMixin(BaseModel):
    """Keys that put an action under observation arbitration."""

    observatory: str | None = Field(None, description="arbitrate with other triggers here")
    ra: str = Field("ra", description="the field holding the right ascension")
    dec: str = Field("dec", description="the field holding the declination")
    repoint: float = Field(
        10 / 60, description="at equal priority, re-point only beyond this (e.g. '10 arcmin')"
    )
    duration: float = Field(3600.0, description="how long an observation holds the telescope")
    test: str | None = Field(None, description="a true/false field marking test observations")

    field_refs: ClassVar[tuple[str, ...]] = ("ra", "dec", "test")

    def used_field_refs(self) -> tuple[str, ...]:
        """The keys naming fields this action reads. Without an observatory nothing is
        arbitrated, so the defaults (`ra`, `dec`) are not needed; keys written out still are
        checked, a typo being a typo."""
        if self.observatory is not None:
            return self.field_refs
        return tuple(ref for ref in self.field_refs if ref in self.model_fields_set)

    @field_validator("repoint", mode="before")
    @classmethod
    def _angle(cls, value: Any) -> float:
        return _parsed(value, to_angle, "angle")

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return _parsed(value, to_duration, "duration")


class ObservationConfig(ActionConfig, ObservatoryMixin):
    """Request an observation: write the request as JSON, under arbitration."""

    type: Literal["observation"]
    observatory: str = Field(description="the telescope that arbitrates between triggers")
    path: str = Field(
        "observations/{observatory}/{trigger}-{event_id}-{decision}.json",
        description="a relative path template for the request file",
    )
    template_fields: ClassVar[tuple[str, ...]] = ("path",)


def run(config: ObservationConfig, request: ActionRequest) -> ActionOutcome:
    values = {**request.values, "observatory": config.observatory}
    relative = safe_relative(compile_template(config.path, values.keys())(values))
    body = {
        "observatory": config.observatory,
        "trigger": request.trigger,
        "event_id": request.event_id,
        "ra": request.values.get(config.ra),
        "dec": request.values.get(config.dec),
        "idempotency_key": request.idempotency_key,
        "arbitration": request.extras.get("arbitration"),
        "provenance": {
            "tool": f"tracerules {__version__}",
            "decision": request.decision_id,
            "notice": request.values.get("notice_id"),
        },
    }
    atomic_write(request.out_dir / relative, json.dumps(body, indent=2).encode() + b"\n")
    return ActionOutcome(
        True,
        [f"requested an observation at {config.observatory}: {relative}"],
        [str(request.out_dir / relative)],
    )


ACTION = ActionType("observation", ObservationConfig, run, __doc__ or "", writes_files=True)
