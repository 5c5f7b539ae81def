"""Storage: the durable store (notices, decisions, planned actions) and reading it back.

All of tracerules' SQL is here: `store.Store` (connection, transactions, notice writes) with
its read model (`read`, `browse`, `history`) and the service's state (`service_state`).
"""
