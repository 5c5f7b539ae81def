"""Where notices come from when they do not come from Kafka: files, folders, archives, exports.

Archived notices carry no Kafka envelope, so the topic is inferred (VOEvent Packet_Type, JSON
$schema) and the notice's time is read from the payload itself. Both are read with cheap
byte scans: a notice is parsed only if a trigger subscribes to its topic.
"""

from __future__ import annotations

import dataclasses
import io
import json
import lzma
import re
import tarfile
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Final

from tracerules.dsl.convert import to_time
from tracerules.runtime.sources.notices import Notice

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
    from tracerules.runtime.sources.topics import classic_notice_type, infer_topic

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


TAR_SUFFIXES: Final = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
NDJSON_SUFFIXES: Final = (".ndjson", ".jsonl")
STORE_SUFFIXES: Final = (".sqlite", ".sqlite3", ".db")
NOTICE_SUFFIXES: Final = (".xml", ".json", ".voe")


class SourceError(ValueError):
    """A source that cannot be read at all (a missing path, an unknown kind of file)."""


def _kind(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir():
        return "dir"
    for kind, suffixes in (
        ("tar", TAR_SUFFIXES),
        ("ndjson", NDJSON_SUFFIXES),
        ("store", STORE_SUFFIXES),
    ):
        if name.endswith(suffixes):
            return kind
    return "file"


class Skipped(Counter[str]):
    """Files in folders and archives that are not notices (README.md, PROVENANCE.tsv, ...),
    counted by kind (their suffix, or `macOS metadata` for `._NAME` and `__MACOSX/` files)
    so that a replay can say what it left out."""

    def add(self, name: str) -> None:
        if is_mac_metadata(name):
            self["macOS metadata"] += 1
            return
        self[PurePosixPath(name).suffix.lower() or "(no suffix)"] += 1

    def describe(self) -> str:
        """'3 files that are not notices skipped (2 .md, 1 .tsv)', or '' if none."""
        total = sum(self.values())
        if not total:
            return ""
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.items()))
        return f"{total} file{'s' * (total != 1)} that are not notices skipped ({kinds})"


def is_mac_metadata(name: str) -> bool:
    """A macOS Finder or tar companion file (`._01.json` beside `01.json`, `__MACOSX/...`):
    the resource fork of a file, never a notice, whatever its suffix."""
    path = name.replace("\\", "/")
    return path.rpartition("/")[2].startswith("._") or "/__MACOSX/" in f"/{path}/"


def is_notice_name(name: str) -> bool:
    return name.lower().endswith(NOTICE_SUFFIXES) and not is_mac_metadata(name)


def is_archive_name(name: str) -> bool:
    return name.lower().endswith(TAR_SUFFIXES) and not is_mac_metadata(name)


def iter_notices(
    sources: Iterable[str | Path], topic: str | None = None, skipped: Skipped | None = None
) -> Iterator[Notice]:
    """Every notice in the given files, folders, tar archives, NDJSON exports and stores.

    Folders and archives are read alike: notice files (.xml, .json, .voe) and the archives
    among them; anything else is counted in `skipped`, never taken for a notice. The order
    notices come in does not matter: a replay sorts them (`runtime.order`).
    """
    skipped = Skipped() if skipped is None else skipped
    for raw in sources:
        path = Path(raw)
        if not path.exists():
            raise SourceError(f"no such file or folder: {raw}")
        kind = _kind(path)
        if kind == "dir":
            yield from _from_dir(path, topic, skipped)
        elif kind == "tar":
            yield from _from_archive_file(path, topic, skipped)
        elif kind == "ndjson":
            yield from _from_ndjson(path, topic)
        elif kind == "store":
            yield from _from_store(path, topic)
        else:
            yield notice_from_file(path, topic=topic)


def _from_dir(path: Path, topic: str | None, skipped: Skipped) -> Iterator[Notice]:
    """Notice files, and the tar archives among them (large alerts travel compressed)."""
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        name = child.relative_to(path).as_posix()
        if is_notice_name(name):
            yield notice_from_file(child, topic=topic)
        elif is_archive_name(name):
            yield from _from_archive_file(child, topic, skipped)
        else:
            skipped.add(name)


def tar_member(path: Path, member: str) -> bytes:
    """One file of a tar archive (rule tests name notices inside one); KeyError if absent."""
    with tarfile.open(path, "r:*") as archive:
        try:
            handle = archive.extractfile(member)
        except KeyError:
            handle = None
        if handle is None:
            raise KeyError(member)
        return handle.read()


def _from_tar(archive: tarfile.TarFile, topic: str | None, skipped: Skipped) -> Iterator[Notice]:
    """The notices of an archive read as a stream, and of the archives inside it, as a
    folder of the same files would give them."""
    # Streaming mode ("r|*"): members are read in order. TarFile keeps every header it has
    # read in `members` (about 0.7 kB each); dropping them keeps memory flat on big archives.
    while (member := archive.next()) is not None:
        archive.members.clear()  # type: ignore[attr-defined]  # undocumented, but stable
        if not member.isfile():
            continue
        if not (is_notice_name(member.name) or is_archive_name(member.name)):
            skipped.add(member.name)
            continue
        handle = archive.extractfile(member)
        if handle is None:
            continue
        if is_archive_name(member.name):
            yield from _from_inner_tar(handle, topic, skipped)
        else:
            yield notice_from_bytes(handle.read(), topic=topic, name=member.name, source="archive")


def _from_inner_tar(handle: IO[bytes], topic: str | None, skipped: Skipped) -> Iterator[Notice]:
    # A stream cannot be rewound, so an archive inside one is read into memory first.
    with tarfile.open(fileobj=io.BytesIO(handle.read()), mode="r|*") as inner:
        yield from _from_tar(inner, topic, skipped)


# What a damaged archive raises, by layer: tar headers, gzip/bz2 (OSError), zlib, xz.
_DAMAGED = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError)


def _from_archive_file(path: Path, topic: str | None, skipped: Skipped) -> Iterator[Notice]:
    """A tar archive on disk (and those inside it); a truncated or damaged one is a
    SourceError naming it, never a traceback half-way through a replay."""
    try:
        with tarfile.open(path, "r|*") as archive:
            yield from _from_tar(archive, topic, skipped)
    except _DAMAGED as err:
        raise SourceError(f"{path}: a damaged or truncated archive ({err})") from None


def _from_ndjson(path: Path, topic: str | None) -> Iterator[Notice]:
    """One notice per line: the notice itself, or an export {"topic", "payload", ...}."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.strip()
            if not line:
                continue
            name = f"{path.name}:{number}"
            try:
                record = json.loads(line)
            except ValueError:
                yield notice_from_bytes(line, topic=topic or "unknown", name=name, source="archive")
                continue
            if isinstance(record, dict) and "payload" in record and "topic" in record:
                payload = record["payload"]
                data = (
                    payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                )
                when = to_time(record["created"]) if record.get("created") else None
                yield notice_from_bytes(
                    data,
                    topic=topic or record["topic"],
                    name=name,
                    source="archive",
                    received=when if isinstance(when, float) else None,
                )
            else:
                yield notice_from_bytes(line, topic=topic, name=name, source="archive")


def _from_store(path: Path, topic: str | None) -> Iterator[Notice]:
    """The notices a service stored (not its duplicates), with their Kafka envelopes."""
    from tracerules.runtime.store.store import Store  # the store reads its own rows

    store = Store(path, read_only=True)
    try:
        for notice_id in store.original_notice_ids():
            notice = store.read_notice(notice_id, source="store")
            if notice is not None:
                yield notice if topic is None else dataclasses.replace(notice, topic=topic)
    finally:
        store.close()
