"""Storage: the durable store (notices, decisions, planned actions) and reading it back."""
