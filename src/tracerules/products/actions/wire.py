"""Form-encoded requests to observatory services (MWA, ATCA), shown before they are sent.

A `WireRequest` holds the URL query and the form fields with secrets still written as
`${env:NAME}`: that is the form that is logged, stored and written as a product, with each
reference shown as ``***``. Only `send` resolves the references, into the bytes on the wire.
There is one attempt per request and a timeout on it: triggering a telescope twice because an
answer was slow would be worse than reporting the failure.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracerules.dsl.templates import ENV_REF, resolve_env
from tracerules.products.actions.io import atomic_write
from tracerules.products.actions.templating import strict_json
from tracerules.products.actions.webhook import USER_AGENT, _Answer, _send

REDACTED = "***"


@dataclass(frozen=True)
class WireRequest:
    """One HTTP request: `fields` is the form body (POST) or nothing (GET)."""

    name: str  # what the step does, for the log: "triggerbuffer", "triggervcs", ...
    method: str
    url: str
    query: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # may hold ${env:NAME} too
    basic_auth: tuple[str, str] | None = None  # (user, password), each text or ${env:NAME}

    def full_url(self) -> str:
        if not self.query:
            return self.url
        return self.url + "?" + urllib.parse.urlencode(dict(self.query), safe="${}:")

    def shown(self) -> dict[str, Any]:
        """The request as written to products and logs: every secret replaced by ***."""
        return {
            "name": self.name,
            "method": self.method,
            "url": redact(self.full_url()),
            "body": {key: redact(value) for key, value in self.fields.items()},
            **(
                {"headers": {k: redact(v) for k, v in self.headers.items()}} if self.headers else {}
            ),
            **({"basic_auth": ":".join(map(redact, self.basic_auth))} if self.basic_auth else {}),
        }

    def wire_body(self) -> bytes | None:
        if self.method == "GET":
            return None
        resolved = {key: resolve_env(value) for key, value in self.fields.items()}
        return urllib.parse.urlencode(resolved).encode()

    def wire_url(self) -> str:
        if not self.query:
            return resolve_env(self.url)
        resolved = {key: resolve_env(value) for key, value in self.query.items()}
        return resolve_env(self.url) + "?" + urllib.parse.urlencode(resolved)


def redact(text: str) -> str:
    return ENV_REF.sub(REDACTED, text)


def send(request: WireRequest, timeout: float) -> _Answer:
    """Send once. Raises KeyError when a referenced environment variable is not set."""
    body = request.wire_body()
    url = request.wire_url()
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    headers.update({key: resolve_env(value) for key, value in request.headers.items()})
    if request.basic_auth is not None:
        pair = ":".join(resolve_env(part) for part in request.basic_auth)
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    return _send(request.method, url, body, headers, timeout)


def json_answer(answer: _Answer) -> tuple[dict[str, Any] | None, str | None]:
    """The answer's JSON object, or why there is none (no answer, not JSON, not an object)."""
    if answer.status is None:
        return None, answer.error or "no answer"
    text = answer.body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        return None, f"status {answer.status}, not JSON: {text[:200]!r}"
    if not isinstance(data, dict):
        return None, f"status {answer.status}, JSON but not an object: {text[:200]!r}"
    return data, None


def write_requests(target: Path, requests: list[WireRequest], extra: Mapping[str, Any]) -> None:
    """The requests as a JSON product (secrets redacted), for dry runs and the record."""
    document = {**extra, "requests": [r.shown() for r in requests]}
    atomic_write(target, strict_json(document, indent=2).encode() + b"\n")
