"""Loaded rule files to a compiled rule set: cross-file checks, selectors and closures.

Everything that can be parsed is parsed here, once: JSONPath and XPath selectors, field
expressions, conditions, expiry and action templates. The engine only calls closures.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from pydantic import ValidationError

from tracerules.dsl import ast
from tracerules.dsl.builtins import Builtin
from tracerules.dsl.compiler import Compiled, Compiler
from tracerules.dsl.context import Context
from tracerules.dsl.convert import CONVERSIONS, Converter, to_duration
from tracerules.dsl.display import DURATION, TIME, readable_duration
from tracerules.dsl.parser import parse
from tracerules.dsl.selectors import Selector, compile_jsonpath, compile_xpath
from tracerules.dsl.templates import compile_template
from tracerules.dsl.values import Missing, Type, Vote, unit_type
from tracerules.errors import Diagnostic, DslError, RuleError, SourceCache, Span
from tracerules.products.actions.registry import (
    ActionConfig,
    ActionType,
    Snapshot,
    field_refs,
)
from tracerules.products.actions.registry import get as get_action_type
from tracerules.products.sky.sites import Site
from tracerules.rules.collector import collector_paused
from tracerules.rules.functions import builtin_functions
from tracerules.rules.loader import (
    LoadedFile,
    LoadResult,
    Loc,
    Located,
    Where,
    load_paths,
    position,
    scalar_origin,
    validation_diagnostics,
)
from tracerules.rules.masks import apply_masks, attach_masks, parse_masks
from tracerules.rules.models import NAME_PATTERN, ConditionSpec, TopicSpec
from tracerules.rules.providers import NoticeProvider, notice_providers

# Names every expression may read without declaring them; the engine sets them.
PREDECLARED: dict[str, Type] = {
    "topic": Type.STRING,
    "trigger": Type.STRING,
    "event_id": Type.ANY,
    "event_time": Type.TIME,
    "received": Type.TIME,
    "created": Type.TIME,
}
_EXAMPLES = {
    "jsonpath": "a JSONPath like $.ra",
    "xpath": "an XPath like //Param[@name='TrigID']/@value",
}
# Names action templates may use besides the fields.
TEMPLATE_NAMES = (
    "observatory",
    *PREDECLARED,
    "partition",
    "offset",
    "notice_id",
    "ext",
    "decision",
    "conclusion",
    "date",
)


@dataclass(frozen=True, slots=True)
class CompiledField:
    name: str
    type: Type
    select: Selector | None
    convert: Converter | None
    expr: Callable[[Context], Any] | None
    source: str
    where: Where
    reads: frozenset[str] = frozenset()  # names its expression and its missing_if read
    mask: Callable[[Context], Any] | None = None  # missing_if: true means a placeholder
    mask_text: str = ""
    functions: frozenset[str] = frozenset()  # the built-in functions its expression calls

    @property
    def span(self) -> Span:
        return self.where.span()


@dataclass(frozen=True, slots=True)
class CompiledCondition:
    name: str
    text: str
    vote: Callable[[Context], Vote | Missing]
    where: Where

    @property
    def span(self) -> Span:
        return self.where.span()

    names: tuple[str, ...]  # sorted: the values shown beside its vote
    const: Vote | None
    node: ast.Expr
    shown: tuple[tuple[str, Callable[[Context], Any]], ...] = ()  # figures such as area(0.9)
    # how each name is shown: the angle or duration unit the condition is written in, or
    # "duration" / "time" (runtime/display.py); names absent here are shown as they are
    units: Mapping[str, str] = field(default_factory=dict)
    functions: frozenset[str] = frozenset()  # the built-in functions it calls
    # (name, unit) for each of `names`: what every decision shows, looked up once here
    shown_units: tuple[tuple[str, str | None], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shown_units", tuple((n, self.units.get(n)) for n in self.names))


@dataclass(frozen=True, slots=True)
class CompiledAction:
    kind: ActionType
    config: ActionConfig
    where: Where
    sites: Mapping[str, Site] = field(default_factory=dict)  # the sites its site_refs name
    # What a planned action stores and later runs: made here, once, so planning only copies it.
    snapshot: Snapshot = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "snapshot", Snapshot.of(self.config))

    @property
    def span(self) -> Span:
        return self.where.span()


@dataclass(frozen=True)
class CompiledTrigger:
    id: str
    description: str | None
    topics: tuple[str, ...]
    format: str
    priority: int
    mode: str
    expiry: float
    event_id: str
    event_time: str
    fields: tuple[CompiledField, ...]
    conditions: tuple[CompiledCondition, ...]
    actions: tuple[CompiledAction, ...]
    path: str
    where: Where

    @property
    def span(self) -> Span:
        return self.where.span()

    revision: str
    lint_disabled: frozenset[str]

    @functools.cached_property
    def expiry_text(self) -> str:
        """The expiry as decisions show it (`2 h`): the same text for every notice."""
        return readable_duration(self.expiry)

    @functools.cached_property
    def selected_masks(self) -> tuple[CompiledField, ...]:
        """Selected fields with a missing_if, applied once every selected field is read."""
        return tuple(f for f in self.fields if f.select is not None and f.mask is not None)

    def extract(self, doc: Any, ctx: Context) -> None:
        """Read every field of this trigger from a parsed notice into `ctx.values`."""
        values = ctx.values
        masks = self.selected_masks
        for f in self.fields:
            if f.select is not None:
                raw = f.select(doc)
                values[f.name] = (
                    raw if isinstance(raw, Missing) or f.convert is None else f.convert(raw)
                )
            elif f.expr is not None:
                if masks:  # selected fields come first: they are all read by now
                    apply_masks(masks, ctx)
                    masks = ()
                values[f.name] = f.expr(ctx)
                if f.mask is not None:
                    apply_masks((f,), ctx)
        if masks:
            apply_masks(masks, ctx)


@dataclass(frozen=True)
class RuleSet:
    topics: Mapping[str, TopicSpec]
    triggers: tuple[CompiledTrigger, ...]
    by_topic: Mapping[str, tuple[CompiledTrigger, ...]]
    files: tuple[str, ...]
    diagnostics: tuple[Diagnostic, ...] = ()
    sources: SourceCache = field(default_factory=SourceCache)
    git_commit: str | None = None
    sites: Mapping[str, Site] = field(default_factory=dict)  # by name, from sites: in rule files
    # Per-notice lazy values its rules read (the LVK sky map), chosen at compile time.
    providers: tuple[NoticeProvider, ...] = ()

    def trigger(self, trigger_id: str) -> CompiledTrigger | None:
        return next((t for t in self.triggers if t.id == trigger_id), None)

    @property
    def subscribed_topics(self) -> frozenset[str]:
        return frozenset(self.by_topic)

    @property
    def called_functions(self) -> frozenset[str]:
        """The built-in functions its conditions and computed fields call."""
        conditions = (name for t in self.triggers for c in t.conditions for name in c.functions)
        fields = (name for t in self.triggers for f in t.fields for name in f.functions)
        return frozenset(conditions) | frozenset(fields)


# -- helpers ---------------------------------------------------------------------------------


def _block_indent(text: str, line: int) -> int:
    """Indentation (0-based) of a block scalar whose content starts at `line`."""
    lines = text.splitlines()
    for raw in lines[line - 1 :]:
        if raw.strip():
            return len(raw) - len(raw.lstrip())
    return 0


def place(err: DslError, loaded: LoadedFile, loc: Loc) -> Diagnostic:
    """Put an error found inside an expression at its place in the YAML file."""
    origin, block = scalar_origin(loaded.rt, loc, loaded.path)
    if block is None:
        return err.at(origin)
    indent = _block_indent(loaded.text, origin.line)
    span = Span(loaded.path, origin.line + err.line - 1, indent + err.col, err.length)
    return Diagnostic(err.code, err.message, span, err.hint)


def _span(loaded: LoadedFile, loc: Loc, length: int = 1, key: bool = False) -> Span:
    line, col = position(loaded.rt, loc, key=key)
    return Span(loaded.path, line, col, length)


def git_commit(folder: Path) -> str | None:
    """The commit of the git checkout holding `folder`, if any (with -dirty when modified)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "."],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


# -- one trigger -----------------------------------------------------------------------------


class TriggerCompiler:
    """Compiles one located trigger; collects diagnostics instead of stopping at the first."""

    def __init__(
        self,
        located: Located,
        loaded: LoadedFile,
        topics: Mapping[str, TopicSpec],
        sites: Mapping[str, Site] | None = None,
        memo: dict[Any, Compiled] | None = None,
        functions: Mapping[str, Builtin] | None = None,
    ):
        self.located, self.loaded, self.topics = located, loaded, topics
        self.sites = sites  # None when no rule file declares sites
        self.functions = builtin_functions() if functions is None else functions
        # Conditions compiled by the triggers of one load, by expression and the types of
        # the names it reads: rule sets repeat conditions across triggers (issue 16). The
        # sites are those of the same load, so they need not be part of the key.
        self.memo: dict[Any, Compiled] = {} if memo is None else memo
        self.spec = located.spec
        self.base: Loc = ("triggers", located.index)
        self.diagnostics: list[Diagnostic] = []

    def expression_compiler(self) -> Compiler:
        """A compiler of this trigger's expressions: its names, the sites and the functions."""
        return Compiler(self.names, self.functions, self.sites)

    def error(
        self,
        code: str,
        message: str,
        loc: Loc,
        hint: str | None = None,
        length: int = 1,
        key: bool = False,
    ) -> None:
        self.diagnostics.append(
            Diagnostic(code, message, _span(self.loaded, self.base + loc, length, key), hint)
        )

    def dsl_error(self, err: DslError, loc: Loc) -> None:
        self.diagnostics.append(place(err, self.loaded, self.base + loc))

    def topic_format(self) -> str | None:
        formats: dict[str, str] = {}
        for i, name in enumerate(self.spec.topics):
            topic = self.topics.get(name)
            if topic is None:
                import difflib

                close = difflib.get_close_matches(name, list(self.topics), n=1, cutoff=0.8)
                hint = (
                    f"did you mean '{close[0]}'?"
                    if close
                    else "add it to the topic registry (topics: in a rule file)"
                    if self.topics
                    else "no topic registry was loaded: validate the whole rules folder, "
                    "which holds topics.yaml, e.g. 'tracerules validate rules'"
                )
                self.error("E601", f"unknown topic '{name}'", ("topics", i), hint, len(name))
                continue
            formats.setdefault(topic.format, name)
            if len(formats) > 1:
                first = next(iter(formats.values()))
                self.error(
                    "E602",
                    f"topic '{name}' carries {topic.format}, but '{first}' "
                    f"carries {next(iter(formats))}",
                    ("topics", i),
                    "one trigger reads one format; split it into two triggers",
                    len(name),
                )
                return None
        return next(iter(formats), None)

    def namespaces(self) -> dict[str, str]:
        ns: dict[str, str] = {}
        for name in self.spec.topics:
            topic = self.topics.get(name)
            if topic is not None:
                ns.update(topic.namespaces)
        return ns

    def compile_fields(self, fmt: str | None) -> tuple[CompiledField, ...] | None:
        """Selectors first, then computed fields in dependency order; sets self.names."""
        self.names: dict[str, Type] = dict(PREDECLARED)
        selected: list[CompiledField] = []
        computed: dict[str, tuple[ast.Expr, Where]] = {}
        ok = True
        for name, fspec in self.spec.fields.items():
            self.names[name] = CONVERSIONS[fspec.as_][1]  # refined once compiled
            if not self._check_field_name(name):
                ok = False
            elif fspec.expr is not None:
                span = Where(self.loaded, (*self.base, "fields", name), len(name), True)
                try:
                    computed[name] = (parse(fspec.expr), span)
                except DslError as err:
                    self.dsl_error(err, ("fields", name, "expr"))
                    self.names[name] = Type.ANY
                    ok = False
            else:
                field_ = self._compile_selector(name, fmt)
                if field_ is None:
                    self.names[name] = Type.ANY
                    ok = False
                else:
                    selected.append(field_)
        masks = parse_masks(self)
        if masks is None:
            return None
        ordered = self._order_computed(computed, masks)
        if ordered is None:
            return None
        done = [self._compile_computed(name, *computed[name]) for name in ordered]
        if not ok or any(f is None for f in done):
            return None
        fields = (*selected, *(f for f in done if f is not None))
        return attach_masks(self, fields, masks)

    def _check_field_name(self, name: str) -> bool:
        import re

        if re.match(NAME_PATTERN, name) and name not in PREDECLARED:
            return True
        reason = "is predeclared" if name in PREDECLARED else "is not a valid name"
        self.error(
            "E308",
            f"field name '{name}' {reason}",
            ("fields", name),
            "field names are letters, digits and _; topic, trigger, event_id, "
            "event_time, received and created are predeclared",
            len(name),
            True,
        )
        return False

    def _compile_selector(self, name: str, fmt: str | None) -> CompiledField | None:
        fspec = self.spec.fields[name]
        loc: Loc = ("fields", name)
        kind = "jsonpath" if fspec.jsonpath is not None else "xpath"
        text = fspec.jsonpath if fspec.jsonpath is not None else fspec.xpath
        assert text is not None
        want = "jsonpath" if fmt == "json" else "xpath" if fmt == "xml" else kind
        if kind != want:
            self.error(
                "E503",
                f"{kind} selector on a trigger whose topics carry {fmt}",
                (*loc, kind),
                f"write '{want}:' with {_EXAMPLES[want]}",
                len(kind),
                key=True,
            )
            return None
        try:
            select = (
                compile_jsonpath(text)
                if kind == "jsonpath"
                else compile_xpath(text, self.namespaces())
            )
        except DslError as err:
            self.dsl_error(err, (*loc, kind))
            return None
        converter, type_ = CONVERSIONS[fspec.as_]
        # JSON values keep their own types under 'auto'; XML text is still stripped.
        conv = None if fspec.as_ == "auto" and kind == "jsonpath" else converter
        return CompiledField(
            name,
            type_,
            select,
            conv,
            None,
            text,
            Where(self.loaded, self.base + loc, len(name), True),
        )

    def _compile_computed(self, name: str, node: ast.Expr, span: Where) -> CompiledField | None:
        try:
            compiled = self.expression_compiler().compile(node)
        except DslError as err:
            self.dsl_error(err, ("fields", name, "expr"))
            self.names[name] = Type.ANY
            return None
        declared = self.spec.fields[name].as_
        fn = compiled.fn
        if declared != "auto":
            fn = _then_convert(fn, CONVERSIONS[declared][0])
        type_ = compiled.type if declared == "auto" else CONVERSIONS[declared][1]
        self.names[name] = type_
        return CompiledField(
            name,
            type_,
            None,
            None,
            fn,
            ast.unparse(node),
            span,
            compiled.names,
            functions=compiled.functions,
        )

    def _order_computed(
        self, computed: dict[str, tuple[ast.Expr, Where]], masks: Mapping[str, ast.Expr]
    ) -> list[str] | None:
        """Computed fields in dependency order (a field's missing_if reads count, but for
        the field itself); a cycle is an error."""
        deps = {
            n: {d for d in _names_in(node) if d in computed} for n, (node, _) in computed.items()
        }
        for n, mask in masks.items():
            if n in deps:  # a mask reads its own field's value: not a cycle
                deps[n] |= {d for d in _names_in(mask) if d in computed and d != n}
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(name: str, trail: list[str]) -> bool:
            if state.get(name) == 2:
                return True
            if state.get(name) == 1:
                cycle = " -> ".join([*trail[trail.index(name) :], name])
                self.error(
                    "E307",
                    f"fields depend on each other in a cycle: {cycle}",
                    ("fields", name),
                    "break the cycle",
                    len(name),
                    key=True,
                )
                return False
            state[name] = 1
            for dep in sorted(deps[name]):
                if not visit(dep, [*trail, name]):
                    return False
            state[name] = 2
            order.append(name)
            return True

        for name in computed:
            if not visit(name, []):
                return None
        return order

    def check_event_fields(self) -> None:
        for key in ("event_id", "event_time"):
            name = getattr(self.spec, key)
            if name not in self.spec.fields:
                import difflib

                close = difflib.get_close_matches(name, list(self.spec.fields), n=1)
                self.error(
                    "E605",
                    f"{key} names '{name}', which is not a field",
                    (key,),
                    f"did you mean '{close[0]}'?" if close else f"declare '{name}' under fields:",
                    len(name),
                )

    def compile_expiry(self) -> float:
        simple = to_duration(self.spec.expiry)  # '2 h', '90 min': no need for the parser
        if isinstance(simple, float) and simple > 0:
            return simple
        try:
            compiled = Compiler({}, self.functions).compile(parse(self.spec.expiry))
        except DslError as err:
            self.dsl_error(err, ("expiry",))
            return 0.0
        if not (compiled.is_const and compiled.type is Type.DURATION and compiled.const > 0):
            self.error(
                "E403",
                f"expiry must be a positive duration, not '{self.spec.expiry}'",
                ("expiry",),
                "write e.g. '90 min', '2 h' or '3 d'",
            )
            return 0.0
        return float(compiled.const)

    def _condition(self, compiler: Compiler, text: str, node: ast.Expr) -> Compiled:
        """A condition compiled once per load for the same text and the same name types."""
        key = (text, tuple((n, self.names.get(n)) for n in _text_facts(text)[0]))
        compiled = self.memo.get(key)
        if compiled is None:
            compiled = self.memo[key] = compiler.compile_condition(node)
        return compiled

    def compile_conditions(self) -> tuple[CompiledCondition, ...]:
        out = []
        compiler = self.expression_compiler()
        for name, raw in self.spec.conditions.items():
            loc: Loc = ("conditions", name)
            text = raw.when if isinstance(raw, ConditionSpec) else raw
            if isinstance(raw, ConditionSpec):
                loc = (*loc, "when")
            try:
                node = parse(text)
                compiled = self._condition(compiler, text, node)
            except DslError as err:
                self.dsl_error(err, loc)
                continue
            const = (
                compiled.const if compiled.is_const and isinstance(compiled.const, Vote) else None
            )
            origin = Where(self.loaded, self.base + loc, scalar=True)
            out.append(
                CompiledCondition(
                    name,
                    text,
                    compiled.fn,
                    origin,
                    tuple(sorted(compiled.names)),
                    const,
                    node,
                    compiled.shown,
                    self.display_units(text, compiled.names),
                    compiled.functions,
                )
            )
        return tuple(out)

    def display_units(self, text: str, names: Iterable[str]) -> dict[str, str]:
        """Angles and durations in the first unit the condition writes for their kind (so
        `error < 4 arcmin` shows `error=3 arcmin`), else degrees and readable durations."""
        written = _text_facts(text)[1]
        fallback = {Type.ANGLE: "deg", Type.DURATION: DURATION, Type.TIME: TIME}
        units = {}
        for name in names:
            kind = self.names.get(name)
            if kind in fallback:
                units[name] = written.get(kind, fallback[kind])
        return units

    def compile_actions(self) -> tuple[CompiledAction, ...]:
        out = []
        known = set(self.names) | set(TEMPLATE_NAMES)
        for i, raw in enumerate(self.spec.actions):
            loc: Loc = ("actions", i)
            type_name = raw.get("type")
            kind = get_action_type(str(type_name)) if type_name is not None else None
            if kind is None:
                from tracerules.products.actions.registry import action_types

                names = ", ".join(sorted(action_types()))
                if type_name is None:
                    self.error("E401", "missing key 'type'", loc, f"action types: {names}")
                else:
                    self.error(
                        "E801",
                        f"unknown action type '{type_name}'",
                        (*loc, "type"),
                        f"action types: {names}",
                        len(str(type_name)),
                    )
                continue
            try:
                config = kind.config.model_validate(raw)
            except ValidationError as err:
                self.diagnostics += validation_diagnostics(
                    err, kind.config, self.loaded, self.base + loc
                )
                continue
            self.check_field_refs(config, loc)
            named = self._site_refs(config, loc)
            for key, text in config.templates().items():
                tloc = (*loc, *[int(p) if p.isdigit() else p for p in key.split(".")])
                try:
                    compile_template(text, known | set(getattr(config, "template_names", ())))
                except DslError as err:
                    self.dsl_error(err, tloc)
            out.append(CompiledAction(kind, config, Where(self.loaded, self.base + loc), named))
        return tuple(out)

    def check_field_refs(self, config: ActionConfig, loc: Loc) -> None:
        """Keys such as `ra: ra` must name fields; a default left unwritten is reported at
        the `observatory:` that needs it (its own key is not in the file)."""
        for ref in field_refs(config):
            name = getattr(config, ref)
            if name is None or name in self.names:
                continue
            written = ref in config.model_fields_set
            # A default left unwritten has no place of its own: the key that needs it does.
            needer = "observatory" if "observatory" in config.model_fields_set else "type"
            self.error(
                "E802",
                f"{ref} names '{name}', which is not a field"
                + ("" if written else f" ({ref} defaults to '{name}')"),
                (*loc, ref) if written else (*loc, needer),
                f"declare '{name}' under fields:, or set {ref}: to the field that holds it",
                len(name) if written else len(needer),
                key=not written,
            )

    def _site_refs(self, config: ActionConfig, loc: Loc) -> dict[str, Site]:
        """The sites an action's `site_refs` options name (e.g. `site: mwa`), which must be
        declared; an unknown one is an error at its place."""
        sites, named = self.sites or {}, {}
        for ref in config.site_refs:
            name = getattr(config, ref)
            if name is None:
                continue
            if name in sites:
                named[str(name)] = sites[name]
                continue
            if self.sites is None:
                hint = "no sites were loaded: validate the whole rules folder (sites.yaml)"
            else:
                hint = _close(str(name), sites) or "known sites: " + ", ".join(sorted(sites))
            self.error("E606", f"unknown site '{name}'", (*loc, ref), hint, len(str(name)))
        return named

    def compile(self, revision: str) -> CompiledTrigger | None:
        fmt = self.topic_format()
        self.check_event_fields()
        fields = self.compile_fields(fmt)
        expiry = self.compile_expiry()
        conditions = self.compile_conditions()
        actions = self.compile_actions()
        if self.diagnostics or fields is None or fmt is None:
            return None
        spec = self.spec
        return CompiledTrigger(
            spec.id,
            spec.description,
            tuple(spec.topics),
            fmt,
            spec.priority,
            spec.mode,
            expiry,
            spec.event_id,
            spec.event_time,
            fields,
            conditions,
            actions,
            self.loaded.path,
            Where(self.loaded, (*self.base, "id"), len(spec.id)),
            revision,
            frozenset(spec.lint.disable),
        )


def _close(name: str, candidates: Mapping[str, Any]) -> str | None:
    import difflib

    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f"did you mean '{close[0]}'?" if close else None


def _then_convert(fn: Callable[[Context], Any], conv: Converter) -> Callable[[Context], Any]:
    def converted(ctx: Context) -> Any:
        value = fn(ctx)
        return value if isinstance(value, Missing) else conv(value)

    return converted


@functools.lru_cache(maxsize=8192)
def _text_facts(text: str) -> tuple[tuple[str, ...], Mapping[Type, str]]:
    """The names a condition's text reads (sorted) and the units it writes, walked once per
    text: rule sets repeat their conditions across triggers (issue 16). `text` parses."""
    node = parse(text)
    return tuple(sorted(set(_names_in(node)))), MappingProxyType(literal_units(node))


def literal_units(node: ast.Expr) -> dict[Type, str]:
    """The first unit word written in an expression for each kind: {ANGLE: 'arcmin'}."""
    found: dict[Type, str] = {}
    if isinstance(node, ast.Num) and node.unit is not None:
        kind = unit_type(node.unit)
        if kind is not None:
            found[kind[0]] = node.unit
    for child in _children(node):
        for kind_, unit in literal_units(child).items():
            found.setdefault(kind_, unit)
    return found


def _names_in(node: ast.Expr) -> Iterator[str]:
    if isinstance(node, ast.Name):
        yield node.id
    for child in _children(node):
        yield from _names_in(child)


def _children(node: ast.Expr) -> Iterator[ast.Expr]:
    match node:
        case ast.ListExpr(items=items) | ast.Call(args=items):
            yield from items
        case ast.Neg(operand=o) | ast.Not(operand=o):
            yield o
        case ast.BinOp(left=left, right=right):
            yield left
            yield right
        case ast.Compare(operands=items) | ast.Logic(operands=items):
            yield from items
        case ast.In(item=item, container=container):
            yield item
            yield container
        case ast.Case(whens=whens, default=default):
            for cond, value in whens:
                yield cond
                yield value
            if default is not None:
                yield default


# -- the whole set ---------------------------------------------------------------------------


_Named = TypeVar("_Named")  # a topic or a site, by name


def _collect_topics(result: LoadResult) -> dict[str, TopicSpec]:
    topics, _ = _collect_named(result, "topics", "E604", lambda topic: topic)
    return topics


def _collect_sites(result: LoadResult) -> dict[str, Site] | None:
    """Every declared site by name (None when no file declares any)."""
    sites, declared = _collect_named(result, "sites", "E607", lambda spec: spec.to_site())
    return sites if declared else None


def _collect_named(
    result: LoadResult, section: str, code: str, value: Callable[[Any], _Named]
) -> tuple[dict[str, _Named], bool]:
    """The named entries of one top-level section of every file (topics, sites), by name,
    and whether any file declares one; a name declared again, differently, is `code`."""
    found: dict[str, _Named] = {}
    where: dict[str, Where] = {}
    declared = False
    for loaded in result.files:
        if loaded.spec is None:
            continue
        for i, spec in enumerate(getattr(loaded.spec, section)):
            declared = True
            span = Where(loaded, (section, i, "name"), len(spec.name))
            entry = value(spec)
            if spec.name in found and found[spec.name] != entry:
                result.diagnostics.append(
                    Diagnostic(
                        code,
                        f"{section[:-1]} '{spec.name}' is defined again, differently",
                        span.span(),
                        f"first defined at {where[spec.name].span()}",
                    )
                )
                continue
            found.setdefault(spec.name, entry)
            where.setdefault(spec.name, span)
    return found, declared


def _duplicate_ids(result: LoadResult) -> list[Diagnostic]:
    """Trigger ids used twice, read from the YAML itself so invalid triggers count too."""
    out: list[Diagnostic] = []
    seen: dict[str, Where] = {}
    for loaded in result.files:
        if loaded.spec is None:
            continue
        for i, node in enumerate(loaded.data.get("triggers") or []):
            trigger_id = node.get("id") if isinstance(node, dict) else None
            if not isinstance(trigger_id, str):
                continue
            span = Where(loaded, ("triggers", i, "id"), len(trigger_id))
            if trigger_id in seen:
                out.append(
                    Diagnostic(
                        "E603",
                        f"trigger id '{trigger_id}' is used twice",
                        span.span(),
                        f"first used at {seen[trigger_id].span()}; ids must be unique",
                    )
                )
            seen.setdefault(trigger_id, span)
    return out


@collector_paused(freeze_first=True)
def compile_loaded(
    result: LoadResult, functions: Mapping[str, Builtin] | None = None
) -> tuple[RuleSet | None, list[Diagnostic]]:
    """Compile what the loader read. Returns the rule set (None on errors) and diagnostics.

    Expressions may call ``functions`` (default: every built-in, from
    :func:`tracerules.rules.functions.builtin_functions`).
    """
    from tracerules.rules.lints import run_lints

    topics = _collect_topics(result)
    sites = _collect_sites(result)
    result.diagnostics += _duplicate_ids(result)
    triggers: list[CompiledTrigger] = []
    memo: dict[Any, Compiled] = {}
    for loaded in result.files:
        revision = hashlib.sha256(loaded.text.encode()).hexdigest()[:16]
        for located in loaded.triggers:
            tc = TriggerCompiler(located, loaded, topics, sites, memo, functions)
            compiled = tc.compile(revision)
            result.diagnostics += tc.diagnostics
            if compiled is not None:
                triggers.append(compiled)
    lints = run_lints(triggers, result)
    diagnostics = result.diagnostics + lints
    if any(d.is_error for d in diagnostics):
        return None, diagnostics
    ordered = tuple(sorted(triggers, key=lambda t: (t.priority, t.id)))
    by_topic: dict[str, list[CompiledTrigger]] = {}
    for trigger in ordered:
        if trigger.mode != "off":
            for topic in trigger.topics:
                by_topic.setdefault(topic, []).append(trigger)
    files = tuple(f.path for f in result.files)
    commit = git_commit(Path(files[0]).parent) if files else None
    return RuleSet(
        topics,
        ordered,
        {k: tuple(v) for k, v in by_topic.items()},
        files,
        tuple(lints),
        result.sources,
        commit,
        sites or {},
        notice_providers(t.format for t in ordered),
    ), diagnostics


@collector_paused(freeze_first=True)
def load_ruleset(
    paths: Sequence[str | Path], functions: Mapping[str, Builtin] | None = None
) -> RuleSet:
    """Load and compile rule files; raise RuleError with every error found."""
    ruleset, diagnostics = compile_loaded(load_paths(paths), functions)
    if ruleset is None:
        raise RuleError([d for d in diagnostics if d.is_error])
    return ruleset
