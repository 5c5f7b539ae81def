"""Local stand-ins for the MWA trigger web service and the ATCA rapid-response service.

Each is a real HTTP server on 127.0.0.1 (a free port) that parses requests the way the real
service does (form-encoded body, `project_id`/`obsname` in the MWA query) and answers in its
documented JSON: the MWA's ``success``/``errors``/``params``/``clear``/``schedule`` (plus
``obsid_list`` for a buffer dump), the ATCA's ``authenticationToken``/``success``/``id``/
``observations``/``testMode``, or ``error``. It checks the key it was given, so a wrong or
missing key is answered as the service would. A test can script the next answers: a service
error, a slow answer, an HTTP 500 with an HTML page, a non-JSON 200.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MWA_KEY = "mwa-standin-key-5b1e"
ATCA_TOKEN = "atca-standin-token-77d2"
GPS_START = 1_400_000_000


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    body: dict[str, str]
    headers: dict[str, str]


@dataclass
class Scripted:
    """An answer that replaces the service's own for one request."""

    status: int = 200
    body: bytes = b""
    delay: float = 0.0
    content_type: str = "application/json"


@dataclass
class StandIn:
    url: str
    received: list[Received] = field(default_factory=list)
    script: list[Scripted] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


def mwa_answer(path: str, query: dict[str, str], body: dict[str, str]) -> dict[str, Any]:
    """What the MWA trigger service answers (mwa_trigger/triggerservice.py docstrings)."""
    errors: dict[str, str] = {}
    if body.get("secure_key") != MWA_KEY:
        errors["0"] = f"Invalid secure_key for project_id {query.get('project_id')}"
    if path.endswith("triggerobs") or path.endswith("triggervcs"):
        if "ra" not in body or "dec" not in body:
            errors[str(len(errors))] = "No valid pointing (ra/dec, alt/az or source) given"
        if int(body.get("exptime", "8")) % 8:
            errors[str(len(errors))] = "exptime must be a multiple of 8 seconds"
    pretend = body.get("pretend") == "True"
    answer: dict[str, Any] = {
        "success": not errors,
        "errors": errors,
        "params": {**body, "secure_key": "<hidden>", "calibrator": "HerA"},
        "clear": {"command": "clear_schedule.py", "retcode": 0, "stderr": "", "stdout": ""},
        "schedule": {
            "command": "single_observation.py" + (" --pretend" if pretend else ""),
            "retcode": 0 if not errors else 1,
            "stderr": "",
            "stdout": "",
        },
    }
    if path.endswith("triggerbuffer") and not errors:
        answer["obsid_list"] = [GPS_START, GPS_START + 8]
    return answer


def atca_answer(path: str, query: dict[str, str], body: dict[str, str]) -> dict[str, Any]:
    """What the ATCA rapid-response service answers (the library's reference.md)."""
    verified = body.get("authToken") == ATCA_TOKEN
    received = {"received": "authToken" in body, "verified": verified}
    if not verified:
        return {"authenticationToken": received, "error": "Authentication token is not valid"}
    if body.get("nameTarget", "") not in body.get("schedule", ""):
        return {"authenticationToken": received, "error": "Target not found in schedule"}
    return {
        "authenticationToken": received,
        "id": "rr-0001",
        "success": True,
        "testMode": body.get("test") == "True",
        "schedule": {"received": True, "valid": True, "altered": None},
        "observations": {
            "startDate": "2023-12-10 21:40:00",
            "endDate": "2023-12-10 23:40:00",
            "hoursAllocated": 2.0,
        },
    }


Answerer = Callable[[str, dict[str, str], dict[str, str]], dict[str, Any]]


@contextmanager
def serve(answerer: Answerer) -> Iterator[StandIn]:
    state: list[StandIn] = []

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            stand_in = state[0]
            parts = urlsplit(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            query = dict(parse_qsl(parts.query))
            body = dict(parse_qsl(raw.decode(), keep_blank_values=True))
            stand_in.received.append(
                Received(self.command, parts.path, query, body, dict(self.headers))
            )
            if stand_in.script:
                scripted = stand_in.script.pop(0)
                if scripted.delay:
                    stand_in.release.wait(scripted.delay)
                reply, status, kind = scripted.body, scripted.status, scripted.content_type
            else:
                reply = json.dumps(answerer(parts.path, query, body)).encode()
                status, kind = 200, "application/json"
            try:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
            except OSError:  # the client stopped waiting (slow-answer tests)
                pass

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    stand_in = StandIn(f"http://127.0.0.1:{httpd.server_address[1]}")
    state.append(stand_in)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield stand_in
    finally:
        stand_in.release.set()
        httpd.shutdown()
        httpd.server_close()
