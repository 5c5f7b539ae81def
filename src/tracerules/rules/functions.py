"""The built-in functions rules compile against, assembled in one place.

The table is core (:mod:`tracerules.dsl.builtins`) + the sky-map figures (`area()`,
`dist_mean()`, ...) + the observability functions (`alt()`, `visible_prob()`, ...). It is
built here, on first use, and passed to the compiler; importing a module never adds to it, so
what a rule may call does not depend on what happens to have been imported. `tracerules
functions` and the JSON schema list this same table.

The modules imported here are cheap: their numpy, astropy and erfa are imported on first call
of a function, so validating rules never pays for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import cache

from tracerules.dsl.builtins import CORE_BUILTINS, Builtin, assemble

__all__ = ["builtin_functions", "warm_up"]


@cache  # one table per process: a tuple of frozen specs, read-only
def builtin_functions() -> Mapping[str, Builtin]:
    """Every built-in function of the rule language, by name (read-only)."""
    from tracerules.products.sky.observability_functions import OBSERVABILITY_BUILTINS
    from tracerules.products.sky.skymap_functions import SKYMAP_BUILTINS

    return assemble(CORE_BUILTINS.values(), SKYMAP_BUILTINS, OBSERVABILITY_BUILTINS)


@cache
def _warmers() -> Mapping[str, Callable[[], None]]:
    """Each non-core function's warm-up: the lazy imports its first call would pay for."""
    from tracerules.products.sky import observability_functions, skymap_functions

    groups = (
        (observability_functions.OBSERVABILITY_BUILTINS, observability_functions.warm_up),
        (skymap_functions.SKYMAP_BUILTINS, skymap_functions.warm_up),
    )
    return {spec.name: warm for specs, warm in groups for spec in specs}


def warm_up(called: Iterable[str]) -> int:
    """Do now the first-use work of the functions rules call (imports of numpy, erfa, the
    FITS reader), so that the first live notice does not wait for it. Returns how many
    warm-ups ran; functions with nothing to warm are skipped."""
    warmers = _warmers()
    todo = {warmers[name] for name in called if name in warmers}
    for warm in todo:
        warm()
    return len(todo)
