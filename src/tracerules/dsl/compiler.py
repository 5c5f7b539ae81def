"""AST to closures, once at load time; names, arity and types are checked on the way.

A compiled expression is a function `Context -> value`. Missing values propagate through
every operator (and/or use Kleene logic, so `false and missing` is false); a value of the
wrong kind at run time becomes a Missing with the reason. Nothing here raises on the hot path.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from tracerules.dsl import ast
from tracerules.dsl.builtins import CORE_BUILTINS, SAME_AS_FIRST, Builtin
from tracerules.dsl.context import Context
from tracerules.dsl.display import show
from tracerules.dsl.values import NUMERIC, Missing, Type, Vote, show_with_unit, unit_type
from tracerules.errors import DslError

if TYPE_CHECKING:
    from tracerules.products.sky.sites import Site

Fn = Callable[[Context], Any]

_NOT_CONST: Final = object()
# `else UNKNOWN` abstains on purpose: the event keeps its previous vote for this condition.
_ABSTAIN: Final = Missing("the condition abstains (UNKNOWN)")


@dataclass(frozen=True, slots=True)
class Compiled:
    """A closure with its static type, the names it reads and, if known, its constant value."""

    fn: Fn
    type: Type
    names: frozenset[str] = frozenset()
    const: Any = field(default=_NOT_CONST, compare=False)
    functions: frozenset[str] = frozenset()
    # Values read through the context rather than from fields (sky-map figures, age()), by
    # their text: shown beside a condition's vote, as its fields are.
    shown: tuple[tuple[str, Fn], ...] = ()

    @property
    def is_const(self) -> bool:
        return self.const is not _NOT_CONST


def _err(code: str, message: str, pos: ast.Pos, hint: str | None = None) -> DslError:
    return DslError(code, message, pos.line, pos.col, pos.length, hint)


def _suggest(name: str, candidates: Any) -> str | None:
    import difflib  # only for a mistake: not on the path of loading correct rules

    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def _const(value: Any, type_: Type) -> Compiled:
    return Compiled(lambda ctx: value, type_, const=value)


def _once(fn: Fn, key: str) -> Fn:
    """`fn` computed once per evaluation context (a figure shown beside its vote)."""
    return lambda ctx: ctx.once(key, lambda: fn(ctx))


def _merge(parts: list[Compiled]) -> dict[str, Any]:
    shown = {text: fn for p in parts for text, fn in p.shown}
    return {
        "names": frozenset().union(*(p.names for p in parts)),
        "functions": frozenset().union(*(p.functions for p in parts)),
        "shown": tuple(shown.items()),
    }


_ARITH: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "%": operator.mod,
    "**": operator.pow,
    "&": operator.and_,
}
_CMP: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_ARITH_ERRORS = (TypeError, ValueError, ArithmeticError)


def _arith_type(op: str, left: Type, right: Type, pos: ast.Pos) -> Type:
    """The result type of `left op right`, or a compile error where it makes no sense."""
    if Type.ANY in (left, right):
        return Type.ANY
    pair = (left, right)
    table: dict[tuple[str, Type, Type], Type] = {
        ("-", Type.TIME, Type.TIME): Type.DURATION,
        ("+", Type.TIME, Type.DURATION): Type.TIME,
        ("+", Type.DURATION, Type.TIME): Type.TIME,
        ("-", Type.TIME, Type.DURATION): Type.TIME,
        ("/", Type.DURATION, Type.DURATION): Type.NUMBER,
        ("/", Type.ANGLE, Type.ANGLE): Type.NUMBER,
    }
    if (op, *pair) in table:
        return table[(op, *pair)]
    for dim in (Type.DURATION, Type.ANGLE):
        if op in "+-" and pair == (dim, dim):
            return dim
        if op == "*" and set(pair) == {dim, Type.NUMBER}:
            return dim
        if op == "/" and pair == (dim, Type.NUMBER):
            return dim
    if op in "+-" and set(pair) == {Type.ANGLE, Type.NUMBER}:
        return Type.ANGLE  # plain numbers are degrees next to an angle
    if pair == (Type.NUMBER, Type.NUMBER):
        return Type.NUMBER
    if op == "+" and pair == (Type.STRING, Type.STRING):
        return Type.STRING
    hint = None
    if Type.DURATION in pair and Type.NUMBER in pair:
        hint = "give the number a unit, e.g. '90 min', or convert with seconds(...)"
    if Type.TIME in pair:
        hint = "subtract two times to get a duration, or add a duration to a time"
    raise _err("E304", f"cannot apply '{op}' to {left.value} and {right.value}", pos, hint)


def _comparable(left: Type, right: Type, op: str, pos: ast.Pos) -> None:
    if Type.ANY in (left, right) or left.fits(right):
        return
    if op in ("==", "!=") and Type.NUMBER not in (left, right):
        raise _err(
            "E304",
            f"comparing {left.value} with {right.value} is always "
            f"{'false' if op == '==' else 'true'}",
            pos,
        )
    hint = None
    if {left, right} == {Type.DURATION, Type.NUMBER}:
        hint = "give the number a unit, e.g. 'age() < 90 min'"
    elif {left, right} == {Type.TIME, Type.STRING}:
        hint = 'convert the text with time("2024-01-01T00:00:00")'
    raise _err("E304", f"cannot compare {left.value} with {right.value}", pos, hint)


def _bare_number_with_angle(
    pairs: list[tuple[Compiled, ast.Expr]], verb: str, pos: ast.Pos
) -> None:
    """A bare number beside an angle is an error: `error < 4` was meant as arcmin as often
    as degrees. Zero means the same in every unit, and a number read from a field (no
    literal) keeps the documented reading: degrees."""
    types = {c.type for c, _ in pairs}
    if Type.ANGLE not in types:
        return
    for compiled, node in pairs:
        if compiled.type is Type.NUMBER and compiled.is_const and compiled.const != 0:
            shown = f"{compiled.const:g}"
            where = getattr(node, "pos", pos)
            raise _err(
                "E304",
                f"{verb} an angle with the bare number {shown}: which unit?",
                where if where is not ast.NOWHERE else pos,
                f"write `{shown} arcmin` or `{shown} deg`",
            )


_METHODS: dict[type, Callable[[Compiler, Any], Compiled]] = {}


class Compiler:
    """Compiles expressions against a fixed set of names with static types."""

    def __init__(
        self,
        names: Mapping[str, Type],
        builtins: Mapping[str, Builtin] | None = None,
        sites: Mapping[str, Site] | None = None,
    ):
        self.names = dict(names)
        # The rule compiler passes the assembled table (tracerules.rules.functions); bare
        # expressions know the core functions only.
        self.builtins = CORE_BUILTINS if builtins is None else builtins
        self.sites = sites  # None: no site registry was loaded (not the same as no sites)

    # -- entry points ---------------------------------------------------------------------

    def compile(self, node: ast.Expr) -> Compiled:
        kind = type(node)
        method = _METHODS.get(kind)
        if method is None:  # once per node class: this runs for every node of every rule
            method = _METHODS[kind] = getattr(Compiler, "_" + kind.__name__.lower())
        return method(self, node)

    def compile_condition(self, node: ast.Expr) -> Compiled:
        """A condition: its value becomes a Vote (bool: PASS/FAIL; Missing: UNKNOWN)."""
        compiled = self.compile(node)
        if compiled.type not in (Type.BOOL, Type.VOTE, Type.ANY):
            raise _err(
                "E306",
                f"a condition must be true/false or a vote, not {compiled.type.value}",
                getattr(node, "pos", ast.NOWHERE),
                hint="compare it with something, e.g. 'x > 5', or use case ... end",
            )
        fn = compiled.fn

        def vote(ctx: Context) -> Any:
            value = fn(ctx)
            if value is True:
                return Vote.PASS
            if value is False:
                return Vote.FAIL
            if value is Vote.UNKNOWN:
                return _ABSTAIN
            if isinstance(value, Vote):
                return value
            if isinstance(value, Missing):
                return value
            return Missing(f"a condition gave {value!r}, not true/false or a vote")

        const = _NOT_CONST
        if compiled.is_const:
            const = vote(Context({}, 0.0))
        return Compiled(vote, Type.VOTE, compiled.names, const, compiled.functions, compiled.shown)

    # -- leaves ---------------------------------------------------------------------------------

    def _num(self, node: ast.Num) -> Compiled:
        if node.unit is None:
            return _const(node.value, Type.NUMBER)
        found = unit_type(node.unit)
        if found is None:  # the parser already rejects these; kept for hand-built trees
            raise _err("E203", f"unknown unit '{node.unit}'", node.pos)
        type_, scale = found
        return _const(node.value * scale, type_)

    def _str(self, node: ast.Str) -> Compiled:
        return _const(node.value, Type.STRING)

    def _bool(self, node: ast.Bool) -> Compiled:
        return _const(node.value, Type.BOOL)

    def _votelit(self, node: ast.VoteLit) -> Compiled:
        return _const(node.vote, Type.VOTE)

    def _name(self, node: ast.Name) -> Compiled:
        if node.id not in self.names:
            hint = _suggest(node.id, self.names) or (
                f"'{node.id}' is a function: call it as {node.id}(...)"
                if node.id in self.builtins
                else "declare it under fields:"
            )
            raise _err("E301", f"unknown field '{node.id}'", node.pos, hint)
        key = node.id

        def lookup(ctx: Context) -> Any:
            try:
                return ctx.values[key]
            except KeyError:
                return Missing(f"{key} is not set")

        return Compiled(lookup, self.names[key], frozenset({key}))

    def _listexpr(self, node: ast.ListExpr) -> Compiled:
        items = [self.compile(i) for i in node.items]
        meta = _merge(items)
        if all(i.is_const for i in items):
            return _const(tuple(i.const for i in items), Type.LIST)
        fns = tuple(i.fn for i in items)
        return Compiled(lambda ctx: tuple(f(ctx) for f in fns), Type.LIST, **meta)

    # -- operators ------------------------------------------------------------------------------

    def _fold(self, built: Compiled, parts: list[Compiled]) -> Compiled:
        """Evaluate now when every operand is constant (also powers the constant lint)."""
        if parts and all(p.is_const for p in parts):
            value = built.fn(Context({}, 0.0))
            return Compiled(lambda ctx: value, built.type, built.names, value, built.functions)
        return built

    def _neg(self, node: ast.Neg) -> Compiled:
        inner = self.compile(node.operand)
        if inner.type not in (*NUMERIC, Type.ANY) or inner.type is Type.TIME:
            raise _err("E304", f"cannot negate {inner.type.value}", node.pos)
        fn = inner.fn

        def neg(ctx: Context) -> Any:
            value = fn(ctx)
            if isinstance(value, Missing):
                return value
            try:
                return -value
            except TypeError:
                return Missing(f"cannot negate {value!r}")

        return self._fold(
            Compiled(neg, inner.type, inner.names, functions=inner.functions, shown=inner.shown),
            [inner],
        )

    def _binop(self, node: ast.BinOp) -> Compiled:
        left, right = self.compile(node.left), self.compile(node.right)
        if node.op == "&":
            for side in (left, right):
                if not side.type.fits(Type.NUMBER):
                    raise _err("E304", f"'&' needs integers, not {side.type.value}", node.pos)
            result = Type.NUMBER if Type.ANY not in (left.type, right.type) else Type.ANY
        else:
            if node.op in "+-":
                sides = [(left, node.left), (right, node.right)]
                _bare_number_with_angle(sides, f"'{node.op}' combines", node.pos)
            result = _arith_type(node.op, left.type, right.type, node.pos)
        pyop, op, lf, rf = _ARITH[node.op], node.op, left.fn, right.fn

        def binop(ctx: Context) -> Any:
            a = lf(ctx)
            if isinstance(a, Missing):
                return a
            b = rf(ctx)
            if isinstance(b, Missing):
                return b
            if isinstance(a, bool | Vote) or isinstance(b, bool | Vote):
                return Missing(f"cannot compute {a!r} {op} {b!r}")
            try:
                return pyop(a, b)
            except _ARITH_ERRORS as err:
                return Missing(f"{a!r} {op} {b!r}: {err}")

        built = Compiled(binop, result, **_merge([left, right]))
        return self._fold(built, [left, right])

    def _compare(self, node: ast.Compare) -> Compiled:
        parts = [self.compile(o) for o in node.operands]
        for op, a, b, na, nb in zip(
            node.ops, parts, parts[1:], node.operands, node.operands[1:], strict=False
        ):
            _comparable(a.type, b.type, op, node.pos)
            _bare_number_with_angle([(a, na), (b, nb)], f"'{op}' compares", node.pos)
        fns = tuple(p.fn for p in parts)
        ops = tuple(_CMP[o] for o in node.ops)
        pairs = tuple(zip(ops, range(len(ops)), strict=True))

        def compare(ctx: Context) -> Any:
            values = [f(ctx) for f in fns]
            for value in values:
                if isinstance(value, Missing):
                    return value
            try:
                for cmp, i in pairs:
                    if not cmp(values[i], values[i + 1]):
                        return False
            except TypeError:
                return Missing(f"cannot compare {values[0]!r} with {values[1]!r}")
            return True

        if len(fns) == 2:  # the common case, without the list
            (cmp, _), (fa, fb) = pairs[0], fns

            def compare(ctx: Context) -> Any:
                a = fa(ctx)
                if isinstance(a, Missing):
                    return a
                b = fb(ctx)
                if isinstance(b, Missing):
                    return b
                try:
                    return bool(cmp(a, b))
                except TypeError:
                    return Missing(f"cannot compare {a!r} with {b!r}")

        return self._fold(Compiled(compare, Type.BOOL, **_merge(parts)), parts)

    def _in(self, node: ast.In) -> Compiled:
        item, box = self.compile(node.item), self.compile(node.container)
        if box.type not in (Type.LIST, Type.STRING, Type.ANY):
            raise _err(
                "E304",
                f"'in' needs a list or a string on the right, not {box.type.value}",
                node.container.pos,
            )
        negated, fi, fb = node.negated, item.fn, box.fn
        fast: frozenset[Any] | None = None
        if box.is_const and isinstance(box.const, tuple):
            try:
                fast = frozenset(box.const)
            except TypeError:
                fast = None

        def contains(ctx: Context) -> Any:
            value = fi(ctx)
            if isinstance(value, Missing):
                return value
            container = fast if fast is not None else fb(ctx)
            if isinstance(container, Missing):
                return container
            try:
                found = value in container
            except TypeError:
                return Missing(f"cannot look for {value!r} in {container!r}")
            return found != negated

        return self._fold(Compiled(contains, Type.BOOL, **_merge([item, box])), [item, box])

    def _check_bool(self, part: Compiled, node: ast.Expr, word: str) -> None:
        if part.type not in (Type.BOOL, Type.ANY):
            raise _err(
                "E304",
                f"'{word}' needs true/false, not {part.type.value}",
                getattr(node, "pos", ast.NOWHERE),
                hint="compare it, e.g. 'x > 0', or convert it with bool(...)",
            )

    def _logic(self, node: ast.Logic) -> Compiled:
        parts = [self.compile(o) for o in node.operands]
        for part, sub in zip(parts, node.operands, strict=True):
            self._check_bool(part, sub, node.op)
        fns = tuple(p.fn for p in parts)
        stop = node.op == "or"  # the value that decides the whole: True for or, False for and

        def logic(ctx: Context) -> Any:
            missing: Missing | None = None
            for f in fns:
                value = f(ctx)
                if value is stop:
                    return stop
                if isinstance(value, Missing):
                    if missing is None:
                        missing = value
                elif value is not (not stop) and missing is None:
                    missing = Missing(f"{value!r} is not true/false")
            return missing if missing is not None else not stop

        return self._fold(Compiled(logic, Type.BOOL, **_merge(parts)), parts)

    def _not(self, node: ast.Not) -> Compiled:
        inner = self.compile(node.operand)
        self._check_bool(inner, node.operand, "not")
        fn = inner.fn

        def negate(ctx: Context) -> Any:
            value = fn(ctx)
            if value is True or value is False:
                return not value
            return value if isinstance(value, Missing) else Missing(f"{value!r} is not true/false")

        return self._fold(
            Compiled(negate, Type.BOOL, inner.names, functions=inner.functions, shown=inner.shown),
            [inner],
        )

    def _case(self, node: ast.Case) -> Compiled:
        whens = [(self.compile(c), self.compile(v)) for c, v in node.whens]
        default = self.compile(node.default) if node.default is not None else None
        for (cond, _), (cnode, _) in zip(whens, node.whens, strict=True):
            self._check_bool(cond, cnode, "when")
        results = [v for _, v in whens] + ([default] if default else [])
        types = {r.type for r in results} - {Type.ANY}
        result = types.pop() if len(types) == 1 else Type.ANY
        if len(types) > 1 and Type.VOTE in types | {result}:
            raise _err("E304", "every branch of a vote must give PASS, MAYBE or FAIL", node.pos)
        arms = tuple((c.fn, v.fn) for c, v in whens)
        other = (
            default.fn if default else _no_case(sorted(set().union(*(c.names for c, _ in whens))))
        )

        def case(ctx: Context) -> Any:
            for cond, value in arms:
                hit = cond(ctx)
                if hit is True:
                    return value(ctx)
                if hit is not False:
                    return hit if isinstance(hit, Missing) else Missing(f"{hit!r} is not a bool")
            return other(ctx)

        parts = [c for c, _ in whens] + results
        return self._fold(Compiled(case, result, **_merge(parts)), parts)

    # -- calls ----------------------------------------------------------------------------------

    def _call(self, node: ast.Call) -> Compiled:
        spec = self.builtins.get(node.func)
        if spec is None:
            name_pos = ast.Pos(node.pos.line, node.pos.col, len(node.func))
            raise _err(
                "E302",
                f"unknown function '{node.func}'",
                name_pos,
                _suggest(node.func, self.builtins) or "run 'tracerules functions'",
            )
        nargs = len(node.args)
        if nargs < spec.min_args or (spec.max_args is not None and nargs > spec.max_args):
            raise _err(
                "E303",
                f"{node.func}() takes {self._arity(spec)}, got {nargs}",
                node.pos,
                hint=spec.signature(),
            )
        args = [self._call_arg(spec, i, a) for i, a in enumerate(node.args)]
        for i, (arg, sub) in enumerate(zip(args, node.args, strict=True)):
            expected = spec.params[min(i, len(spec.params) - 1)]
            if not arg.type.fits(expected):
                raise _err(
                    "E304",
                    f"argument {i + 1} of {node.func}() must be "
                    f"{expected.value}, not {arg.type.value}",
                    getattr(sub, "pos", node.pos),
                    hint=spec.signature(),
                )
        if spec.same_types and args:
            for arg, sub in zip(args[1:], node.args[1:], strict=True):
                if not arg.type.fits(args[0].type):
                    raise _err(
                        "E304",
                        f"{node.func}() mixes {args[0].type.value} and {arg.type.value}",
                        getattr(sub, "pos", node.pos),
                    )
        returns = spec.returns
        result = (args[0].type if args else Type.ANY) if returns == SAME_AS_FIRST else returns
        assert isinstance(result, Type)
        meta = _merge(args)
        fn = self._call_fn(spec, args)
        shown = meta["shown"]
        if spec.needs_context and (spec.figure or all(a.is_const for a in args)):
            fn = _once(fn, f"={ast.unparse(node)}")  # the vote and its detail ask once
            shown = (*shown, (ast.unparse(node), show_with_unit(fn, result) if spec.figure else fn))
        built = Compiled(
            fn, result, meta["names"], functions=meta["functions"] | {spec.name}, shown=shown
        )
        if spec.needs_context:
            return built
        return self._fold(built, args)

    @staticmethod
    def _arity(spec: Builtin) -> str:
        if spec.variadic:
            return f"at least {spec.min_args} arguments"
        if spec.min_args == spec.max_args:
            return f"{spec.min_args} argument{'s' if spec.min_args != 1 else ''}"
        return f"{spec.min_args} to {spec.max_args} arguments"

    def _call_arg(self, spec: Builtin, index: int, node: ast.Expr) -> Compiled:
        if spec.site_arg == index:
            return self._site_arg(spec, node)
        if spec.regex_arg != index:
            return self.compile(node)
        if not isinstance(node, ast.Str):
            raise _err(
                "E305",
                f"the pattern of {spec.name}() must be a literal string",
                getattr(node, "pos", ast.NOWHERE),
            )
        try:
            pattern = re.compile(node.value)
        except re.error as err:
            raise _err("E305", f"invalid regular expression: {err}", node.pos) from None
        return Compiled(lambda ctx: pattern, Type.STRING, const=pattern)

    def _site_arg(self, spec: Builtin, node: ast.Expr) -> Compiled:
        """A site named by a literal string, resolved now: an unknown name is a load error."""
        if not isinstance(node, ast.Str):
            raise _err(
                "E309",
                f"the site of {spec.name}() must be a literal site name, like 'mwa'",
                getattr(node, "pos", ast.NOWHERE),
                "name a site declared under sites: in a rule file",
            )
        sites = self.sites or {}
        site = sites.get(node.value)
        if site is None:
            if self.sites is None:
                hint = (
                    "no sites were loaded: validate the whole rules folder, which holds "
                    "sites.yaml, e.g. 'tracerules validate rules'"
                )
            elif sites:
                hint = _suggest(node.value, sites) or "known sites: " + ", ".join(sorted(sites))
            else:
                hint = "declare it under sites: in a rule file"
            raise _err("E606", f"unknown site '{node.value}'", node.pos, hint)
        return Compiled(lambda ctx: site, Type.STRING, const=site)

    @staticmethod
    def _call_fn(spec: Builtin, args: list[Compiled]) -> Fn:
        fns, impl, name = tuple(a.fn for a in args), spec.impl, spec.name
        handles_missing, needs_context = spec.handles_missing, spec.needs_context

        def call(ctx: Context) -> Any:
            values = [f(ctx) for f in fns]
            if not handles_missing:
                for value in values:
                    if isinstance(value, Missing):
                        return value
            try:
                return impl(ctx, *values) if needs_context else impl(*values)
            except _ARITH_ERRORS as err:
                return Missing(f"{name}(): {err}")

        return call


def compile_expression(
    text_or_node: str | ast.Expr,
    names: Mapping[str, Type],
    condition: bool = False,
    sites: Mapping[str, Site] | None = None,
    builtins: Mapping[str, Builtin] | None = None,
) -> Compiled:
    """Parse (if given text) and compile one expression against the given names (and sites),
    calling the given built-in functions (default: the core ones)."""
    from tracerules.dsl.parser import parse

    node = parse(text_or_node) if isinstance(text_or_node, str) else text_or_node
    compiler = Compiler(names, builtins, sites)
    return compiler.compile_condition(node) if condition else compiler.compile(node)


def _no_case(names: list[str]) -> Callable[[Context], Missing]:
    """A case without `else` that matched nothing: say what its `when`s read."""

    def no_case(ctx: Context) -> Missing:
        read = ", ".join(f"{n}={show(ctx.values.get(n, Missing('unset')))}" for n in names)
        return Missing(f"no case matched ({read})" if read else "no case matched")

    return no_case
