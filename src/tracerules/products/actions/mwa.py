"""The `mwa` action: trigger the Murchison Widefield Array through its trigger web service.

One type, three modes (shared/docs/observatories.md):

* ``correlator``: one pointing at the trigger's (ra, dec), sent to ``triggerobs``;
* ``vcs``: the same in voltage-capture mode, sent to ``triggervcs``;
* ``gw``: four sweet-spot pointings chosen from the LVK sky map (see :mod:`mwa_pointings`),
  a ring-buffer dump (``triggerbuffer``), then ``triggervcs`` with one subarray per pointing.
  A GW request that re-points a GW observation still running does not dump the buffer again:
  voltage capture has been running since the first dump.

Everything is decided when the action is planned, on the decision's clock: the pointings, a
refusal for a target below the site's elevation limit (nothing is sent; the reason is the
action's log), the observation's end for arbitration (nobs x freqspecs x exptime, plus the
calibrator), and ``group_id`` for a repeat of an event already observed. The run sends exactly
that. Every option the service accepts is sent; the RA unit is explicit in the rule (the
client library says hours, TRACE-T sent degrees). Test observations (and ``pretend: true``)
send ``pretend=True``. The secure key is a ``${env:NAME}`` reference, resolved only on the
wire: the request file written next to the other products shows ``***``.

An answer that is not JSON, or says ``success: false``, is a failure with the service's errors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from tracerules.dsl.convert import to_angle
from tracerules.dsl.templates import ENV_REF
from tracerules.dsl.values import Missing
from tracerules.products.actions import mwa_wire
from tracerules.products.actions.io import safe_relative
from tracerules.products.actions.observation import (
    ObservationPlan,
    ObservatoryMixin,
    PlanningContext,
)
from tracerules.products.actions.registry import (
    ActionConfig,
    ActionOutcome,
    ActionRequest,
    ActionType,
)
from tracerules.products.actions.templating import render_text
from tracerules.products.actions.wire import json_answer, send, write_requests

DEFAULT_URL = "http://mro.mwa128t.org/trigger/"
SUBARRAYS = ("all_ne", "all_nw", "all_se", "all_sw")
_FREQSPEC = re.compile(r"^\d+([,:;]\d+)*$")


class MwaConfig(ActionConfig, ObservatoryMixin):
    """Trigger the MWA: correlator, VCS, or GW sweet-spot VCS with a buffer dump."""

    type: Literal["mwa"]
    mode: Literal["correlator", "vcs", "gw"] = Field(description="what to trigger")
    observatory: str = Field("mwa", description="arbitration: every mode shares one telescope")
    site: str = Field("mwa", description="the site whose elevation limit targets must clear")
    url: str = Field(DEFAULT_URL, description="the trigger web service's base URL")
    project_id: str = Field(description="the MWA project, e.g. G0055")
    secure_key: str = Field(description="the project's key: a ${env:NAME} reference")
    ra_unit: Literal["hours", "degrees"] = Field(description="the unit the service takes RA in")
    nobs: int = Field(1, ge=1, le=100, description="observations per position and frequency")
    exptime: int = Field(896, ge=8, description="seconds per observation, a multiple of 8")
    calexptime: int = Field(120, ge=8, description="seconds of the calibrator observation")
    calibrator: bool | str = Field(True, description="true: the service picks one; or a name")
    freqspecs: list[str] = Field(["145,24"], min_length=1, description='e.g. ["145,24"]')
    freqres: float | None = Field(None, gt=0, description="correlator kHz (with inttime)")
    inttime: float | None = Field(None, gt=0, description="correlator seconds (with freqres)")
    avoidsun: bool = Field(True, description="put the Sun in a beam null")
    tileset: str | None = Field(None, description="the tile set, e.g. all_on")
    obsname: str = Field("{trigger}_{event_id}", description="observation name template")
    creator: str = Field("tracerules", description="who the service records as creator")
    subarrays: list[str] = Field(list(SUBARRAYS), description="gw: one subarray per pointing")
    min_separation: float = Field(10.0, description="gw: pointings at least this far apart")
    pretend: bool = Field(False, description="always ask the service to plan only")
    request_timeout: float = Field(30.0, gt=0, description="seconds to wait for one answer")
    timeout: float = Field(120.0, gt=0, description="seconds before the action is abandoned")
    path: str = Field(
        "requests/mwa/{trigger}-{event_id}-{decision}.json",
        description="where the requests are written (secret redacted)",
    )

    template_fields: ClassVar[tuple[str, ...]] = ("obsname", "path")
    site_refs: ClassVar[tuple[str, ...]] = ("site",)

    @field_validator("secure_key")
    @classmethod
    def _secret(cls, value: str) -> str:
        if not ENV_REF.fullmatch(value):
            raise ValueError("the secure key must be an environment reference: ${env:NAME}")
        return value

    @field_validator("exptime", "calexptime")
    @classmethod
    def _eight(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"{value} s is not a multiple of 8 s")
        return value

    @field_validator("freqspecs")
    @classmethod
    def _freqspecs(cls, value: list[str]) -> list[str]:
        for spec in value:
            if not _FREQSPEC.match(spec):
                raise ValueError(f"{spec!r} is not a frequency spec like '145,24' or '121:24'")
        return value

    @field_validator("min_separation", mode="before")
    @classmethod
    def _separation(cls, value: Any) -> float:
        angle = to_angle(value)
        if isinstance(angle, Missing) or not 0.0 < angle < 90.0:
            raise ValueError(f"{value!r} is not an angle between 0 and 90 deg")
        return float(angle)

    @model_validator(mode="after")
    def _consistent(self) -> MwaConfig:
        if (self.freqres is None) != (self.inttime is None):
            raise ValueError("give freqres and inttime together, or neither")
        if "duration" in self.model_fields_set:
            raise ValueError(
                "an MWA observation lasts nobs x freqspecs x exptime (+ calexptime): "
                "set those instead of duration"
            )
        if self.mode == "gw" and len(self.subarrays) != len(SUBARRAYS):
            raise ValueError(f"gw mode points {len(SUBARRAYS)} subarrays: give four")
        return self

    def is_test(self, values: Mapping[str, Any]) -> bool:
        """A pretend request never holds the real telescope: it is arbitrated as a test."""
        return self.pretend or super().is_test(values)

    def used_field_refs(self) -> tuple[str, ...]:
        """gw mode points at sweet spots from the sky map: it reads no ra/dec fields."""
        return ("test",) if self.mode == "gw" else self.field_refs

    def observing_seconds(self) -> float:
        return float(self.nobs * len(self.freqspecs) * self.exptime)

    def plan_observation(self, ctx: PlanningContext) -> ObservationPlan:
        return mwa_wire.plan(self, ctx)


def run(config: MwaConfig, request: ActionRequest) -> ActionOutcome:
    plan = request.values.get("_plan")
    if not isinstance(plan, dict) or not plan.get("pointings"):
        return ActionOutcome(False, ["not sent: the observation was not planned"])
    requests = mwa_wire.requests(config, request.values, plan)
    relative = safe_relative(render_text(config.path, request.values))
    target = request.out_dir / relative
    write_requests(target, requests, {"service": "mwa", "mode": config.mode, "plan": plan})
    log = [f"wrote {relative}"]
    if request.extras.get("dry_run"):
        log += [f"dry run: would send {r.method} {r.shown()['url']}" for r in requests]
        return ActionOutcome(True, log, [str(target)])
    for wire in requests:
        ok, lines = _exchange(config, wire)
        log += lines
        if not ok:
            return ActionOutcome(False, log, [str(target)])
    return ActionOutcome(True, log, [str(target)])


def _exchange(config: MwaConfig, wire: mwa_wire.WireRequest) -> tuple[bool, list[str]]:
    where = f"{wire.method} {wire.shown()['url']}"
    try:
        answer = send(wire, config.request_timeout)
    except KeyError as err:
        return False, [f"not sent: {err.args[0]}"]
    data, problem = json_answer(answer)
    if data is None:
        return False, [f"{where}: failed: {problem}"]
    ok, summary = mwa_wire.judge(data)
    status = f"status {answer.status}"
    if ok and answer.status is not None and not 200 <= answer.status < 300:
        ok, summary = False, f"{summary}; {status}"
    return ok, [f"{where}: {status}: {'ok' if ok else 'failed'}: {summary}"]


ACTION = ActionType("mwa", MwaConfig, run, __doc__ or "", writes_files=True)
