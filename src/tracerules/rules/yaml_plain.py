"""Rule-file YAML to plain Python data, quickly, with ruamel's exact results.

libyaml (ruamel.yaml.clib) composes the node tree; ruamel's safe constructor then spent most
of the load time turning it into dicts and lists through generic machinery (a generator and
a state queue per collection, a dispatch and a recursion check per node). Rule files use a
small part of YAML: mappings, sequences and scalars. :func:`load_plain` builds those
directly from the nodes; scalars that are not strings (int, float, bool, null, timestamps)
go through ruamel's own scalar constructors, so every value is the one ruamel gives. Anything
else (a merge key `<<`, an explicit collection tag, a non-scalar or duplicate key) sends the
whole document to ruamel's constructor, which also raises its errors with their marks.

Aliases stay shared objects and recursive anchors stay cycles, as with ruamel, so the
expansion guard (rules/guard.py) still measures the tree in linear time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ruamel.yaml import YAML
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.resolver import VersionedResolver

_STR: Final = "tag:yaml.org,2002:str"
_MAP: Final = "tag:yaml.org,2002:map"
_SEQ: Final = "tag:yaml.org,2002:seq"
# Scalars built by ruamel's own constructors: plain functions of one node, no generator.
_SCALAR_TAGS: Final = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "timestamp")
)


class _Yaml12Resolver(VersionedResolver):
    """Rule files are YAML 1.2. ruamel looks the version up again for every scalar it
    resolves, a third of the time it takes to read a rule file (issue 16)."""

    @property
    def processing_version(self) -> Any:
        return (1, 2)


def yaml_reader(typ: str) -> YAML:
    """A ruamel reader for rule files: `safe` (libyaml) or `rt` (pure, with positions)."""
    yaml = YAML(typ=typ, pure=typ == "rt")
    yaml.Resolver = _Yaml12Resolver
    yaml.allow_duplicate_keys = False
    return yaml


class _UnusualNodeError(Exception):
    """A node outside the plain subset: ruamel's constructor builds the document."""


def load_plain(text: str) -> Any:
    """The document in `text`, as ruamel's safe loader gives it; raises its YAMLErrors."""
    loader, parser = yaml_reader("safe").get_constructor_parser(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            return _Builder(loader).build(node)
        except _UnusualNodeError:
            return loader.construct_document(node)
    finally:
        parser.dispose()


class _Builder:
    def __init__(self, constructor: Any) -> None:
        self.constructor = constructor
        self.scalars: dict[str, Callable[[Any, Node], Any]] = {
            tag: constructor.yaml_constructors[tag] for tag in _SCALAR_TAGS
        }
        self.built: dict[int, Any] = {}  # id(node) -> its list or dict: aliases stay shared

    def build(self, node: Node) -> Any:
        if type(node) is ScalarNode:
            return self.scalar(node)
        done = self.built.get(id(node))
        if done is not None:
            return done
        if type(node) is MappingNode and node.tag == _MAP:
            return self.mapping(node)
        if type(node) is SequenceNode and node.tag == _SEQ:
            items: list[Any] = []
            self.built[id(node)] = items  # before the items: a recursive alias is a cycle
            items.extend(self.build(item) for item in node.value)
            return items
        raise _UnusualNodeError

    def scalar(self, node: ScalarNode) -> Any:
        if node.tag == _STR:
            return node.value
        make = self.scalars.get(node.tag)
        if make is None:
            raise _UnusualNodeError
        return make(self.constructor, node)

    def mapping(self, node: MappingNode) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        self.built[id(node)] = out
        for key_node, value_node in node.value:
            if type(key_node) is not ScalarNode:
                raise _UnusualNodeError  # complex keys, `? [a, b]`
            key = self.scalar(key_node)
            if key in out:
                raise _UnusualNodeError  # ruamel reports the duplicate at its place
            out[key] = self.build(value_node)
        return out
