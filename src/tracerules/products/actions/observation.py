"""Observation requests, arbitrated per observatory (behaviour.md section 3).

`ObservatoryMixin` gives any action type an observatory: the engine then arbitrates before the
action may start. The `observation` type itself writes the request as a JSON file, for
schedulers that watch a folder; the `webhook` type sends it to an observatory's API.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, field_validator

from tracerules import __version__
from tracerules.dsl.convert import to_angle, to_duration
from tracerules.dsl.templates import compile_template
from tracerules.dsl.values import Missing
from tracerules.products.actions.io import atomic_write, safe_relative
from tracerules.products.actions.registry import (
    ActionConfig,
    ActionOutcome,
    ActionRequest,
    ActionType,
)
from tracerules.products.actions.templating import strict_json


def _parsed(value: Any, convert: Any, what: str) -> float:
    result = convert(value)
    if isinstance(result, Missing) or result <= 0:
        raise ValueError(f"{value!r} is not a positive {what}")
    return float(result)


@dataclass(frozen=True)
class ObservationPlan:
    """What an observation request will ask for, decided when the action is planned.

    It is computed on the evaluation clock inside the decision's transaction, so arbitration
    sees the request's real pointings and its real end, and the run sends exactly what was
    planned. `refused` says why the request must not be sent at all (e.g. below the horizon).
    `details` are stored with the action (JSON) for its run to use.
    """

    pointings: tuple[tuple[float, float], ...]
    duration: float
    kind: str = ""
    refused: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "pointings": [list(p) for p in self.pointings],
            "duration": self.duration,
            "kind": self.kind,
            "refused": self.refused,
            **self.details,
        }


@dataclass(frozen=True)
class PlanningContext:
    """What planning an observation may read: the trigger's values, the evaluation clock,
    the notice's lazily built extras (the sky map), the rule set's sites and what the trigger
    already planned for the event."""

    values: Mapping[str, Any]
    now: float
    extra: Callable[[str], Any] = lambda name: None
    sites: Mapping[str, Any] = field(default_factory=dict)
    # The plans of this trigger's earlier observation actions for the same event, oldest first.
    earlier: Callable[[], list[dict[str, Any]]] = list

    def number(self, name: str) -> float | None:
        value = self.values.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return None


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

    def plan_observation(self, ctx: PlanningContext) -> ObservationPlan:
        """One pointing at the trigger's (ra, dec), held for `duration`."""
        ra, dec = ctx.number(self.ra), ctx.number(self.dec)
        pointings = ((ra, dec),) if ra is not None and dec is not None else ()
        return ObservationPlan(pointings, self.duration)

    def is_test(self, values: Mapping[str, Any]) -> bool:
        return bool(self.test and values.get(self.test) is True)

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
    atomic_write(request.out_dir / relative, strict_json(body, indent=2).encode() + b"\n")
    return ActionOutcome(
        True,
        [f"requested an observation at {config.observatory}: {relative}"],
        [str(request.out_dir / relative)],
    )


ACTION = ActionType("observation", ObservationConfig, run, __doc__ or "", writes_files=True)
