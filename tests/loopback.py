"""A local HTTP server that records every request and answers from a script, like a real
service would: statuses, bodies, and answers that come late (a hang) or never in time.

Shared by the webhook, dispatcher and frozen-action tests. Binds 127.0.0.1 on a free port.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Loopback:
    """A scripted HTTP server: per path, a list of (status, body, delay) answers; the last
    one repeats."""

    url: str
    script: dict[str, list[tuple[int, bytes, float]]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)  # paths, as each answer was written
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, path: str) -> tuple[int, bytes, float]:
        with self.lock:
            answers = self.script.get(path, [(200, b'{"accepted": true}', 0.0)])
            return answers.pop(0) if len(answers) > 1 else answers[0]

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]


@contextmanager
def serve() -> Iterator[Loopback]:
    state: list[Loopback] = []

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            loop = state[0]
            parts = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with loop.lock:
                loop.seen.append(
                    Seen(self.command, parts.path, parse_qs(parts.query), dict(self.headers), body)
                )
            status, reply, delay = loop.answer(parts.path)
            if delay:
                loop.release.wait(delay)
            reply = reply.replace(b"{auth}", (self.headers.get("Authorization") or "").encode())
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
            except OSError:  # the client gave up waiting (the timeout tests)
                pass
            with loop.lock:
                loop.answered.append(parts.path)

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.append(Loopback(f"http://127.0.0.1:{httpd.server_address[1]}"))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state[0]
    finally:
        state[0].release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
