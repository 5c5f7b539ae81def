"""Kafka settings: where to connect, with which credentials, and where a new group starts.

Settings come from a properties file, the environment and the command line, and our defaults
are applied with `setdefault`, so a key the user set is never overridden. The one exception is
`enable.auto.commit`, which is always false: an offset is committed only after its notice and
decisions are durably stored. This module imports no Kafka client.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from tracerules.dsl.convert import to_time

GCN_DOMAINS: Final = ("gcn.nasa.gov", "test.gcn.nasa.gov", "dev.gcn.nasa.gov")
_SECRET_KEY_WORDS: Final = ("secret", "password", "token", "key.pem")


class KafkaSetupError(ValueError):
    """Settings that cannot work (no credentials for GCN, an unreadable config file)."""


@dataclass(frozen=True)
class StartPosition:
    """Where a consumer group that never committed starts: latest, earliest or a time."""

    kind: str  # latest, earliest, time
    at: float | None = None  # POSIX seconds, for kind == "time"

    @classmethod
    def parse(cls, text: str) -> StartPosition:
        word = text.strip().lower()
        if word in ("latest", "earliest"):
            return cls(word)
        when = to_time(text.strip())
        if isinstance(when, float):
            return cls("time", when)
        raise ValueError(f"expected latest, earliest or an ISO 8601 time, not {text!r}")

    def __str__(self) -> str:
        if self.at is None:
            return self.kind
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at))


@dataclass(frozen=True)
class KafkaSettings:
    """How to reach Kafka. `config` holds the librdkafka settings the user chose."""

    domain: str = "gcn.nasa.gov"
    bootstrap_servers: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    config: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def where(self) -> str:
        return self.bootstrap_servers or f"kafka.{self.domain}"

    def secrets(self) -> list[str]:
        """Values that must never be logged or stored."""
        found = [v for k, v in self.config.items() if any(w in k for w in _SECRET_KEY_WORDS)]
        return [s for s in (self.client_secret, *found) if s]


def read_properties(path: Path) -> dict[str, str]:
    """`key = value` lines, as librdkafka tools read them; `#` starts a comment line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise KafkaSetupError(f"cannot read the Kafka config file {path}: {err}") from None
    out: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise KafkaSetupError(f"{path}:{number}: expected key = value")
        out[key.strip()] = value.strip()
    return out


def load_settings(
    *,
    domain: str | None = None,
    bootstrap_servers: str | None = None,
    config_file: Path | None = None,
    overrides: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> KafkaSettings:
    """Merge, lowest precedence first: config file, `KAFKA_*` environment, command line.

    Client credentials come from `GCN_KAFKA_CLIENT_ID`/`GCN_KAFKA_CLIENT_SECRET`, or from
    `client_id`/`client_secret` in the config file; never from rule files.
    """
    from gcn_kafka import config_from_env

    env = os.environ if env is None else env
    config = read_properties(config_file) if config_file else {}
    config.update(config_from_env(env))
    config.update(overrides or {})
    client_id = env.get("GCN_KAFKA_CLIENT_ID") or config.pop("client_id", None)
    client_secret = env.get("GCN_KAFKA_CLIENT_SECRET") or config.pop("client_secret", None)
    config.pop("client_id", None)
    config.pop("client_secret", None)
    chosen_domain = domain or config.pop("domain", None) or "gcn.nasa.gov"
    config.pop("domain", None)
    if chosen_domain not in GCN_DOMAINS:
        raise KafkaSetupError(f"unknown GCN domain {chosen_domain!r}: one of {GCN_DOMAINS}")
    servers = bootstrap_servers or config.pop("bootstrap.servers", None)
    if servers is None and not client_id:
        raise KafkaSetupError(
            f"GCN Kafka ({chosen_domain}) needs client credentials: set GCN_KAFKA_CLIENT_ID "
            "and GCN_KAFKA_CLIENT_SECRET, or client_id/client_secret in --kafka-config; "
            "or give --bootstrap-servers for another Kafka"
        )
    return KafkaSettings(chosen_domain, servers, client_id, client_secret, config)


def consumer_config(settings: KafkaSettings, group_id: str) -> dict[str, Any]:
    """librdkafka consumer settings: the user's, then our defaults where they chose nothing."""
    config: dict[str, Any] = dict(settings.config)
    config.setdefault("group.id", group_id)
    config.setdefault("client.id", "tracerules")
    # Only used when a committed offset is out of range: never jump back over the whole topic.
    config.setdefault("auto.offset.reset", "latest")
    config.setdefault("statistics.interval.ms", 2000)  # broker states and lag for `status`
    config.setdefault("queued.max.messages.kbytes", 16384)  # prefetch buffer: bounded memory
    config["enable.auto.commit"] = False  # commit only after durable storage
    config["enable.auto.offset.store"] = False
    config["enable.partition.eof"] = True  # caught up: commit the position (see KafkaSource)
    if settings.bootstrap_servers:
        config["bootstrap.servers"] = settings.bootstrap_servers
    return config
