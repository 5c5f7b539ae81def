"""Headless Chromium over the DevTools protocol, through a pipe: no driver, no extra package.

`--remote-debugging-pipe` makes Chromium read protocol messages (JSON, NUL-terminated) on
file descriptor 3 and write on 4, as Puppeteer does. A test opens a page, collects console
errors, uncaught exceptions and every network request, evaluates scripts and takes
screenshots. Used by the report and dashboard tests; they skip when Chromium is absent.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-pipe",
)
TIMEOUT = 30.0


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageLog:
    """What one page did: console errors, uncaught exceptions, log errors and requests."""

    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)

    def clear(self) -> None:
        self.console_errors.clear()
        self.requests.clear()
        self.statuses.clear()


class Browser:
    """One Chromium process with one page (tab) attached."""

    def __init__(self, exe: str, profile: Path, width: int = 1400, height: int = 1000) -> None:
        to_chrome_r, self._out = os.pipe()
        self._in, from_chrome_w = os.pipe()
        # Chromium wants its ends as descriptors 3 and 4: move them above 9 first, then let
        # bash put them in place (no preexec_fn: the tests run servers in threads).
        high_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
        high_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        wire = f'exec "$0" "$@" 3<&{high_r} 4>&{high_w} {high_r}<&- {high_w}>&-'
        self.stderr = (profile / "chromium.log").open("wb")
        size = f"--window-size={width},{height}"
        self.proc = subprocess.Popen(
            ["bash", "-c", wire, exe, *FLAGS, f"--user-data-dir={profile}", size],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            pass_fds=(high_r, high_w),
        )
        os.close(high_r)
        os.close(high_w)
        self._next = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._cond = threading.Condition()
        self.log = PageLog()
        threading.Thread(target=self._read, daemon=True).start()
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    # -- the protocol ----------------------------------------------------------------------

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message:
                    with self._cond:
                        self._replies[message["id"]] = message
                        self._cond.notify_all()
                else:
                    self._record(message)

    def _record(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = params.get("args", [])
            self.log.console_errors.append(" ".join(str(a.get("value", a)) for a in args))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text")
            self.log.console_errors.append(f"uncaught: {text}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.log.console_errors.append(f"{entry.get('source')}: {entry.get('text')}")
        elif method == "Network.requestWillBeSent":
            self.log.requests.append(params["request"]["url"])
        elif method == "Network.responseReceived":
            response = params["response"]
            self.log.statuses[response["url"]] = response["status"]
        self._events.put(message)

    def call(self, method: str, params: dict[str, Any] | None = None, session: bool = False) -> Any:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        with self._cond:
            while self._next not in self._replies:
                if not self._cond.wait(deadline - time.monotonic()):
                    raise TimeoutError(f"no reply to {method}")
            reply = self._replies.pop(self._next)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def send(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """A command to the page's session."""
        return self.call(method, params, session=True)

    def wait_for(self, method: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            message = self._events.get(timeout=max(0.01, deadline - time.monotonic()))
            if message.get("method") == method:
                return message

    # -- what tests use --------------------------------------------------------------------

    def open(self, url: str) -> PageLog:
        """Navigate and wait for the load event; returns the page's log (cleared first)."""
        self.log.clear()
        while not self._events.empty():
            self._events.get_nowait()
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")
        self.evaluate("new Promise(r => requestAnimationFrame(() => setTimeout(r, 50)))")
        return self.log

    def evaluate(self, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path, full_page: bool = False) -> bytes:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params["captureBeyondViewport"] = True
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": size["width"],
                "height": min(size["height"], 6000),
                "scale": 1,
            }
        data = base64.b64decode(self.send("Page.captureScreenshot", params)["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data

    def close(self) -> None:
        with contextlib.suppress(OSError):  # no reply to wait for: the browser goes away
            os.write(self._out, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._out)
        os.close(self._in)
        self.stderr.close()


@contextlib.contextmanager
def browser(profile: Path, width: int = 1400, height: int = 1000) -> Iterator[Browser]:
    exe = chromium_path()
    assert exe is not None
    profile.mkdir(parents=True, exist_ok=True)
    b = Browser(exe, profile, width, height)
    try:
        yield b
    finally:
        b.close()


def not_blank(png: bytes) -> bool:
    """More than a handful of colours, and not one colour covering nearly everything."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    if len(colours) < 16:
        return False
    top = max(count for count, _ in colours)
    return top < 0.97 * image.width * image.height
