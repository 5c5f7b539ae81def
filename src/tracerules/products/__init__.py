"""Action and product types, and the pure maths behind the sky-map products.

Importing the package changes nothing elsewhere: the sky-map and observability functions of
the expression language are listed in `products.sky.skymap_functions` and
`products.sky.observability_functions`, and :func:`tracerules.rules.functions.builtin_functions`
assembles them with the core functions into the table rules compile against.
"""
