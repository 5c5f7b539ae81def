"""The cyclic garbage collector paused while rules load (and while a command imports what it
needs): both make tens of thousands of objects that all stay alive, and the collector's passes
over them freed next to nothing (issue 16: load time)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while rules load and compile (reference counting
    still frees what they drop). Loading makes tens of thousands of small objects, so the
    collector ran its passes over them, and over everything imported, again and again and
    found next to nothing: a sixth of the load time (issue 16). Left off if it was off."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            _enable_skipping_owed_pass()


def _enable_skipping_owed_pass() -> None:
    """Switch the collector back on without the pass it owes: the young generation then holds
    every object loading made, and that one pass over them, all still alive, cost as much as
    the load saved. Freezing moves them aside (and resets the count), unfreezing puts them in
    the oldest generation, whose full passes still free any cycle among them later. Objects
    someone else froze stay frozen: with any, the collector is simply switched back on."""
    if gc.get_freeze_count():
        gc.enable()
        return
    gc.freeze()
    gc.enable()
    gc.unfreeze()
