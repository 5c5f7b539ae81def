"""Who may read the dashboard: anyone on loopback; with a token, only those who present it.

The token comes from $TRACERULES_DASHBOARD_TOKEN. It is accepted as `Authorization: Bearer`,
or once as `?token=` (then kept in an HttpOnly cookie and dropped from the address). Every
response also carries headers that keep the pages inert: no framing, no outside resources.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Final
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN_ENV: Final = "TRACERULES_DASHBOARD_TOKEN"
COOKIE: Final = "tracerules_token"
HEADERS: Final = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Guard:
    """ASGI middleware: the token check (when a token is set) and the safety headers."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        response = self.check(Request(scope))
        if response is not None:
            await response(scope, receive, send_with_headers)
        else:
            await self.app(scope, receive, send_with_headers)

    def check(self, request: Request) -> Response | None:
        """None to let the request through; else the refusal or the cookie-setting redirect."""
        if self.token is None:
            return None
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer ") and self._valid(header[7:].strip()):
            return None
        query = request.query_params.get("token")
        if query is not None and self._valid(query):
            rest = [(k, v) for k, v in parse_qsl(request.url.query) if k != "token"]
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            redirect = RedirectResponse(target, status_code=303)
            redirect.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
            return redirect
        if self._valid(request.cookies.get(COOKIE, "")):
            return None
        return PlainTextResponse(
            "401: this dashboard needs its token (Authorization: Bearer, or ?token=)\n",
            status_code=401,
            headers={"www-authenticate": "Bearer"},
        )

    def _valid(self, given: str) -> bool:
        assert self.token is not None
        return hmac.compare_digest(given.encode(), self.token.encode())
