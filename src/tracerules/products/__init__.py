"""Action and product types, and the pure maths behind the sky-map products.

Importing the package registers the sky-map functions of the expression language (`area()`,
`dist_mean()`, ...) and the observability functions (`alt()`, `visible_prob()`, ...): the rule
compiler imports the action registry from here, so they are known before any condition is
compiled.
"""

from tracerules.products.sky import observability_functions as observability_functions
from tracerules.products.sky import skymap_functions as skymap_functions
