"""Hostile payloads for the service: shared by the poison-pill tests and bench/torture_input.py.

Every payload is distinct (a serial number is woven in), so the store's deduplication by
payload never hides one, and each is one a consumer must survive: malformed documents on
each format, and heartbeats whose `alert_datetime` cannot date a stream.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Final

HEARTBEAT: Final = "gcn.heartbeat"


def _json_breakers(n: int, rng: random.Random) -> list[bytes]:
    depth = rng.randint(5_000, 100_000)
    return [
        b'{"n": %d, "x": ' % n,  # truncated
        b"[" * depth + b'"%d"' % n + b"]" * depth,  # RecursionError in json
        b'{"n": %d, "deep": ' % n + b"{" * depth,
        b'{"n": %d, "bad": "\xff\xfe\x80"}' % n,  # invalid UTF-8
        b"[%d, 1, 2]" % n,  # not an object
        b'"%d"' % n,
        b" " * (n + 1),  # blank (each a different length)
        b"\x00\x01\x02%d" % n + bytes(rng.randrange(256) for _ in range(64)),
        b"<?xml version='1.0'?><voe n='%d'/>" % n,  # XML on a JSON topic
        b'{"n": %d, "a": 1' % n + b", " * 3 + b"}",
        b'{"n": %d, "v": ' % n + b"9" * 5_000 + b"}",  # over int's 4,300-digit limit
    ]


def _xml_breakers(n: int, rng: random.Random) -> list[bytes]:
    depth = rng.randint(300, 50_000)
    laughs = b"".join(b'<!ENTITY l%d "&l%d;&l%d;">' % (i + 1, i, i) for i in range(20))
    return [
        b"<voe:VOEvent n='%d'><Who>" % n,  # truncated
        b"<a>" * depth + b"%d" % n + b"</a>" * depth,  # over libxml2's depth limit
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY l0 "lol">'
        + laughs
        + b"]><x n='%d'>&l20;</x>" % n,
        b'<?xml version="1.0"?><!DOCTYPE x SYSTEM "file:///etc/passwd"><x n="%d"/>' % n,
        b'{"n": %d}' % n,  # JSON on an XML topic
        b"<x n='%d'>\xff\xfe</x>" % n,  # invalid UTF-8
        b"\n" * (n + 1),  # blank (each a different length)
        b"\x00\x01%d" % n + bytes(rng.randrange(256) for _ in range(64)),
        b"<x n='%d'><y></x></y>" % n,  # crossed tags
        b"<x n='%d' a='1' a='2'/>" % n,  # duplicate attribute
    ]


def _heartbeat_breakers(n: int, rng: random.Random) -> list[bytes]:
    now = time.time()
    ahead = now + rng.randint(3_600, 10**9)
    return [
        b'{"alert_datetime": %s, "n": %d}' % (b"9" * 400, n),  # OverflowError
        b'{"alert_datetime": "%s", "n": %d}' % (b"9" * 400, n),
        b'{"alert_datetime": Infinity, "n": %d}' % n,
        b'{"alert_datetime": -Infinity, "n": %d}' % n,
        b'{"alert_datetime": NaN, "n": %d}' % n,
        b'{"alert_datetime": 1e999, "n": %d}' % n,
        b'{"alert_datetime": %.3f, "n": %d}' % (ahead, n),  # the future
        b'{"alert_datetime": "9999-12-31T23:59:59Z", "n": %d}' % n,
        b'{"alert_datetime": "1970-01-01T00:00:00Z", "n": %d}' % n,  # absurdly old
        b'{"alert_datetime": %d}' % -(n + 1),
        b"[" * 100_000 + b"%d" % n + b"]" * 100_000,  # RecursionError
        b'{"n": %d, "x": ' % n + b"{" * 50_000,
        b'{"n": %d}' % n,  # no alert_datetime
        b'{"alert_datetime": null, "n": %d}' % n,
        b'{"alert_datetime": {"a": 1}, "n": %d}' % n,
        b"not json %d" % n,
        b'{"alert_datetime": "2024-13-45T99:99:99Z", "n": %d}' % n,
        b'{"alert_datetime": "\xff\xfe", "n": %d}' % n,
    ]


BREAKERS: Final[dict[str, Callable[[int, random.Random], list[bytes]]]] = {
    "json": _json_breakers,
    "xml": _xml_breakers,
    "heartbeat": _heartbeat_breakers,
}


def malformed(kind: str, count: int, seed: int = 11) -> list[bytes]:
    """`count` distinct hostile payloads of one kind (json, xml or heartbeat), cycling through
    every shape the kind has."""
    rng = random.Random(seed)
    out: list[bytes] = []
    n = 0
    while len(out) < count:
        out += BREAKERS[kind](n, rng)
        n += 1
    return out[:count]
