"""Reaching the PostgreSQL store's server: a bounded wait and a one-line reason.

Every connection the store opens (its pools, the service lock) comes through here, so that a
server that refuses us, asks another password, has no such database, is not PostgreSQL, or
accepts the connection and never answers, is reported within seconds by its host:port and
why, and never with its password.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

CONNECT_TIMEOUT_S = 5  # libpq itself would wait forever on a server that never answers

# psycopg's prefix to the server's or libpq's own words, which say it better without it.
_PREFIX = re.compile(
    r"^(connection failed: )?connection to server (at|on) .*?(, port \d+)? failed: (FATAL: +)?"
)
# What a user can do about the commonest reasons (matched in lower case).
_HINTS = (
    ("connection refused", "is PostgreSQL running there and listening on that address?"),
    ("password authentication failed", "the password comes from $PGPASSWORD or ~/.pgpass"),
    ("no password supplied", "the password comes from $PGPASSWORD or ~/.pgpass"),
    ("does not exist", "create it, or correct the URL"),
    (
        "timeout expired",
        "no answer in time: is it PostgreSQL? `?connect_timeout=N` in the URL waits longer "
        f"than {CONNECT_TIMEOUT_S} s",
    ),
    ("ssl negotiation", "that port does not answer as PostgreSQL does"),
    ("expected authentication request", "that port does not answer as PostgreSQL does"),
    ("closed the connection unexpectedly", "that port does not answer as PostgreSQL does"),
)


class StoreUnreachable(psycopg.OperationalError):
    """No connection to the store's server: the message names it and says why, in a line."""


def server_address(url: str) -> str:
    """`host:port` of a store URL, for messages (a URL's password is never in it)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "an unreadable URL"
    host = str(params.get("host") or "the local socket")
    return f"{host}:{params.get('port') or 5432}"


def connection_settings(url: str) -> dict[str, Any]:
    """What every connection adds to the URL: a bounded wait, unless the URL sets one."""
    try:
        given = conninfo_to_dict(url)
    except psycopg.Error:
        given = {}
    return {} if "connect_timeout" in given else {"connect_timeout": CONNECT_TIMEOUT_S}


def open_connection(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """A connection to the server at `url`, or `StoreUnreachable` within the wait."""
    try:
        return psycopg.connect(url, **connection_settings(url), **kwargs)
    except psycopg.Error as err:
        raise StoreUnreachable(unreachable(url, err)) from err


def unreachable(url: str, err: BaseException) -> str:
    """`PostgreSQL at host:port: reason (hint)`, on one line."""
    words = " ".join(str(err).split()) or type(err).__name__
    reason = _PREFIX.sub("", words).rstrip(".")
    reason = reason.split(" Is the server running")[0]
    hint = next((h for key, h in _HINTS if key in reason.lower()), "")
    return f"PostgreSQL at {server_address(url)}: {reason}" + (f" ({hint})" if hint else "")
