"""A plugin entry point whose first call answers late (after its action's time limit) and
whose later calls answer at once: for the tests of timed-out attempts.

Imported by name (`tests.late_plugin:answer`) by the plugin action and by the tests, so
both see the same state.
"""

from __future__ import annotations

import threading
from typing import Any

calls: list[int] = []
finished: list[int] = []
release = threading.Event()


def reset() -> None:
    calls.clear()
    finished.clear()
    release.clear()


def answer(context: Any) -> bool:
    number = len(calls) + 1
    calls.append(number)
    if number == 1:
        release.wait(10.0)  # hangs past the action's timeout, then answers
    context.log.append(f"call {number} answered")
    finished.append(number)
    return True
