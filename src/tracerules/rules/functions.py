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

from collections.abc import Mapping
from functools import cache

from tracerules.dsl.builtins import CORE_BUILTINS, Builtin, assemble

__all__ = ["builtin_functions"]


@cache  # one table per process: a tuple of frozen specs, read-only
def builtin_functions() -> Mapping[str, Builtin]:
    """Every built-in function of the rule language, by name (read-only)."""
    from tracerules.products.sky.observability_functions import OBSERVABILITY_BUILTINS
    from tracerules.products.sky.skymap_functions import SKYMAP_BUILTINS

    return assemble(CORE_BUILTINS.values(), SKYMAP_BUILTINS, OBSERVABILITY_BUILTINS)
