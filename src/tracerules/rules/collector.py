"""The cyclic garbage collector paused while rules load (and while a command imports what it
needs): both make tens of thousands of objects that all stay alive, and the collector's passes
over them freed next to nothing (issue 16: load time).

The first load in a process also leaves what it made frozen (`gc.freeze`): out of sight of
the collector's full passes, the last of which, as a short command exits, cost a tenth of a
second. A later load (a service reloading its rules, a test suite) first unfreezes them, so a
replaced rule set's cycles are still freed, and itself freezes nothing. Objects frozen by
someone else stay frozen and are never unfrozen here.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


class _Frozen:
    """How many objects the first load left frozen (0: none, or no longer)."""

    count = 0
    first_done = False


@contextlib.contextmanager
def collector_paused(*, freeze_first: bool = False) -> Iterator[None]:
    """The cyclic garbage collector paused while rules load and compile (reference counting
    still frees what they drop). Loading makes tens of thousands of small objects, so the
    collector ran its passes over them, and over everything imported, again and again and
    found next to nothing: a sixth of the load time (issue 16). Left off if it was off.
    With `freeze_first`, the first such pause in the process leaves its objects frozen."""
    enabled = gc.isenabled()
    if enabled:
        _release_first_load()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            _resume(freeze_first)


def _release_first_load() -> None:
    """What the first load froze, back in the oldest generation, unless others froze more
    since (the count only falls as frozen objects are freed)."""
    if _Frozen.count and gc.get_freeze_count() <= _Frozen.count:
        gc.unfreeze()
    _Frozen.count = 0


def _resume(freeze_first: bool) -> None:
    """Switch the collector back on without the pass it owes: the young generation then holds
    every object loading made, and that one pass over them, all still alive, cost as much as
    the load saved. Freezing moves them aside (and resets the count); unfreezing puts them in
    the oldest generation, whose full passes still free any cycle among them later. With
    objects someone else froze, the collector is simply switched back on."""
    if gc.get_freeze_count():
        gc.enable()
        return
    gc.freeze()
    gc.enable()
    if freeze_first and not _Frozen.first_done:
        _Frozen.first_done = True
        _Frozen.count = gc.get_freeze_count()
        return
    gc.unfreeze()
