"""The rule-file format as pydantic models (`extra="forbid"`): the single source of the schema.

A rule file holds a `schema_version`, and any of `topics` (the registry), `sites` (where
telescopes are) and `triggers`.
Expressions stay text here; `rules.compile` turns them into closures.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tracerules.products.sky.sites import Site, parse_angle

SCHEMA_VERSION = 1

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

Conversion = Literal["auto", "float", "int", "bool", "string", "time", "duration", "angle", "list"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TopicSpec(Strict):
    """A Kafka topic and the format of its payloads."""

    name: str = Field(min_length=1, description="the Kafka topic name")
    format: Literal["json", "xml"]
    namespaces: dict[str, str] = Field(
        default_factory=dict, description="extra XML namespace prefixes; voe is predeclared"
    )
    description: str | None = None


Angle = float | str  # degrees, or text like '-26:42:11.95' / '116:40:14.93 E'


class SiteSpec(Strict):
    """An observing site: where it is and the limits within which it observes."""

    name: str = Field(pattern=NAME_PATTERN, description="how expressions name it, e.g. 'mwa'")
    latitude: Angle = Field(description="geodetic latitude: degrees, or 'DD:MM:SS.s' text")
    longitude: Angle = Field(description="east longitude: degrees, or 'DDD:MM:SS.s E' text")
    height: float = Field(description="metres above the WGS84 ellipsoid")
    elevation_limit: float = Field(
        ge=-90, le=90, description="degrees: the lowest elevation the telescope observes at"
    )
    sun_limit: float | None = Field(
        None,
        ge=-90,
        le=90,
        description="degrees: observes only while the Sun is below this (e.g. -12); "
        "leave out for a radio telescope",
    )
    description: str | None = None

    @field_validator("latitude", "longitude")
    @classmethod
    def _angle(cls, value: Angle, info: ValidationInfo) -> Angle:
        degrees = parse_angle(value)
        low, high = (-90.0, 90.0) if info.field_name == "latitude" else (-180.0, 360.0)
        if not low <= degrees <= high:
            raise ValueError(f"{info.field_name} {degrees:g} deg is outside [{low:g}, {high:g}]")
        return value

    def to_site(self) -> Site:
        return Site(
            self.name,
            parse_angle(self.latitude),
            parse_angle(self.longitude),
            self.height,
            self.elevation_limit,
            self.sun_limit,
            self.description,
        )


class FieldSpec(Strict):
    """A named value: a JSONPath or XPath selector, or an expression over other fields."""

    jsonpath: str | None = Field(None, description="first match of a JSONPath (JSON topics)")
    xpath: str | None = Field(None, description="first match of an XPath (XML topics)")
    expr: str | None = Field(None, description="an expression over other fields")
    as_: Conversion = Field(
        "auto",
        alias="as",
        description="conversion: auto keeps JSON types and XML text; the others are explicit",
    )
    missing_if: str | None = Field(
        None,
        description="a true/false expression: when true, the value read is a placeholder "
        "and the field is missing, e.g. 'error == 0 deg' or 'coords_type == 0'",
    )
    description: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> FieldSpec:
        given = [k for k in ("jsonpath", "xpath", "expr") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a field needs exactly one of jsonpath, xpath or expr"
                + (f" (found {', '.join(given)})" if given else "")
            )
        return self


class ConditionSpec(Strict):
    """A condition written out in full; a plain string is shorthand for `when:`."""

    when: str = Field(description="an expression giving true/false or PASS/MAYBE/FAIL")
    description: str | None = None


class LintSettings(Strict):
    disable: list[str] = Field(default_factory=list, description="lint identifiers to skip")


class TriggerSpec(Strict):
    """A named rule: which notices it reads, what it checks, and what it does on PASS."""

    id: str = Field(pattern=ID_PATTERN, description="unique across every rule file")
    description: str | None = None
    topics: list[str] = Field(min_length=1, description="topics of one format")
    event_id: str = Field(pattern=NAME_PATTERN, description="the field that names the event")
    event_time: str = Field(pattern=NAME_PATTERN, description="the field with the event's time")
    expiry: str = Field("1 d", description="how long after the event time it may act, e.g. 2 h")
    priority: int = Field(100, ge=0, description="lower is evaluated first and wins clashes")
    mode: Literal["live", "pretend", "off"] = "live"
    fields: dict[str, FieldSpec] = Field(default_factory=dict)
    conditions: dict[str, str | ConditionSpec] = Field(default_factory=dict)
    actions: list[dict[str, Any]] = Field(
        default_factory=list, description="what a PASS does; each item has a type:"
    )
    lint: LintSettings = Field(default_factory=LintSettings)


class RuleFileSpec(Strict):
    """The top level of a rule file; triggers are validated one by one (see the loader)."""

    schema_version: Literal[1] = Field(description="the rule-format version")
    description: str | None = None
    topics: list[TopicSpec] = Field(default_factory=list)
    sites: list[SiteSpec] = Field(default_factory=list, description="observing sites")
    triggers: list[dict[str, Any]] = Field(default_factory=list)


def _functions() -> list[dict[str, str]]:
    """The expression language's built-ins (as `tracerules functions` lists them), for editors."""
    from tracerules.rules.functions import builtin_functions

    return [
        {"name": b.name, "signature": b.signature(), "category": b.category, "doc": b.doc}
        for b in sorted(builtin_functions().values(), key=lambda b: (b.category, b.name))
    ]


def json_schema() -> dict[str, Any]:
    """A JSON Schema of rule files, with triggers and action types spelled out."""
    from tracerules.products.actions.registry import action_types

    schema = RuleFileSpec.model_json_schema(by_alias=True)
    trigger = TriggerSpec.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    defs = schema.setdefault("$defs", {})
    defs.update(trigger.pop("$defs", {}))
    actions = []
    for name, action in sorted(action_types().items()):
        sub = action.config.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(sub.pop("$defs", {}))
        defs[action.config.__name__] = sub
        actions.append({"$ref": f"#/$defs/{action.config.__name__}"})
        del name
    trigger["properties"]["actions"]["items"] = {"oneOf": actions}
    cond = trigger["properties"]["conditions"]
    cond["description"] = "name: expression, or name: {when: expression, description: ...}"
    defs["TriggerSpec"] = trigger
    schema["properties"]["triggers"]["items"] = {"$ref": "#/$defs/TriggerSpec"}
    schema["x-functions"] = _functions()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "tracerules rule file"
    return schema
