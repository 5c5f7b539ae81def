"""The notices of a rule test: read from files or written inline, edited, given a topic and
times. Every problem is a diagnostic at the notice's place in the test file."""

from __future__ import annotations

import functools
import json
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tracerules.dsl.convert import to_time
from tracerules.errors import Diagnostic
from tracerules.rules.loader import LoadedFile, Loc, Where
from tracerules.ruletest.spec import NoticeStep
from tracerules.runtime.sources.files import guess_topic, payload_time, tar_member
from tracerules.runtime.sources.notices import Notice


@dataclass(frozen=True)
class Step:
    index: int  # 1-based, as `after:` counts
    name: str
    notice: Notice


def diag(
    loaded: LoadedFile,
    loc: Loc,
    code: str,
    message: str,
    hint: str | None = None,
    key: bool = False,
) -> Diagnostic:
    """A diagnostic at a place in a test file."""
    span = Where(loaded, loc, key=key).span()
    return Diagnostic(code, message, span, hint)


def step_name(spec: NoticeStep, index: int) -> str:
    """What `after:` calls a notice: its `name:`, else its file (or archive member) name, else
    'notice <n>'."""
    if spec.name:
        return spec.name
    if spec.file:
        return Path(spec.member or spec.file).name
    return f"notice {index}"


def build_step(
    loaded: LoadedFile,
    loc: Loc,
    spec: NoticeStep,
    name: str,
    index: int,
    base: Path,
    earlier: list[Step],
    problems: list[Diagnostic],
) -> Step | None:
    before = len(problems)
    payload = _payload(loaded, loc, spec, base, problems)
    received = _time(loaded, (*loc, "received"), spec.received, problems)
    created = _time(loaded, (*loc, "created"), spec.created, problems)
    if payload is None:
        return None
    topic = spec.topic or guess_topic(payload)
    if topic is None:
        problems.append(
            diag(
                loaded,
                loc,
                "E905",
                "cannot tell which topic this notice arrives on",
                "add 'topic:' to the notice",
            )
        )
    if len(problems) > before or topic is None:
        return None
    if received is None:
        received = payload_time(payload)
    if received is None:
        received = earlier[-1].notice.received if earlier else 0.0
    notice = Notice(topic, payload, 0, index, created or received, received, "test", name)
    return Step(index, name, notice)


def _payload(
    loaded: LoadedFile, loc: Loc, spec: NoticeStep, base: Path, problems: list[Diagnostic]
) -> bytes | None:
    """The notice's bytes: read from its file, or written from the inline payload; edited."""
    if spec.file is not None:
        try:
            payload = _read(base / spec.file, spec.member)
        except (OSError, KeyError, tarfile.TarError) as err:
            where = Where(loaded, (*loc, "file"), len(spec.file)).span()
            problems.append(Diagnostic("E904", f"cannot read the notice: {_reason(err)}", where))
            return None
    elif isinstance(spec.payload, dict):
        payload = json.dumps(spec.payload, default=_json_default).encode()
    else:
        payload = str(spec.payload).encode()
    if spec.set_:
        try:
            payload = edit_json(payload, spec.set_)
        except ValueError as err:
            problems.append(diag(loaded, (*loc, "set"), "E906", str(err), key=True))
            return None
    return payload


@functools.lru_cache(maxsize=16)
def _read(path: Path, member: str | None) -> bytes:
    """A notice file, or a member of a tar archive (read once per test run)."""
    return path.read_bytes() if member is None else tar_member(path, member)


def _reason(err: Exception) -> str:
    if isinstance(err, KeyError):
        return f"the archive has no member {err.args[0]!r}"
    if isinstance(err, OSError):
        return err.strerror or str(err)
    return str(err)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _time(loaded: LoadedFile, loc: Loc, value: Any, problems: list[Diagnostic]) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.timestamp()
    seconds = to_time(value)
    if isinstance(seconds, float):
        return seconds
    problems.append(
        diag(
            loaded, loc, "E907", f"{value!r} is not a time", "write ISO 8601: 2024-08-12T02:15:00Z"
        )
    )
    return None


def edit_json(payload: bytes, changes: dict[str, Any]) -> bytes:
    """Set values in a JSON notice by dotted path (`event.classification.BNS`)."""
    try:
        doc = json.loads(payload)
    except ValueError:
        raise ValueError("'set:' edits JSON notices only, and this one is not JSON") from None
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = _child(node, key, path)
        if isinstance(node, dict):
            node[last] = value
        elif isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = value
        else:
            raise ValueError(f"'set:' cannot set '{path}': '{last}' is not in the notice")
    return json.dumps(doc, default=_json_default).encode()


def _child(node: Any, key: str, path: str) -> Any:
    if isinstance(node, dict) and key in node:
        return node[key]
    if isinstance(node, list) and key.isdigit() and int(key) < len(node):
        return node[int(key)]
    raise ValueError(f"'set:' cannot set '{path}': '{key}' is not in the notice")
