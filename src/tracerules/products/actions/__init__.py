"""Action and product types, chosen by `type:` in a trigger's `actions` list (see registry)."""
