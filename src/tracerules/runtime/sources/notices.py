"""Notices: one Kafka message each, and the one hardened parse of its payload.

A payload is parsed at most once, and only when some trigger subscribes to its topic. XML is
parsed without DTDs, entity expansion or network access, and payloads over the size limit are
refused: any failure raises NoticeError, whose reason the store keeps as a dead letter.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Final

from lxml import etree

from tracerules.dsl.selectors import XmlDoc

DEFAULT_MAX_BYTES: Final = 8 * 1024 * 1024  # LVK alerts carry 1-2 MB sky maps; 4x headroom
STORED_PREFIX: Final = 64 * 1024  # what the store keeps of a payload over the limit

# libxml2 expands internal entities inside attribute values even with resolve_entities off,
# so any document type declaration is refused outright (no real GCN notice has one).
_DTD = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


class NoticeError(ValueError):
    """A payload that cannot be used; the message is the dead letter's reason."""


@dataclass(frozen=True, slots=True)
class Notice:
    """One message: where it came from, when, and its bytes."""

    topic: str
    payload: bytes
    partition: int = 0
    offset: int = -1  # -1 when the notice did not come from Kafka
    created: float | None = None  # the broker's timestamp, POSIX seconds
    received: float = 0.0  # local arrival time, POSIX seconds
    source: str = "kafka"  # kafka, file, archive, test, store
    name: str | None = None  # a file name, for notices read from disk
    digest: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.digest:
            object.__setattr__(self, "digest", hashlib.sha256(self.payload).hexdigest())

    @property
    def time(self) -> float:
        """The notice's own time: the broker's when known, else its arrival."""
        return self.created if self.created is not None else self.received


_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
    collect_ids=False,
)


def parse_xml(payload: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """The root element of an XML payload; raises NoticeError with the reason."""
    _check_size(payload, max_bytes)
    head = payload.lstrip()[:1]
    if head in (b"{", b"["):
        raise NoticeError("JSON payload on an XML topic")
    if b"!" in payload and _DTD.search(payload):  # a memchr: most notices hold no "!" at all
        raise NoticeError("XML with a document type declaration (DTDs and entities are refused)")
    try:
        root = etree.fromstring(payload, _PARSER)
    except etree.XMLSyntaxError as err:
        raise NoticeError(f"malformed XML: {err}") from None
    if root is None:
        raise NoticeError("empty XML document")
    return root


def parse_json(payload: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """The object of a JSON payload; raises NoticeError with the reason."""
    _check_size(payload, max_bytes)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise NoticeError(f"invalid UTF-8 at byte {err.start}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        head = text.lstrip()[:1]
        if head == "<":
            raise NoticeError("XML payload on a JSON topic") from None
        raise NoticeError(f"malformed JSON: {err}") from None
    except RecursionError:
        raise NoticeError("JSON nested too deeply") from None
    except ValueError as err:  # an integer over Python's 4,300-digit limit, and the like
        raise NoticeError(f"unusable JSON: {str(err)[:200]}") from None
    if not isinstance(doc, dict):
        raise NoticeError(f"a JSON notice must be an object, not {type(doc).__name__}")
    return doc


def parse_payload(payload: bytes, fmt: str, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """The document selectors read: an XmlDoc for XML, the object for JSON."""
    if fmt == "xml":
        return XmlDoc(parse_xml(payload, max_bytes))
    if fmt == "json":
        return parse_json(payload, max_bytes)
    raise NoticeError(f"unknown payload format {fmt!r}")


def _check_size(payload: bytes, max_bytes: int) -> None:
    if len(payload) > max_bytes:
        digest = hashlib.sha256(payload).hexdigest()
        raise NoticeError(
            f"payload of {len(payload)} bytes is over the {max_bytes}-byte limit; the store "
            f"keeps its first {STORED_PREFIX} bytes, its size and its sha256 {digest}"
        )
    if not payload.strip():
        raise NoticeError("empty payload")
