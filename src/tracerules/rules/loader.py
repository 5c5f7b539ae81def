"""Reading rule files: ruamel round-trip YAML, so every node keeps its line and column.

Every problem becomes a Diagnostic at `file:line:col`, and loading goes on after one: a file
with a YAML error is skipped, a trigger with a schema error is skipped, and the rest is still
checked, so one run reports every error in every file.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scalarstring import (
    DoubleQuotedScalarString,
    FoldedScalarString,
    LiteralScalarString,
    SingleQuotedScalarString,
)

from tracerules.errors import Diagnostic, SourceCache, Span
from tracerules.rules import guard
from tracerules.rules.collector import collector_paused
from tracerules.rules.models import RuleFileSpec, TriggerSpec
from tracerules.rules.yaml_plain import load_plain, yaml_reader

RULE_SUFFIXES = (".yaml", ".yml")
TEST_SUFFIXES = (".test.yaml", ".test.yml")

Loc = tuple[str | int, ...]

# Keys whose values are credentials: they must be ${env:NAME} references, never literals.
_SECRET_KEY = re.compile(
    r"(secret|token|passw(or)?d|api[_-]?key|authori[sz]ation|credential)", re.IGNORECASE
)
# A word each _SECRET_KEY match contains: found in the text by a plain search, which is
# quicker than the case-blind pattern.
_SECRET_WORDS = ("secret", "token", "passw", "api", "authori", "credential")
_ENV_ONLY = re.compile(r"^(\s*(Bearer|Basic|Token)\s+)?(\$\{env:[A-Za-z_][A-Za-z0-9_]*\}\s*)+$")


@dataclass(frozen=True)
class Located:
    """A trigger's validated spec, with its index in the file for positions inside it."""

    spec: TriggerSpec
    path: str
    index: int


@dataclass
class LoadedFile:
    """One rule file. `data` comes from the fast libyaml-backed loader; `rt`, the round-trip
    tree with line and column on every node, is parsed only when a position is needed."""

    path: str
    text: str
    data: Any = None
    spec: RuleFileSpec | None = None
    triggers: list[Located] = field(default_factory=list)
    _rt: Any = None

    @property
    def rt(self) -> Any:
        if self._rt is None:
            try:
                self._rt = yaml_reader("rt").load(self.text)
            except YAMLError:  # libyaml took what the pure parser refuses: positions at 1:1
                self._rt = CommentedMap()
        return self._rt


class Where:
    """A place in a rule file, turned into a Span only when somebody asks for it."""

    __slots__ = ("_span", "key", "length", "loaded", "loc", "scalar")

    def __init__(
        self, loaded: LoadedFile, loc: Loc, length: int = 1, key: bool = False, scalar: bool = False
    ) -> None:
        self.loaded, self.loc, self.length, self.key, self.scalar = (
            loaded,
            loc,
            length,
            key,
            scalar,
        )
        self._span: Span | None = None

    def span(self) -> Span:
        if self._span is None:
            if self.scalar:
                self._span = scalar_origin(self.loaded.rt, self.loc, self.loaded.path)[0]
            else:
                line, col = position(self.loaded.rt, self.loc, key=self.key)
                self._span = Span(self.loaded.path, line, col, self.length)
        return self._span


@dataclass
class LoadResult:
    files: list[LoadedFile] = field(default_factory=list)
    discovered: list[str] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: SourceCache = field(default_factory=SourceCache)


def discover(paths: Iterable[str | Path]) -> tuple[list[Path], list[Diagnostic]]:
    """Rule files under the given paths (rule tests, `*.test.yaml`, are not rule files)."""
    found: list[Path] = []
    problems: list[Diagnostic] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and is_rule_file(p)
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            found.append(path)
        else:
            problems.append(
                Diagnostic(
                    "E105",
                    f"no such file or folder: {raw}",
                    Span(str(raw), 1, 1),
                    hint="check the path",
                )
            )
    return list(dict.fromkeys(found)), problems


def is_rule_file(path: Path) -> bool:
    name = path.name
    return name.endswith(RULE_SUFFIXES) and not name.endswith(TEST_SUFFIXES)


# -- positions -------------------------------------------------------------------------------


def _lc(node: Any, key: str | int, value: bool) -> tuple[int, int] | None:
    try:
        if isinstance(node, CommentedMap):
            if key not in node:
                return None
            pos = node.lc.value(key) if value else node.lc.key(key)
        elif isinstance(node, CommentedSeq):
            pos = node.lc.item(key)
        else:
            return None
    except (KeyError, IndexError, TypeError):
        return None
    if pos is None or pos[0] is None:
        return None  # a key merged in from an anchor (<<: *name) has no place of its own
    return (pos[0] + 1, pos[1] + 1)


def position(root: Any, loc: Loc, *, key: bool = False) -> tuple[int, int]:
    """1-based line and column of the node at `loc` (of its key, with key=True)."""
    node, best = root, (1, 1)
    for i, step in enumerate(loc):
        last = i == len(loc) - 1
        found = _lc(node, step, value=not (last and key))
        if found is None:
            break
        best = found
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            break
    return best


def scalar_origin(root: Any, loc: Loc, path: str) -> tuple[Span, int | None]:
    """Where a scalar's text starts, and the block indentation for `|` and `>` scalars.

    Quoted scalars start one column after the quote; block scalars start on the next line.
    """
    line, col = position(root, loc)
    value: Any = root
    for step in loc:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            value = None
            break
    if isinstance(value, DoubleQuotedScalarString | SingleQuotedScalarString):
        return Span(path, line, col + 1), None
    if isinstance(value, LiteralScalarString | FoldedScalarString):
        return Span(path, line + 1, 1), -1  # indentation is measured from the source text
    return Span(path, line, col), None


# -- pydantic errors to diagnostics ----------------------------------------------------------


def _allowed_keys(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The pydantic model that owns the mapping at `loc`, to list its allowed keys."""
    current: Any = model
    for step in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        fields = {f.alias or n: f for n, f in current.model_fields.items()}
        info = fields.get(str(step))
        if info is None:
            if isinstance(step, int) or step in ("str", "ConditionSpec"):
                continue
            # A dict of models: the key is a user's name, the value is the model.
            continue
        annotation = info.annotation
        current = _inner_model(annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    args = getattr(annotation, "__args__", ())
    for arg in args[::-1]:
        inner = _inner_model(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return annotation


def validation_diagnostics(
    err: ValidationError, model: type[BaseModel], loaded: LoadedFile, base: Loc
) -> list[Diagnostic]:
    root, path = loaded.rt, loaded.path
    out: list[Diagnostic] = []
    for item in err.errors(include_url=False):
        loc: Loc = tuple(s for s in item["loc"] if s not in ("str", "ConditionSpec"))
        kind, full = item["type"], base + loc
        if kind == "extra_forbidden":
            allowed = _allowed_keys(_model_at(model, loc[:-1]))
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = (
                f"did you mean '{close[0]}'?"
                if close
                else ("allowed here: " + ", ".join(allowed) if allowed else None)
            )
            line, col = position(root, full, key=True)
            out.append(
                Diagnostic(
                    "E402",
                    f"unknown key '{loc[-1]}'",
                    Span(path, line, col, len(str(loc[-1]))),
                    hint,
                )
            )
        elif kind == "missing":
            line, col = position(root, full[:-1], key=True)
            out.append(
                Diagnostic(
                    "E401",
                    f"missing key '{loc[-1]}'",
                    Span(path, line, col),
                    f"add '{loc[-1]}:' here",
                )
            )
        else:
            line, col = position(root, full)
            where = ".".join(str(s) for s in loc) or "file"
            message = item["msg"].replace("Value error, ", "")
            hint = None
            if kind == "string_pattern_mismatch":
                hint = "use letters, digits, '_' (and '-', '.' in ids); start with a letter"
            out.append(Diagnostic("E403", f"{where}: {message}", Span(path, line, col), hint))
    return out


# -- loading ---------------------------------------------------------------------------------


def _yaml_error(err: MarkedYAMLError, path: str) -> Diagnostic:
    mark = err.problem_mark or err.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = (err.problem or str(err)).strip()
    if "duplicate key" in problem or "found duplicate key" in str(err):
        key = re.search(r'duplicate key "?([^"\s]+)"?', str(err))
        name = key.group(1) if key else "a key"
        return Diagnostic(
            "E102",
            f"duplicate key '{name}'",
            Span(path, line, col, len(name)),
            "each key may appear once in a mapping; merge or rename one",
        )
    hint = "check the indentation and quoting on this line or the one before"
    if "\t" in problem or "tab" in problem:
        hint = "YAML indents with spaces, not tabs"
    context = (err.context or "").strip()
    if err.context_mark is not None and "flow" in context:
        # An unclosed { or [ is noticed lines later; point at the bracket itself.
        bracket = "{" if "mapping" in context else "["
        closer = "}" if bracket == "{" else "]"
        line, col = err.context_mark.line + 1, err.context_mark.column + 1
        return Diagnostic(
            "E101",
            f"YAML syntax: this '{bracket}' is not closed ({problem})",
            Span(path, line, col),
            f"close it with '{closer}', and quote values holding ':', '{{' or '['",
        )
    return Diagnostic("E101", f"YAML syntax: {problem}", Span(path, line, col), hint)


def _inline_secrets(node: Any, loc: Loc, loaded: LoadedFile) -> Iterator[Diagnostic]:
    if isinstance(node, dict):
        for key, value in node.items():
            sub = (*loc, key)
            if (
                isinstance(value, str)
                and _SECRET_KEY.search(str(key))
                and value.strip()
                and not _ENV_ONLY.match(value)
            ):
                yield Diagnostic(
                    "E701",
                    f"'{key}' holds a secret written inline",
                    Where(loaded, sub).span(),
                    "write ${env:NAME} and set NAME in the service's environment; "
                    "never commit credentials",
                )
            else:
                yield from _inline_secrets(value, sub, loaded)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _inline_secrets(value, (*loc, i), loaded)


def read_yaml(path: Path, diagnostics: list[Diagnostic], sources: SourceCache) -> LoadedFile | None:
    """A YAML file read once (libyaml); unreadable or broken files become diagnostics."""
    name = str(path)
    text = guard.read_screened(path, diagnostics)  # bounds first: no parser sees a bomb
    if text is None:
        return None
    sources.add(name, text)
    try:
        data = load_plain(text)
        oversized = guard.expansion(name, text, data)
        if oversized is not None:
            diagnostics.append(oversized)
            return None
    except MarkedYAMLError as fast:
        # Re-read with the round-trip parser, whose messages and marks the diagnostics use.
        try:
            yaml_reader("rt").load(text)
        except MarkedYAMLError as err:
            diagnostics.append(_yaml_error(err, name))
            return None
        diagnostics.append(_yaml_error(fast, name))  # only libyaml refuses it: its word
        return None
    return LoadedFile(name, text, data)


def load_file(path: Path, result: LoadResult) -> LoadedFile | None:
    loaded = read_yaml(path, result.diagnostics, result.sources)
    if loaded is None:
        return None
    name, data, text = loaded.path, loaded.data, loaded.text
    if not isinstance(data, dict):
        lc = getattr(loaded.rt, "lc", None)
        line, col = (lc.line + 1, lc.col + 1) if lc is not None and lc.line is not None else (1, 1)
        result.diagnostics.append(
            Diagnostic(
                "E103",
                "a rule file must be a mapping with schema_version, topics and triggers",
                Span(name, line, col),
                "start the file with 'schema_version: 1'",
            )
        )
        return loaded
    # A key naming a secret is in the text as written, or spelled with escapes ("\x74oken"):
    # a file with neither needs no walk over every value (issue 16).
    lowered = text.lower()
    if "\\" in text or any(word in lowered for word in _SECRET_WORDS):
        result.diagnostics += _inline_secrets(data, (), loaded)
    if "schema_version" in data and data["schema_version"] != 1:
        result.diagnostics.append(
            Diagnostic(
                "E104",
                f"unsupported schema_version {data['schema_version']!r}",
                Where(loaded, ("schema_version",)).span(),
                "this tracerules reads schema_version: 1",
            )
        )
        return loaded
    try:
        loaded.spec = RuleFileSpec.model_validate(data)
    except ValidationError as err:
        result.diagnostics += validation_diagnostics(err, RuleFileSpec, loaded, ())
        return loaded
    for index, node in enumerate(data.get("triggers") or []):
        base: Loc = ("triggers", index)
        if not isinstance(node, dict):
            result.diagnostics.append(
                Diagnostic("E403", "a trigger must be a mapping", Where(loaded, base).span())
            )
            continue
        try:
            spec = TriggerSpec.model_validate(node)
        except ValidationError as err:
            result.diagnostics += validation_diagnostics(err, TriggerSpec, loaded, base)
            continue
        loaded.triggers.append(Located(spec, name, index))
    return loaded


@collector_paused()
def load_paths(paths: Sequence[str | Path]) -> LoadResult:
    """Load every rule file under `paths`; never raises for problems in the files."""
    result = LoadResult()
    files, problems = discover(paths)
    result.discovered = [str(p) for p in files]
    result.diagnostics += problems
    if not files and not problems:
        where = ", ".join(str(p) for p in paths) or "."
        result.diagnostics.append(
            Diagnostic(
                "E106",
                "no rule files found",
                Span(where, 0, 0),
                "rule files end in .yaml or .yml (files ending in .test.yaml are rule tests)",
            )
        )
    for path in files:
        loaded = guard.never_raising(load_file, path, result)
        if loaded is not None:
            result.files.append(loaded)
    return result
