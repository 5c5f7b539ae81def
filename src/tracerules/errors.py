"""One diagnostic type with a source span; every error and lint message renders from it.

The human form follows rustc and ruff::

    rules/swift.yaml:12:18: error[E301]: unknown field 'rra'
       |
    12 |       - when: rra > 10
       |               ^^^
       = hint: did you mean 'ra'?
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Span:
    """A place in a source file: 1-based line and column, and a length for the caret."""

    path: str
    line: int
    col: int
    length: int = 1

    def shifted(self, line: int = 0, col: int = 0) -> Span:
        return Span(self.path, self.line + line, self.col + col, self.length)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}" if self.line > 0 else self.path


UNKNOWN_SPAN = Span("<unknown>", 0, 0)


def exception_tail(err: BaseException) -> str:
    """The last line of an exception as Python prints it (`sqlite3.OperationalError: ...`):
    what a decision, an action outcome or a dead-lettered notice says went wrong."""
    return traceback.format_exception_only(type(err), err)[-1].strip()


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """A problem found in a rule file, at a place, with an optional hint."""

    code: str
    message: str
    span: Span
    hint: str | None = None
    severity: Severity = Severity.ERROR
    lint: str | None = None  # the lint's identifier, when a lint produced it

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["severity"] = self.severity.value
        return data


class RuleError(Exception):
    """Raised when rule files cannot be loaded; carries every diagnostic found."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = list(diagnostics)
        first = self.diagnostics[0] if self.diagnostics else None
        summary = f"{first.span}: {first.message}" if first else "rule error"
        more = len(self.diagnostics) - 1
        super().__init__(summary + (f" (and {more} more)" if more > 0 else ""))


class DslError(Exception):
    """An error in one expression, positioned relative to the expression text (1-based)."""

    def __init__(
        self,
        code: str,
        message: str,
        line: int = 1,
        col: int = 1,
        length: int = 1,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line
        self.col = col
        self.length = length
        self.hint = hint

    def at(self, origin: Span) -> Diagnostic:
        """Place the error in a file, given where the expression text starts."""
        if self.line == 1:
            span = Span(origin.path, origin.line, origin.col + self.col - 1, self.length)
        else:
            span = Span(origin.path, origin.line + self.line - 1, self.col, self.length)
        return Diagnostic(self.code, self.message, span, self.hint)


@dataclass
class SourceCache:
    """Source lines by path, for rendering the offending line under a message."""

    texts: dict[str, list[str]] = field(default_factory=dict)

    def add(self, path: str, text: str) -> None:
        self.texts[path] = text.splitlines()

    def line(self, path: str, line: int) -> str | None:
        lines = self.texts.get(path)
        if lines is None or not 1 <= line <= len(lines):
            return None
        return lines[line - 1]


def render_human(diag: Diagnostic, sources: SourceCache) -> str:
    """rustc-style text: location, severity and code, source line with a caret, hint."""
    label = diag.severity.value
    code = f"{diag.code}" + (f" {diag.lint}" if diag.lint else "")
    out = [f"{diag.span}: {label}[{code}]: {diag.message}"]
    text = sources.line(diag.span.path, diag.span.line)
    if text is not None:
        gutter = " " * len(str(diag.span.line))
        caret_col = max(diag.span.col, 1)
        width = max(1, min(diag.span.length, len(text) - caret_col + 1))
        caret = " " * (caret_col - 1) + "^" * width
        out += [f"{gutter} |", f"{diag.span.line} | {text}", f"{gutter} | {caret}"]
        if diag.hint:
            out.append(f"{gutter} = hint: {diag.hint}")
    elif diag.hint:
        out.append(f"  = hint: {diag.hint}")
    return "\n".join(out)


def render_github(diag: Diagnostic) -> str:
    """A GitHub Actions workflow command, so the problem shows on the pull request's diff."""
    kind = "error" if diag.is_error else "warning"
    message = diag.message + (f" (hint: {diag.hint})" if diag.hint else "")
    message = message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    title = f"{diag.code}" + (f" {diag.lint}" if diag.lint else "")
    return (
        f"::{kind} file={diag.span.path},line={diag.span.line},col={diag.span.col},"
        f"title={title}::{message}"
    )


def render_json(diagnostics: Iterable[Diagnostic], files: Sequence[str]) -> str:
    items = [d.to_json() for d in diagnostics]
    errors = sum(1 for d in items if d["severity"] == Severity.ERROR.value)
    return json.dumps(
        {
            "files": list(files),
            "errors": errors,
            "warnings": len(items) - errors,
            "diagnostics": items,
        },
        indent=2,
    )
