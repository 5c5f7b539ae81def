"""Rule unit tests: `*.test.yaml` files that feed notices to the rules and state what happens."""
