"""Where notices come from when they do not come from Kafka: files, folders, archives, exports.

Archived notices carry no Kafka envelope, so the topic is inferred (VOEvent Packet_Type, JSON
$schema) and the notice's time is read from the payload itself. Both are read with cheap
byte scans: a notice is parsed only if a trigger subscribes to its topic.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from tracerules.dsl.convert import to_time
from tracerules.runtime.notices import Notice

# The notice's own time: VOEvent <Who><Date>, or the JSON alert's creation time.
_XML_DATE: Final = re.compile(rb"<(?:\w+:)?Date>\s*([^<\s]+)\s*</(?:\w+:)?Date>")
_JSON_DATE: Final = re.compile(
    rb'"(?:alert_datetime|time_created|alert_time|date)"\s*:\s*"([^"]+)"'
)
_JSON_FALLBACK_DATE: Final = re.compile(rb'"trigger_time"\s*:\s*"([^"]+)"')
_XML_PACKET: Final = re.compile(
    rb'<Param\b[^>]*?\bname="Packet_Type"[^>]*?\bvalue="(\d+)"'
    rb'|<Param\b[^>]*?\bvalue="(\d+)"[^>]*?\bname="Packet_Type"'
)


def payload_time(payload: bytes) -> float | None:
    """The time a notice says it was made, POSIX seconds, or None."""
    head = payload.lstrip()[:1]
    match = (_JSON_DATE if head == b"{" else _XML_DATE).search(payload)
    if match is None and head == b"{":
        match = _JSON_FALLBACK_DATE.search(payload)  # EP and CHIME carry only this
    if match is None:
        return None
    value = to_time(match.group(1).decode("ascii", "replace"))
    return value if isinstance(value, float) else None


def packet_type(payload: bytes) -> int | None:
    """A VOEvent's GCN Packet_Type, read without parsing the document."""
    match = _XML_PACKET.search(payload)
    if match is None:
        return None
    return int(match.group(1) or match.group(2))


def guess_topic(payload: bytes) -> str | None:
    """The Kafka topic a payload would arrive on; cheap for VOEvents, a parse for JSON."""
    from tracerules.runtime.topics import classic_notice_type, infer_topic

    head = payload.lstrip()[:1]
    if head == b"<" and b"ivo://org.svom" not in payload[:2048]:
        number = packet_type(payload)
        if number is not None:
            return f"gcn.classic.voevent.{classic_notice_type(number)}"
    return infer_topic(payload)


def notice_from_bytes(
    payload: bytes,
    *,
    topic: str | None = None,
    name: str | None = None,
    offset: int = -1,
    received: float | None = None,
    source: str = "file",
) -> Notice:
    """A notice with an inferred topic and its own time as arrival time (for replays)."""
    when = received if received is not None else payload_time(payload)
    return Notice(
        topic or guess_topic(payload) or "unknown",
        payload,
        0,
        offset,
        when,
        when if when is not None else 0.0,
        source,
        name,
    )


def notice_from_file(path: Path | str, **kwargs: object) -> Notice:
    path = Path(path)
    return notice_from_bytes(path.read_bytes(), name=path.name, **kwargs)  # type: ignore[arg-type]
