"""The `atca` action: an ATCA rapid-response (NAPA over-ride) request.

It follows the documented format of the public client library (ste616/atca-rapid-response-api,
python/docs/reference.md): a form-encoded POST of ``email``, ``authToken``, ``schedule`` (a
CABB schedule as text, in the ``$SCAN*V5`` ... ``$SCANEND`` format the CABB scheduler library
writes), ``nameTarget``, ``nameCalibrator``, ``minimumTime`` and ``maximumLag`` (hours), and in
test mode ``test``, ``noTimeLimit``, ``noScoreLimit``, ``emailOnly``, ``noEmail``.

The schedule is built from the rule: for each band, a calibrator scan then a target scan,
both ``Dwell``. The bands are data (:data:`BANDS`): a band's frequencies must lie in it, so a
7 mm setup is labelled 7mm (TRACE-T called it "6mm"). The answer is JSON: ``error`` or
``success`` other than true, or an unverified token, is a failure with the service's words.
Test observations (the `test:` field) and ``test_mode: true`` ask the service for a test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tracerules.dsl.convert import to_duration
from tracerules.dsl.templates import ENV_REF
from tracerules.dsl.values import Missing
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
from tracerules.products.actions.wire import WireRequest, json_answer, send, write_requests

DEFAULT_URL = (
    "https://www.narrabri.atnf.csiro.au/cgi-bin/obstools/rapid_response/rapid_response_service.py"
)


@dataclass(frozen=True)
class Band:
    name: str
    low: int  # MHz: both CABB frequencies must lie in [low, high)
    high: int
    freq1: int  # the default setup
    freq2: int


# The ATCA's receivers, with the CABB scheduler library's band edges (frequency2BandName) and
# the usual continuum setups.
BANDS: Mapping[str, Band] = {
    b.name: b
    for b in (
        Band("16cm", 1100, 3100, 2100, 2100),
        Band("4cm", 3100, 12000, 5500, 9000),
        Band("15mm", 12000, 27000, 17000, 19000),
        Band("7mm", 27000, 52000, 33000, 35000),
        Band("3mm", 52000, 106000, 93000, 95000),
    )
}


def _seconds(value: Any) -> float:
    result = to_duration(value)
    if isinstance(result, Missing) or result <= 0:
        raise ValueError(f"{value!r} is not a positive duration (e.g. '20 min')")
    return float(result)


class BandScan(BaseModel):
    """One band of the schedule: its exposure on the target, and its two CABB frequencies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    band: Literal["16cm", "4cm", "15mm", "7mm", "3mm"]
    exposure: float = Field(description="time on the target, e.g. '20 min'")
    freq1: int | None = Field(None, description="MHz; default: the band's usual setup")
    freq2: int | None = Field(None, description="MHz; default: the band's usual setup")

    @field_validator("exposure", mode="before")
    @classmethod
    def _exposure(cls, value: Any) -> float:
        return _seconds(value)

    @model_validator(mode="after")
    def _in_band(self) -> BandScan:
        band = BANDS[self.band]
        for freq in (self.freq1, self.freq2):
            if freq is not None and not band.low <= freq < band.high:
                raise ValueError(
                    f"{freq} MHz is not in the {self.band} band ({band.low}-{band.high} MHz)"
                )
        return self

    def frequencies(self) -> tuple[int, int]:
        band = BANDS[self.band]
        return self.freq1 or band.freq1, self.freq2 or band.freq2


class Calibrator(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="as the service should find it in the schedule")
    ra: str = Field(description="HH:MM:SS.s (J2000)")
    dec: str = Field(description="+DD:MM:SS.s (J2000)")


class AtcaConfig(ActionConfig, ObservatoryMixin):
    """Request an ATCA rapid-response observation with a CABB schedule built from the rule."""

    type: Literal["atca"]
    observatory: str = Field("atca", description="arbitration between triggers here")
    url: str = Field(DEFAULT_URL, description="the rapid-response service")
    project: str = Field(description="the NAPA project code, e.g. C3204")
    email: str = Field(description="the requester's address, as on the proposal")
    token: str = Field(description="the authentication token: a ${env:NAME} reference")
    http_user: str | None = Field(None, description="web server user (text or ${env:NAME})")
    http_password: str | None = Field(None, description="web server password: ${env:NAME}")
    target_name: str = Field("{event_id}", description="the target's name template")
    calibrator: Calibrator = Field(description="the phase calibrator scanned before each band")
    calibrator_scan: float = Field(120.0, description="calibrator scan length, e.g. '2 min'")
    bands: list[BandScan] = Field(min_length=1, description="the bands, observed in order")
    minimum_time: float = Field(3600.0, description="the least useful time, e.g. '2 h'")
    maximum_lag: float = Field(12 * 3600.0, description="latest start from now, e.g. '12 h'")
    test_mode: bool = Field(False, description="always send test requests")
    no_time_limit: bool = Field(True, description="test mode: ignore the project's time left")
    no_score_limit: bool = Field(True, description="test mode: ignore the TAC score")
    no_email: bool = Field(True, description="test mode: send no email")
    email_only: str | None = Field(None, description="test mode: email only this address")
    request_timeout: float = Field(60.0, gt=0, description="seconds to wait for the answer")
    timeout: float = Field(120.0, gt=0, description="seconds before the action is abandoned")
    path: str = Field(
        "requests/atca/{trigger}-{event_id}-{decision}.json",
        description="where the request is written (token redacted)",
    )

    template_fields: ClassVar[tuple[str, ...]] = ("target_name", "path")

    @field_validator("token", "http_password")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is not None and not ENV_REF.fullmatch(value):
            raise ValueError("a credential must be an environment reference: ${env:NAME}")
        return value

    @field_validator("calibrator_scan", "minimum_time", "maximum_lag", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> float:
        return _seconds(value)

    @model_validator(mode="after")
    def _consistent(self) -> AtcaConfig:
        if "duration" in self.model_fields_set:
            raise ValueError("an ATCA request lasts its bands' scans: set those, not duration")
        if (self.http_user is None) != (self.http_password is None):
            raise ValueError("give http_user and http_password together, or neither")
        return self

    def is_test(self, values: Mapping[str, Any]) -> bool:
        """A test request never holds the real telescope: it is arbitrated as a test."""
        return self.test_mode or super().is_test(values)

    def schedule_seconds(self) -> float:
        return sum(b.exposure + self.calibrator_scan for b in self.bands)

    def plan_observation(self, ctx: PlanningContext) -> ObservationPlan:
        base = super().plan_observation(ctx)
        refused = None if base.pointings else f"no position in '{self.ra}' and '{self.dec}'"
        details = {"test": self.is_test(ctx.values)}
        return ObservationPlan(base.pointings, self.schedule_seconds(), "atca", refused, details)


def sexagesimal(value: float, hours: bool) -> str:
    """RA as HH:MM:SS.s (hours) or Dec as +DD:MM:SS.s, rounded to a tenth of a second."""
    scaled = (value % 360.0) / 15.0 if hours else abs(value)
    tenths = round(scaled * 36000)
    if hours:
        tenths %= 24 * 36000
    whole, frac = divmod(tenths, 10)
    text = f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}.{frac}"
    return text if hours else ("-" if value < 0 else "+") + text


def _clock(seconds: float) -> str:
    total = round(seconds)
    return f"{total // 3600:02d}:{total // 60 % 60:02d}:{total % 60:02d}"


def _scan(source: str, ra: str, dec: str, length: float, project: str, band: BandScan) -> str:
    freq1, freq2 = band.frequencies()
    return "\n".join(
        [
            "$SCAN*V5",
            f"Source={source}",
            f"RA={ra}",
            f"Dec={dec}",
            "Epoch=J2000",
            f"ScanLength={_clock(length)}",
            "ScanType=Dwell",
            f"Project={project}",
            f"Freq-1={freq1}",
            f"Freq-2={freq2}",
            "$SCANEND",
        ]
    )


def schedule(config: AtcaConfig, target: str, ra: float, dec: float) -> str:
    """The CABB schedule: per band, the calibrator then the target."""
    cal = config.calibrator
    ra_text, dec_text = sexagesimal(ra, True), sexagesimal(dec, False)
    scans = []
    for band in config.bands:
        scans.append(_scan(cal.name, cal.ra, cal.dec, config.calibrator_scan, config.project, band))
        scans.append(_scan(target, ra_text, dec_text, band.exposure, config.project, band))
    return "\n".join(scans) + "\n"


def build_request(
    config: AtcaConfig, values: Mapping[str, Any], plan: Mapping[str, Any]
) -> WireRequest:
    (ra, dec), *_ = plan["pointings"]
    target = render_text(config.target_name, values)
    fields = {
        "email": config.email,
        "authToken": config.token,
        "schedule": schedule(config, target, float(ra), float(dec)),
        "nameTarget": target,
        "nameCalibrator": config.calibrator.name,
        "minimumTime": f"{config.minimum_time / 3600:g}",
        "maximumLag": f"{config.maximum_lag / 3600:g}",
    }
    if plan.get("test"):
        fields |= {
            "test": "True",
            "noTimeLimit": str(config.no_time_limit),
            "noScoreLimit": str(config.no_score_limit),
        }
        if config.email_only:
            fields["emailOnly"] = config.email_only
        if config.no_email:
            fields["noEmail"] = "True"
    auth = None
    if config.http_user is not None and config.http_password is not None:
        auth = (config.http_user, config.http_password)
    return WireRequest("rapid_response", "POST", config.url, {}, fields, basic_auth=auth)


def judge(data: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether the over-ride was granted, and what the service said."""
    if "error" in data:
        return False, f"the service said: {data['error']}"
    token = data.get("authenticationToken")
    if not isinstance(token, dict) or token.get("verified") is not True:
        return False, f"the authentication token was not verified: {token!r}"
    if data.get("success") is not True:
        return False, f"the service said success={data.get('success')!r}"
    given = data.get("observations")
    obs: Mapping[str, Any] = given if isinstance(given, dict) else {}
    mode = " (test)" if data.get("testMode") else ""
    return True, (
        f"granted{mode}: id {data.get('id', '-')}, start {obs.get('startDate', '-')}, "
        f"{obs.get('hoursAllocated', '-')} h"
    )


def run(config: AtcaConfig, request: ActionRequest) -> ActionOutcome:
    plan = request.values.get("_plan")
    if not isinstance(plan, dict) or not plan.get("pointings"):
        return ActionOutcome(False, ["not sent: the observation was not planned"])
    wire = build_request(config, request.values, plan)
    relative = safe_relative(render_text(config.path, request.values))
    target = request.out_dir / relative
    write_requests(target, [wire], {"service": "atca", "plan": plan})
    where = f"{wire.method} {wire.shown()['url']}"
    log = [f"wrote {relative}"]
    if request.extras.get("dry_run"):
        return ActionOutcome(True, [*log, f"dry run: would send {where}"], [str(target)])
    try:
        answer = send(wire, config.request_timeout)
    except KeyError as err:
        return ActionOutcome(False, [*log, f"not sent: {err.args[0]}"], [str(target)])
    data, problem = json_answer(answer)
    if data is None:
        return ActionOutcome(False, [*log, f"{where}: failed: {problem}"], [str(target)])
    ok, summary = judge(data)
    line = f"{where}: status {answer.status}: {'ok' if ok else 'failed'}: {summary}"
    return ActionOutcome(ok, [*log, line], [str(target)])


ACTION = ActionType("atca", AtcaConfig, run, __doc__ or "", writes_files=True)
