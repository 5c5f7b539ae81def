"""Where an action goes, as a key: actions with different keys never wait for each other.

One observatory, one web host, one Kafka cluster, one program: each gets its own workers, so
an endpoint that answers 500 and then hangs delays only the actions sent to it. File
products share a key of their own (the local disk).
"""

from __future__ import annotations

import urllib.parse
from typing import Any

FILES = "files"


def destination_of(type_name: str, config: Any, writes_files: bool = True) -> str:
    """The destination key of one action's configuration (a pure function)."""
    observatory = getattr(config, "observatory", None)
    if observatory:
        return f"observatory:{observatory}"
    if type_name == "webhook":
        host = urllib.parse.urlsplit(str(config.url)).netloc or str(config.url)
        return f"webhook:{host}"
    if type_name == "kafka":
        return f"kafka:{getattr(config, 'bootstrap', '') or 'default'}"
    if type_name == "command":
        return f"command:{config.argv[0]}"
    if type_name == "plugin":
        return f"plugin:{config.entry or config.script}"
    return FILES if writes_files else type_name
