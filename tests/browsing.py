"""What the browser tests watch on a Playwright page: errors, requests, responses, pixels."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page, Request, Response

ARTIFACTS = Path(__file__).parent / "artifacts"  # screenshots, to look at (kept out of git)


@dataclass
class PageLog:
    """Console errors, uncaught exceptions, every request and every response's status."""

    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)

    def clear(self) -> None:
        self.console_errors.clear()
        self.requests.clear()
        self.statuses.clear()

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "assert"):
            self.console_errors.append(message.text)

    def on_error(self, error: Exception) -> None:
        self.console_errors.append(f"uncaught: {error}")

    def on_request(self, request: Request) -> None:
        self.requests.append(request.url)

    def on_response(self, response: Response) -> None:
        self.statuses[response.url] = response.status


def watch(page: Page) -> PageLog:
    log = PageLog()
    page.on("console", log.on_console)
    page.on("pageerror", log.on_error)
    page.on("request", log.on_request)
    page.on("response", log.on_response)
    return log


def visit(page: Page, log: PageLog, url: str) -> PageLog:
    """Open `url` and wait until the network is quiet; the log holds that visit only."""
    log.clear()
    page.goto(url, wait_until="networkidle")
    return log


def open_page(page: Page, log: PageLog, url: str, name: str) -> bytes:
    """Visit, take a full-page screenshot (dashboard-NAME.png), check it and the console."""
    visit(page, log, url)
    shot = screenshot(page, f"dashboard-{name}.png", full_page=True)
    assert log.console_errors == [], name
    assert not_blank(shot), name
    return shot


def screenshot(page: Page, name: str, full_page: bool = False) -> bytes:
    ARTIFACTS.mkdir(exist_ok=True)
    return page.screenshot(path=ARTIFACTS / name, full_page=full_page)


def not_blank(png: bytes) -> bool:
    """More than a handful of colours, and not one colour covering nearly everything."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    if len(colours) < 16:
        return False
    top = max(count for count, _ in colours)
    return top < 0.97 * image.width * image.height
