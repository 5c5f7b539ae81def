"""The `webhook` action: an HTTP request to an observatory or a chat service.

The URL, query, headers and JSON body are templates over the fields. `${env:NAME}` secrets
are resolved only when the request is sent: what is logged and stored is the template text,
and the dispatcher also redacts the values of every variable the action refers to.

One call sends one request, within `request_timeout` and under the action's time limit
(the whole answer, not each read). The dispatcher owns retries (`runtime.dispatch.retry`):
after a 5xx answer, a timeout or a refused connection the outcome says it may be retried, up
to `attempts` tries in all; after a 4xx one it is final (the request itself is wrong; sending
it again will not help). Every attempt carries the same ``Idempotency-Key`` header (the
action's key), so an API that honours it acts once. The answer is checked against the
accepted status codes and, optionally, a key of its JSON body.

With ``observatory:`` set, the engine arbitrates the request like any observation (priority,
re-pointing threshold): a webhook is how a trigger asks a telescope's API to observe.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field

from tracerules.dsl.templates import resolve_env, secrets_in
from tracerules.products.actions.observation import ObservatoryMixin
from tracerules.products.actions.process import inner_timeout
from tracerules.products.actions.provenance import Provenance
from tracerules.products.actions.registry import (
    ActionConfig,
    ActionOutcome,
    ActionRequest,
    ActionType,
)
from tracerules.products.actions.templating import (
    render_text,
    render_tree,
    resolve_tree,
    strict_json,
    tree_templates,
)
from tracerules.runtime.secrets import redact

USER_AGENT = "tracerules-webhook"
_BODY_LOG = 300  # characters of a response body kept in the log
_CHUNK = 65536


class WebhookConfig(ActionConfig, ObservatoryMixin):
    """Send an HTTP request; JSON body or query from templates; retried on 5xx and timeouts
    (by the dispatcher, `attempts` tries in all)."""

    type: Literal["webhook"]
    url: str = Field(description="the URL template (http or https)")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    query: dict[str, str] = Field(default_factory=dict, description="query parameters")
    headers: dict[str, str] = Field(default_factory=dict, description="extra headers")
    body: Any = Field(
        None,
        description="JSON body: any YAML tree whose strings are templates; default: a "
        "summary of the decision (POST, PUT, PATCH)",
    )
    request_timeout: float = Field(10.0, gt=0, description="seconds to wait for one answer")
    attempts: int = Field(
        3, ge=1, le=10, description="tries in all, on 5xx and timeouts (by the dispatcher)"
    )
    backoff: float = Field(1.0, ge=0, description="seconds before the first retry; doubles")
    ok_status: list[int] = Field(
        default_factory=list, description="accepted status codes (default: any 2xx)"
    )
    expect_key: str | None = Field(None, description="a dotted key the JSON answer must have")
    expect_value: Any = Field(None, description="the value expect_key must hold, if given")

    template_fields: ClassVar[tuple[str, ...]] = ("url", "query", "headers")

    def templates(self) -> dict[str, str]:
        return {**super().templates(), **tree_templates("body", self.body)}


@dataclass
class _Answer:
    status: int | None  # None: no answer (timeout, refused)
    body: bytes
    error: str | None = None


def _default_body(request: ActionRequest) -> dict[str, Any]:
    return {
        "trigger": request.trigger,
        "event_id": request.event_id,
        "decision": request.decision_id,
        "idempotency_key": request.idempotency_key,
        "fields": dict(request.values),
        "provenance": Provenance.of(request).as_dict(),
    }


@dataclass
class _Prepared:
    shown_url: str  # for the log: `${env:NAME}` left as written
    url: str
    body: bytes | None
    headers: dict[str, str]


def _prepare(config: WebhookConfig, request: ActionRequest) -> _Prepared:
    """Fill the templates in, then resolve the secrets: the only place their values exist.

    Raises KeyError when a referenced environment variable is not set.
    """
    values = request.values
    shown_url = real_url = render_text(config.url, values)
    real_url = resolve_env(real_url)
    if config.query:
        query = {k: render_text(v, values) for k, v in config.query.items()}
        sep = "&" if "?" in shown_url else "?"
        shown_url += sep + urllib.parse.urlencode(query, safe="${}:")
        real_url += sep + urllib.parse.urlencode(resolve_tree(query))
    headers = resolve_tree({k: render_text(v, values) for k, v in config.headers.items()})
    headers = {"User-Agent": USER_AGENT, "Idempotency-Key": request.idempotency_key, **headers}
    tree: Any = None
    if config.body is not None:
        tree = resolve_tree(render_tree(config.body, values))
    elif config.method in ("POST", "PUT", "PATCH"):
        tree = _default_body(request)
    body = None
    if isinstance(tree, str):
        body = tree.encode()
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
    elif tree is not None:
        body = strict_json(tree).encode()
        headers.setdefault("Content-Type", "application/json")
    return _Prepared(shown_url, real_url, body, headers)


def _send(
    method: str, url: str, body: bytes | None, headers: dict[str, str], timeout: float
) -> _Answer:
    """One request; the whole answer within `timeout` seconds, or no answer."""
    # The HTTP client is imported on the first request: loading rules that name a webhook
    # (or an MWA or ATCA action, which send through here) does not need it (issue 16).
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    late = _Answer(None, b"", f"no answer within {timeout:g} s")
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            read = _read_by(response, deadline)
            return late if read is None else _Answer(response.status, read)
    except urllib.error.HTTPError as err:
        read = _read_by(err, deadline) if err.fp is not None else b""
        return late if read is None else _Answer(err.code, read)
    except TimeoutError:
        return late
    except urllib.error.URLError as err:
        reason = err.reason
        if isinstance(reason, TimeoutError):
            return late
        return _Answer(None, b"", f"cannot connect: {reason}")
    except OSError as err:
        return _Answer(None, b"", f"connection failed: {err}")


def _read_by(response: Any, deadline: float) -> bytes | None:
    """The body, read in pieces until the deadline: None when it is not all there by then
    (each read has the socket's timeout; a trickling answer must not stretch the attempt)."""
    chunks: list[bytes] = []
    while True:
        if time.monotonic() > deadline:
            return None
        chunk = response.read1(_CHUNK) if hasattr(response, "read1") else response.read(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _lookup(data: Any, dotted: str) -> tuple[bool, Any]:
    for part in dotted.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return False, None
    return True, data


def _check(config: WebhookConfig, answer: _Answer) -> str | None:
    """Why an answer is not a success, or None when it is."""
    assert answer.status is not None
    ok = answer.status in config.ok_status if config.ok_status else 200 <= answer.status < 300
    if not ok:
        return f"status {answer.status} is not accepted"
    if config.expect_key is None:
        return None
    try:
        data = json.loads(answer.body)
    except ValueError:
        return f"the answer is not JSON, so it has no {config.expect_key!r}"
    found, value = _lookup(data, config.expect_key)
    if not found:
        return f"the answer has no {config.expect_key!r}"
    if config.expect_value is not None and value != config.expect_value:
        return f"{config.expect_key} is {value!r}, not {config.expect_value!r}"
    return None


def run(config: WebhookConfig, request: ActionRequest) -> ActionOutcome:
    """Send the request once; the outcome says whether trying again may help."""
    try:
        prepared = _prepare(config, request)
    except KeyError as err:  # a missing variable stays missing: no retry
        return ActionOutcome(False, [f"not sent: {err.args[0]}"], detail={"retryable": False})
    secrets = secrets_in(config.model_dump_json())
    where = f"{config.method} {prepared.shown_url}"
    # Under the action's time limit, so that the answer's absence is reported from here.
    timeout = min(config.request_timeout, inner_timeout(config.timeout))
    answer = _send(config.method, prepared.url, prepared.body, prepared.headers, timeout)
    if answer.status is None:
        line = f"{where}: {redact(answer.error or '', secrets)}"
        return ActionOutcome(False, [line], detail={"status": None, "retryable": True})
    shown = redact(answer.body.decode("utf-8", "replace"), secrets)[:_BODY_LOG]
    log = [f"{where}: status {answer.status} {shown}".rstrip()]
    if answer.status >= 500:  # the service's trouble: another try may be answered
        log.append(f"failed: status {answer.status}")
        return ActionOutcome(False, log, detail={"status": answer.status, "retryable": True})
    problem = _check(config, answer)  # a 4xx or a wrong answer would fail again: final
    if problem is not None:
        log.append(f"failed: {problem}")
    return ActionOutcome(problem is None, log, detail={"status": answer.status, "retryable": False})


ACTION = ActionType("webhook", WebhookConfig, run, __doc__ or "")
