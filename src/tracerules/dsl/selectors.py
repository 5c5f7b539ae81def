"""JSONPath and XPath selectors, compiled once at load; each returns the first match.

Results are normalised as behaviour.md says: XML gives the element text or attribute value,
stripped; scalar XPath results (`string()`, `count()`) are supported. Nothing found, an empty
value or JSON null is a Missing with the reason, never an exception.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, Final

from lxml import etree

from tracerules.dsl.values import Missing
from tracerules.errors import DslError

Selector = Callable[[Any], Any]

VOEVENT_NS: Final = "http://www.ivoa.net/xml/VOEvent/v2.0"
DEFAULT_NAMESPACES: Final[dict[str, str]] = {"voe": VOEVENT_NS}

# `$`, then `.name`, `['name']`, `["name"]` or `[3]` steps: most real selectors. These are
# read with plain dict and list indexing; anything else goes through jsonpath-ng (an index
# of thousands of digits too, which it reports as E501 instead of int() raising).
_SIMPLE_STEP = re.compile(
    r"""\.(?P<name>[A-Za-z_$][\w$-]*)|\[(?:'(?P<sq>[^']*)'|"(?P<dq>[^"]*)"|(?P<idx>-?\d{1,18}))\]"""
)


def _simple_steps(text: str) -> tuple[str | int, ...] | None:
    if not text.startswith("$"):
        return None
    steps: list[str | int] = []
    pos = 1
    while pos < len(text):
        match = _SIMPLE_STEP.match(text, pos)
        if match is None:
            return None
        name = match.group("name") or match.group("sq") or match.group("dq")
        steps.append(int(match.group("idx")) if match.group("idx") is not None else name or "")
        pos = match.end()
    return tuple(steps)


def _walk(steps: tuple[str | int, ...], text: str) -> Selector:
    def select(doc: Any) -> Any:
        node = doc
        for step in steps:
            if isinstance(step, int):
                # Index lists only: jsonpath-ng would index into a string's characters.
                if not isinstance(node, list) or not -len(node) <= step < len(node):
                    return Missing(f"no match for {text}")
                node = node[step]
            elif isinstance(node, dict) and step in node:
                node = node[step]
            else:
                return Missing(f"no match for {text}")
        return Missing(f"{text} is null") if node is None else node

    return select


@lru_cache(maxsize=4096)
def compile_jsonpath(text: str) -> Selector:
    """A JSONPath selector; raises DslError E501 on bad syntax."""
    steps = _simple_steps(text.strip())
    if steps is not None:
        return _walk(steps, text)
    from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
    from jsonpath_ng.ext.parser import parse as parse_jsonpath

    try:
        path = parse_jsonpath(text)
    except (JsonPathLexerError, JsonPathParserError, Exception) as err:
        raise DslError(
            "E501",
            f"invalid JSONPath: {err}",
            1,
            1,
            len(text),
            hint="JSONPath looks like $.event.far or $.reference['key.with.dots']",
        ) from None

    def select(doc: Any) -> Any:
        try:
            matches = path.find(doc)
        except Exception as err:  # jsonpath-ng raises assorted errors on odd documents
            return Missing(f"{text}: {err}")
        if not matches:
            return Missing(f"no match for {text}")
        value = matches[0].value
        return Missing(f"{text} is null") if value is None else value

    return select


def _normalise_xml(result: Any, text: str) -> Any:
    if isinstance(result, list):
        if not result:
            return Missing(f"no match for {text}")
        result = result[0]
    if isinstance(result, bool):
        return result
    if isinstance(result, float):
        return Missing(f"{text} is not a number") if math.isnan(result) else result
    if isinstance(result, etree._Element):
        result = result.text
        if result is None:
            return Missing(f"{text} is empty")
    if isinstance(result, str):
        value = str(result).strip()
        return value if value else Missing(f"{text} is empty")
    return Missing(f"{text} gave {type(result).__name__}")


# A document with the VOEvent root, to surface evaluation-time XPath errors (such as an
# undeclared prefix) at load time rather than on the first notice.
_PROBE = etree.fromstring(f'<voe:VOEvent xmlns:voe="{VOEVENT_NS}"/>'.encode())


class XmlDoc:
    """A parsed XML notice: its root, and an index of its Params built on first use.

    Most VOEvent selectors are `//Param[@name='X']/@value` or
    `//Group[@name='G']/Param[@name='X']/@value`; one pass over the document answers all of
    them, where each XPath would walk the whole tree again.
    """

    __slots__ = ("_by_name", "root")

    def __init__(self, root: Any) -> None:
        self.root = root
        self._by_name: dict[str | None, list[Any]] | None = None

    def param_value(self, name: str) -> str | None:
        """The value of the first Param of this name ("" without one); None if none."""
        params = self.params_named(name)
        return (params[0].get("value") or "") if params else None

    def params_named(self, name: str) -> list[Any]:
        """Every Param element of this name, in document order."""
        if self._by_name is None:
            self._by_name = self._index()
        return self._by_name.get(name, [])

    def _index(self) -> dict[str | None, list[Any]]:
        # One walk, noting each Param under its name. A value is read only for the names a
        # selector asks for, not for every Param of the notice.
        by_name: dict[str | None, list[Any]] = {}
        for param in self.root.iter("Param"):
            name = param.get("name")
            same = by_name.get(name)
            if same is None:
                by_name[name] = [param]
            else:
                same.append(param)
        return by_name


_PARAM_VALUE = re.compile(r"""^\s*//Param\[@name=(['"])([^'"]+)\1\]/@value\s*$""")


def _param_selector(name: str, text: str) -> Selector:
    def select(doc: Any) -> Any:
        value = (doc if isinstance(doc, XmlDoc) else XmlDoc(doc)).param_value(name)
        if value is None:
            return Missing(f"no match for {text}")
        value = value.strip()
        return value if value else Missing(f"{text} is empty")

    return select


# `//Group[@name='G']/Param[@name='X']/@value`, the parent's predicate one or more
# `@attribute='value'` joined by `or` (none at all: `//What/Param[...]`).
_PARENT_PARAM = re.compile(
    r"""^\s*//(?P<parent>[A-Za-z_][\w.-]*)(?:\[(?P<test>[^\]]*)\])?"""
    r"""/Param\[@name=(['"])(?P<name>[^'"]+)\3\]/@value\s*$"""
)
_TEST = re.compile(r"""\s*@([A-Za-z_][\w.-]*)\s*=\s*(?:'([^']*)'|"([^"]*)")\s*(?:or\b|$)""")


def _attribute_tests(test: str | None) -> tuple[tuple[str, str], ...] | None:
    """`@type='A' or @name='B'` as ((type, A), (name, B)); None if it says anything else."""
    if test is None:
        return ()
    tests, pos = [], 0
    while pos < len(test):
        match = _TEST.match(test, pos)
        if match is None or match.end() == pos:
            return None
        tests.append(
            (match.group(1), match.group(2) if match.group(2) is not None else match.group(3))
        )
        pos = match.end()
    return tuple(tests) if tests else None


def _parent_param_selector(
    parent: str, tests: tuple[tuple[str, str], ...], name: str, text: str
) -> Selector:
    def select(doc: Any) -> Any:
        params = doc if isinstance(doc, XmlDoc) else XmlDoc(doc.getroottree().getroot())
        for param in params.params_named(name):
            group = param.getparent()
            if group is None or group.tag != parent:
                continue
            if tests and not any(group.get(a) == v for a, v in tests):
                continue
            value = param.get("value")
            if value is None:
                continue  # no @value: XPath goes on to the next Param
            value = value.strip()
            return value if value else Missing(f"{text} is empty")
        return Missing(f"no match for {text}")

    return select


# `//A/B/C` (names without prefix or predicate): `Who/Date`, `Position2D/Value2/C1`, and
# `/*/@role`. lxml evaluates these XPaths by walking the whole tree, each time; finding the
# first element named C whose parents are B then A (in document order, as XPath would) is a
# few times cheaper. Other XPaths run through lxml.
_NAME = r"[A-Za-z_][\w.-]*"
_DESCENDANT_PATH = re.compile(rf"^\s*//({_NAME}(?:/{_NAME})*)\s*$")
_ROOT_ATTRIBUTE = re.compile(rf"^\s*/\*/@({_NAME})\s*$")


def _path_selector(steps: tuple[str, ...], text: str) -> Selector:
    last, parents = steps[-1], steps[-2::-1]

    def select(doc: Any) -> Any:
        root = doc.root if isinstance(doc, XmlDoc) else doc
        for element in root.getroottree().getroot().iter(last):
            node = element
            for name in parents:
                node = node.getparent()
                if node is None or node.tag != name:
                    break
            else:
                value = element.text
                if value is None:
                    return Missing(f"{text} is empty")
                value = value.strip()
                return value if value else Missing(f"{text} is empty")
        return Missing(f"no match for {text}")

    return select


def _root_attribute_selector(name: str, text: str) -> Selector:
    def select(doc: Any) -> Any:
        root = doc.root if isinstance(doc, XmlDoc) else doc
        value = root.getroottree().getroot().get(name)
        if value is None:
            return Missing(f"no match for {text}")
        value = value.strip()
        return value if value else Missing(f"{text} is empty")

    return select


def compile_xpath(text: str, namespaces: Mapping[str, str] | None = None) -> Selector:
    """An XPath selector with `voe` predeclared; raises DslError E502 on bad syntax.

    Compiled once per text and namespaces: triggers repeat the same selectors."""
    return _compile_xpath(text, tuple(sorted((namespaces or {}).items())))


@lru_cache(maxsize=4096)
def _compile_xpath(text: str, namespaces: tuple[tuple[str, str], ...]) -> Selector:
    ns = {**DEFAULT_NAMESPACES, **dict(namespaces)}
    if text.lstrip().startswith("$"):
        raise DslError(
            "E503",
            "a JSONPath where an XPath is needed",
            1,
            1,
            len(text),
            hint="this topic carries XML: write e.g. //Param[@name='TrigID']/@value",
        )
    try:
        xpath = etree.XPath(text, namespaces=ns, smart_strings=False)
        xpath(_PROBE)
    except etree.XPathError as err:
        prefix = re.search(r"([A-Za-z_][\w.-]*):", text)
        hint = (
            "declare the prefix in the topic's namespaces:"
            if "prefix" in str(err) and prefix
            else "XPath looks like //Param[@name='TrigID']/@value"
        )
        raise DslError("E502", f"invalid XPath: {err}", 1, 1, len(text), hint=hint) from None

    fast = _PARAM_VALUE.match(text)
    if fast is not None:
        return _param_selector(fast.group(2), text)
    grouped = _PARENT_PARAM.match(text)
    tests = _attribute_tests(grouped.group("test")) if grouped is not None else None
    if grouped is not None and tests is not None:
        return _parent_param_selector(grouped.group("parent"), tests, grouped.group("name"), text)
    steps = _DESCENDANT_PATH.match(text)
    if steps is not None:
        return _path_selector(tuple(steps.group(1).split("/")), text)
    attribute = _ROOT_ATTRIBUTE.match(text)
    if attribute is not None:
        return _root_attribute_selector(attribute.group(1), text)

    def select(doc: Any) -> Any:
        root = doc.root if isinstance(doc, XmlDoc) else doc
        try:
            return _normalise_xml(xpath(root), text)
        except etree.XPathError as err:
            return Missing(f"{text}: {err}")

    return select
