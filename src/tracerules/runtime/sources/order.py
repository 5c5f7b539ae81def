"""The notice order: one total order of notices that ignores how they were packed.

Replays evaluate notices in this order, so a folder, a tar archive in any member order, an
NDJSON export and a store of the same notices give the same decisions (docs/operating.md,
"Notice order"). Everything is read from the notice itself with cheap byte scans:

1. the notice's own time (`sources.payload_time`, or the time a store recorded);
2. GCN's VOEvent counter, the number that ends a `ivo://nasa.gsfc.gcn/...#...-872` IVORN:
   GCN numbers every VOEvent it sends, whatever its type, modulo 1000;
3. the sender's serial number: VOEvent `Pkt_Ser_Num` (per packet type), JSON `record_number`;
4. the alert's stage (VOEvent `AlertType`, JSON `alert_type`): a retraction comes last;
5. the payload's SHA-256, which two different notices never share.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final, TypeVar

Ident = TypeVar("Ident")
OrderKey = tuple[float, int, int, int, str]

_GCN_COUNTER: Final = re.compile(rb'\bivorn="ivo://nasa\.gsfc\.gcn/[^"#]*#[^"]*?-(\d+)"')
GCN_COUNTER_MODULUS: Final = 1000  # GCN's counter goes ...998, 999, 000, 001...
_XML_SERIAL: Final = re.compile(
    rb'<Param\b[^>]*?\bname="Pkt_Ser_Num"[^>]*?\bvalue="\s*(\d+)\s*"'
    rb'|<Param\b[^>]*?\bvalue="\s*(\d+)\s*"[^>]*?\bname="Pkt_Ser_Num"'
)
_JSON_SERIAL: Final = re.compile(rb'"record_number"\s*:\s*(\d+)')
_XML_STAGE: Final = re.compile(
    rb'<Param\b[^>]*?\bname="AlertType"[^>]*?\bvalue="([^"]*)"'
    rb'|<Param\b[^>]*?\bvalue="([^"]*)"[^>]*?\bname="AlertType"'
)
_JSON_STAGE: Final = re.compile(rb'"alert_type"\s*:\s*"([^"]*)"')
# Where an alert's stage falls in its life; a retraction is the last word on an event.
STAGES: Final = {
    "earlywarning": 0,
    "preliminary": 1,
    "initial": 2,
    "update": 3,
    "subsequent": 3,
    "retraction": 4,
}


def order_key(received: float, payload: bytes, sha256: str) -> OrderKey:
    """A notice's place in the notice order; -1 (first) for a number it does not have."""
    return (
        received,
        gcn_counter(payload),
        serial_number(payload),
        stage_rank(payload),
        sha256,
    )


def in_notice_order(notices: Iterable[tuple[Ident, float, bytes, str]]) -> list[Ident]:
    """The identities of (identity, time, payload, sha256) in notice order.

    Meant for notices of one time: GCN's counter is read across its wrap (998, 999, 000), so
    that the notice sent last still comes last.
    """
    keyed = [(order_key(when, payload, sha), ident) for ident, when, payload, sha in notices]
    counters = [key[1] for key, _ in keyed if key[1] >= 0]
    if counters and max(counters) - min(counters) > GCN_COUNTER_MODULUS // 2:
        keyed = [(_unwrapped(key), ident) for key, ident in keyed]
    keyed.sort(key=lambda pair: pair[0])
    return [ident for _, ident in keyed]


def _unwrapped(key: OrderKey) -> OrderKey:
    when, counter, serial, stage, sha = key
    if 0 <= counter < GCN_COUNTER_MODULUS // 2:
        counter += GCN_COUNTER_MODULUS
    return (when, counter, serial, stage, sha)


def gcn_counter(payload: bytes) -> int:
    """The number GCN gave the VOEvent it sent (the end of its IVORN), -1 if none."""
    match = _GCN_COUNTER.search(payload, 0, 4096)  # an attribute of the root element
    return int(match.group(1)) if match else -1


def serial_number(payload: bytes) -> int:
    """The sender's serial number of a notice, -1 if it has none."""
    json_like = payload.lstrip()[:1] == b"{"
    match = (_JSON_SERIAL if json_like else _XML_SERIAL).search(payload)
    if match is None:
        return -1
    return int(next(g for g in match.groups() if g is not None))


def stage_rank(payload: bytes) -> int:
    """The rank of an alert's stage in STAGES (JSON alert_type, VOEvent AlertType); 0 if
    it states none or one not listed."""
    json_like = payload.lstrip()[:1] == b"{"
    match = (_JSON_STAGE if json_like else _XML_STAGE).search(payload)
    if match is None:
        return 0
    raw = next(g for g in match.groups() if g is not None)
    stage = raw.decode("ascii", "replace").lower().replace("_", "").replace(" ", "")
    return STAGES.get(stage, 0)
