"""Pytest plugin: a real, throwaway PostgreSQL server for the team-store tests (the server
itself is tests/postgres_cluster.py, which the benchmarks use too).

Fixtures:

* ``postgres_server`` (session): an object with ``.url`` (``postgresql://...``) and
  ``.fresh_database() -> url`` for a new, empty database per test.
  With ``TRACERULES_TEST_POSTGRES=postgresql://...`` an existing server is used instead.
  A missing PostgreSQL is a test *failure*, never a skip.

PYTEST_DONT_REWRITE: this module has no test assertions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.postgres_cluster import PostgresServer, find_bin, start_postgres

__all__ = ["PostgresServer", "find_bin", "postgres_server", "start_postgres"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    external = os.environ.get("TRACERULES_TEST_POSTGRES")
    if external:
        yield PostgresServer(url=external)
        return
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
