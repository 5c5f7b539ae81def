"""Secrets: every spelling of a secret value, so no log, store row or page can show one.

A secret reaches text in many disguises: as is, escaped by `repr` or JSON (a newline becomes
`\\n`, a non-ASCII letter `\\u00e9`), as a bytes repr (`\\xc3\\xa9`), URL-encoded in a query,
HTML-escaped on a page, or JSON-escaped twice (an API's JSON answer inside a JSON log line).
Redaction replaces each of these forms, longest first. Values shorter than `MIN_LENGTH` are
left alone: replacing them would mangle ordinary text and hide nothing.
"""

from __future__ import annotations

import html
import json
import os
import urllib.parse
from collections.abc import Iterable
from functools import lru_cache
from typing import Any, Final

from tracerules.dsl.templates import ENV_REF

MIN_LENGTH: Final = 4
MASK: Final = "***"
# Secrets that may appear in any text, besides those an action refers to.
ALWAYS_SECRET: Final = ("GCN_KAFKA_CLIENT_SECRET",)


def _json_inner(text: str, ascii_only: bool) -> str:
    return json.dumps(text, ensure_ascii=ascii_only)[1:-1]


@lru_cache(maxsize=1024)
def forms(secret: str) -> frozenset[str]:
    """Every spelling of `secret` that text can hold."""
    found = {
        secret,
        repr(secret)[1:-1],
        secret.encode("unicode_escape").decode("ascii"),
        repr(secret.encode("utf-8", "surrogatepass"))[2:-1],
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote(secret),
        urllib.parse.quote_plus(secret),
        html.escape(secret),
        html.escape(secret).replace("&#x27;", "&#39;").replace("&quot;", "&#34;"),
    }
    for ascii_only in (True, False):
        once = _json_inner(secret, ascii_only)
        found |= {once, _json_inner(once, ascii_only), html.escape(once, quote=True)}
    return frozenset(f for f in found if len(f) >= MIN_LENGTH)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every form of every secret replaced by `***`."""
    for form in _spellings(tuple(secrets)):
        if form in text:
            text = text.replace(form, MASK)
    return text


@lru_cache(maxsize=64)
def _spellings(secrets: tuple[str, ...]) -> tuple[str, ...]:
    """Every form of these secrets, longest first (a log line per notice asks again: the
    set of secrets changes only with the rules)."""
    spelled: set[str] = set()
    for secret in secrets:
        if secret and len(secret) >= MIN_LENGTH:
            spelled |= forms(secret)
    return tuple(sorted(spelled, key=len, reverse=True))


def env_secrets(names: Iterable[str]) -> list[str]:
    return [os.environ[n] for n in set(names) if os.environ.get(n)]


def secrets_of(config: Any) -> list[str]:
    """Values of every ${env:NAME} an action refers to, plus the always-secret ones."""
    names = set(ENV_REF.findall(config.model_dump_json())) | set(ALWAYS_SECRET)
    return env_secrets(names)


def rule_secrets(configs: Iterable[Any]) -> list[str]:
    """Every secret any of these actions refers to: one action's output may show another's
    (a command printing its environment, an API echoing a header)."""
    found: set[str] = set(env_secrets(ALWAYS_SECRET))
    for config in configs:
        found.update(secrets_of(config))
    return sorted(found)
