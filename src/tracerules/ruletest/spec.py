"""The rule-test file format (`*.test.yaml`) as pydantic models, `extra="forbid"`.

A test file names the rules it tests and a list of tests; each test feeds notices in order
and states what the triggers decide after chosen notices. See docs/rule-tests.md.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

VoteName = Literal["PASS", "MAYBE", "FAIL", "UNKNOWN"]
ConclusionName = Literal["PASS", "FAIL", "ERROR", "NOT_APPLICABLE"]
TimeValue = datetime | float | str

# What arbitration did to an observation, as tests state it; the engine's names beside them.
ARBITRATION_WORDS = {
    "started": "start",
    "override": "override",
    "re-point": "repoint",
    "clash": "clash",
}
ArbitrationName = Literal["started", "clash", "override", "re-point"]
ALL_TRIGGERS = "*"  # `no_pass: all`, kept apart from trigger ids
_FACTOR_TEXT = re.compile(r"^(PASS|MAYBE|FAIL|UNKNOWN)(\*?)$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FactorExpect(Strict):
    """A factor's expected vote; `inherited` is checked only when given."""

    vote: VoteName
    inherited: bool | None = None


class NoticeStep(Strict):
    """One notice fed to the rules: a file, or an inline payload."""

    file: str | None = Field(None, description="a notice file, relative to the test file")
    member: str | None = Field(
        None, description="with a tar archive as `file`: the notice's name inside it"
    )
    payload: str | dict[str, Any] | None = Field(
        None, description="the notice itself: text (XML or JSON), or a mapping sent as JSON"
    )
    topic: str | None = Field(None, description="the Kafka topic; inferred when not given")
    name: str | None = Field(None, description="a name for `after:`; default: the file name")
    received: TimeValue | None = Field(
        None, description="arrival time (ISO 8601); default: the time the notice gives"
    )
    created: TimeValue | None = Field(None, description="broker time (ISO 8601)")
    set_: dict[str, Any] = Field(
        default_factory=dict,
        alias="set",
        description="JSON notices only: change values, by dotted path (event.group: Burst)",
    )

    @model_validator(mode="after")
    def _one_source(self) -> NoticeStep:
        if (self.file is None) == (self.payload is None):
            raise ValueError("a notice needs exactly one of file or payload")
        if self.member is not None and self.file is None:
            raise ValueError("`member:` names a notice inside the archive `file:` gives")
        return self


def _factor(value: Any) -> Any:
    """'PASS' checks the vote; 'PASS*' also checks that it was inherited."""
    if not isinstance(value, str):
        return value
    match = _FACTOR_TEXT.match(value.strip())
    if match is None:
        raise ValueError(
            f"{value!r} is not a factor vote: write PASS, MAYBE, FAIL or UNKNOWN, "
            "with a trailing * for an inherited vote"
        )
    return {"vote": match.group(1), "inherited": True if match.group(2) else None}


FactorValue = Annotated[FactorExpect, BeforeValidator(_factor)]


class Expectation(Strict):
    """What one trigger decides on the notice of one step."""

    after: int | str | None = Field(
        None, description="the step: its number (from 1) or name; default: the last notice"
    )
    trigger: str
    event_id: str | int | None = None
    conclusion: ConclusionName | None = None
    votes: Literal["PASS", "MAYBE", "FAIL"] | None = Field(
        None, description="the tally of the factors, before MAYBE is demoted to FAIL"
    )
    factors: dict[str, FactorValue] = Field(
        default_factory=dict, description='factor votes: PASS, "PASS*" (inherited), ...'
    )
    actions: list[str] | None = Field(
        None, description="the actions started, by type or name, in order; [] for none"
    )
    arbitration: list[ArbitrationName] | None = Field(
        None,
        description="per observation action, in order: started, clash, override or re-point",
    )

    @field_validator("arbitration", mode="before")
    @classmethod
    def _one_ruling(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _states_something(self) -> Expectation:
        stated = (self.conclusion, self.votes, self.actions, self.arbitration, self.event_id)
        if all(v is None for v in stated) and not self.factors:
            raise ValueError(
                "an expectation needs one of conclusion, votes, factors, actions, "
                "arbitration or event_id"
            )
        return self


class CaseSpec(Strict):
    """One test: notices in order, then expectations."""

    name: str = Field(min_length=1)
    notices: list[NoticeStep] = Field(min_length=1)
    expect: list[Expectation] = Field(default_factory=list)
    no_pass: list[str] = Field(
        default_factory=list,
        description="triggers that must not pass on any notice of the test; `all` for every one",
    )

    @field_validator("no_pass", mode="before")
    @classmethod
    def _all(cls, value: Any) -> Any:
        return [ALL_TRIGGERS] if value == "all" else value

    @model_validator(mode="after")
    def _expects_something(self) -> CaseSpec:
        if not self.expect and not self.no_pass:
            raise ValueError("a test needs `expect:` or `no_pass:`, or it checks nothing")
        return self


class SuiteSpec(Strict):
    """A `*.test.yaml` file. Each test is validated on its own (CaseSpec), so that a mistake
    in one test does not hide the mistakes in the others."""

    schema_version: Literal[1]
    rules: list[str] | None = Field(
        None, description="rule files or folders, relative to this file; default: its folder"
    )
    tests: list[Any] = Field(min_length=1, description="the tests: see CaseSpec")

    @field_validator("rules", mode="before")
    @classmethod
    def _one_path(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value
