"""Structured logs: one JSON object per line on stderr, with every known secret redacted.

A record's message is the event name (`notice`, `decision`, `action`, ...); its fields come
from `extra={"fields": {...}}`. Secrets are replaced by `***` in the finished line, in every form
they can take (tracerules.runtime.secrets), so no code path can leak one by logging it by accident.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from tracerules.runtime.secrets import redact

LOGGER = "tracerules"
KAFKA_LOGGER = "tracerules.kafka"
# "(after 0ms in state CONNECT)": the only part of a repeated librdkafka message that varies
_ELAPSED = re.compile(r"\(after \d+ms in state \w+\)")


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Callable[[], Iterable[str]] = list) -> None:
        super().__init__()
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        data: dict[str, Any] = {
            "time": f"{when}.{int(record.created % 1 * 1e6):06d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            data.update(fields)
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        line = json.dumps(data, default=str, ensure_ascii=False)
        return redact(line, self.secrets())


class Throttle(logging.Filter):
    """Drop a Kafka client message repeated within `window` seconds: librdkafka reports a
    refused connection at every retry, several times a second while a broker is down."""

    def __init__(self, window: float = 30.0) -> None:
        super().__init__()
        self.window = window
        self._seen: dict[tuple[str, str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(KAFKA_LOGGER):
            return True
        fields = getattr(record, "fields", None)
        detail = str(fields.get("error", "")) if isinstance(fields, dict) else ""
        key = (record.name, _ELAPSED.sub("", record.getMessage()), _ELAPSED.sub("", detail))
        now = time.monotonic()
        if now - self._seen.get(key, -self.window) < self.window:
            return False
        if len(self._seen) > 1000:
            self._seen = {k: v for k, v in self._seen.items() if now - v < self.window}
        self._seen[key] = now
        return True


def setup(
    level: str = "info",
    secrets: Callable[[], Iterable[str]] = list,
    stream: TextIO | None = None,
) -> logging.Logger:
    """JSON lines on stderr for the `tracerules` loggers (librdkafka's logs included)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    handler.addFilter(Throttle())
    logger = logging.getLogger(LOGGER)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger
