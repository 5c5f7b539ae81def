"""Rule-file YAML to plain Python data, quickly, with ruamel's exact results.

libyaml (ruamel.yaml.clib) composes the node tree; ruamel's safe constructor then spent most
of the load time turning it into dicts and lists through generic machinery (a generator and
a state queue per collection, a dispatch and a recursion check per node). Rule files use a
small part of YAML: mappings, sequences, scalars and merge keys (`<<: *shared`).
:func:`load_plain` builds those directly from the nodes; scalars that are not strings (int,
float, bool, null, timestamps) go through ruamel's own scalar constructors, so every value is
the one ruamel gives. Anything else (an explicit collection tag such as `!!set`, a complex
or duplicate key, an odd merge) sends the whole document to ruamel's constructor, which also
raises its errors with their marks.

Aliases stay shared objects and recursive anchors stay cycles, as with ruamel, so the
expansion guard (rules/guard.py) still measures the tree in linear time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.cyaml import CParser  # type: ignore[attr-defined]
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.tag import Tag

_STR: Final = "tag:yaml.org,2002:str"
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


class _PlainResolver(_Yaml12Resolver):
    """A plain scalar's tag depends on its text alone (YAML 1.2, no path resolvers): each
    text is matched against ruamel's patterns once per process, and each tag is one shared
    object, which :class:`_Builder` compares by identity. Rule files repeat their keys."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is not ScalarNode:
            return _SEQ_TAG if kind is SequenceNode else _MAP_TAG
        if not implicit[0]:  # quoted: text
            return _STR_TAG
        tag = _PLAIN_TAGS.get(value)
        if tag is None:
            found = super().resolve(kind, value, implicit)
            tag = _SHARED_TAGS.setdefault(str(found), found)
            if len(_PLAIN_TAGS) >= _PLAIN_TAGS_KEPT:
                _PLAIN_TAGS.clear()
            _PLAIN_TAGS[value] = tag
        return tag


_STR_TAG: Final = _PlainResolver.DEFAULT_SCALAR_TAG
_MAP_TAG: Final = _PlainResolver.DEFAULT_MAPPING_TAG
_SEQ_TAG: Final = _PlainResolver.DEFAULT_SEQUENCE_TAG
_MERGE_TAG: Final = Tag(suffix="tag:yaml.org,2002:merge")
_SHARED_TAGS: Final[dict[str, Tag]] = {str(_STR_TAG): _STR_TAG, str(_MERGE_TAG): _MERGE_TAG}
_PLAIN_TAGS: Final[dict[str, Tag]] = {}
_PLAIN_TAGS_KEPT: Final = 50_000  # texts; a service reloading edited rules keeps no more


def yaml_reader(typ: str) -> YAML:
    """A ruamel reader for rule files: `safe` (libyaml) or `rt` (pure, with positions)."""
    yaml = YAML(typ=typ, pure=typ == "rt")
    yaml.Resolver = _PlainResolver if typ == "safe" else _Yaml12Resolver
    yaml.allow_duplicate_keys = False
    return yaml


class _UnusualNodeError(Exception):
    """A node outside the plain subset: ruamel's constructor builds the document."""


class _PlainLoader(CParser, SafeConstructor, _PlainResolver):  # type: ignore[misc]
    """libyaml's parser and composer with ruamel's safe constructor and the caching resolver,
    as ruamel's own `YAML(typ="safe")` puts them together for each load, made once."""

    def __init__(self, text: str) -> None:
        CParser.__init__(self, text)
        self._parser = self._composer = self
        SafeConstructor.__init__(self, loader=self)
        self.allow_duplicate_keys = False
        _PlainResolver.__init__(self, loadumper=self)


def load_plain(text: str) -> Any:
    """The document in `text`, as ruamel's safe loader gives it; raises its YAMLErrors."""
    loader = _PlainLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            return _Builder(loader).build(node)
        except _UnusualNodeError:
            return loader.construct_document(node)
    finally:
        loader.dispose()


class _Builder:
    def __init__(self, constructor: Any) -> None:
        self.constructor = constructor
        self.scalars: dict[str, Callable[[Any, Node], Any]] = {
            tag: constructor.yaml_constructors[tag] for tag in _SCALAR_TAGS
        }
        self.built: dict[int, Any] = {}  # id(node) -> its list or dict: aliases stay shared
        self.flattening: set[int] = set()  # mappings whose merge keys are being followed

    def build(self, node: Node) -> Any:
        tag = node.ctag
        if tag is _STR_TAG:  # most nodes: keys, quoted and plain text
            return node.value
        if type(node) is ScalarNode:
            return self.scalar_value(node)
        done = self.built.get(id(node))
        if done is not None:
            return done
        if tag is _MAP_TAG:
            return self.mapping(node)
        if tag is _SEQ_TAG:
            items: list[Any] = []
            self.built[id(node)] = items  # before the items: a recursive alias is a cycle
            items.extend(self.build(item) for item in node.value)
            return items
        raise _UnusualNodeError  # an explicit tag on a collection (!!set, !!omap, ...)

    def scalar_value(self, node: ScalarNode) -> Any:
        tag = node.ctag
        if tag is _STR_TAG:
            return node.value
        name = str(tag)  # a shared tag from the resolver, or an explicit one (!!str 12)
        if name == _STR:
            return node.value
        make = self.scalars.get(name)
        if make is None:
            raise _UnusualNodeError  # !!binary, a custom tag, `=`, a merge key out of place
        return make(self.constructor, node)

    def mapping(self, node: Node) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        self.built[id(node)] = out
        for key_node, value_node in node.value:
            if key_node.ctag is _MERGE_TAG:
                out.clear()
                return self.merged(out, node)
            if type(key_node) is not ScalarNode:
                raise _UnusualNodeError  # complex keys, `? [a, b]`
            key = self.scalar_value(key_node)
            if key in out:
                raise _UnusualNodeError  # ruamel reports the duplicate at its place
            out[key] = self.build(value_node)
        return out

    def merged(self, out: dict[Any, Any], node: Node) -> dict[Any, Any]:
        """A mapping with a merge key (`<<: *base`), as ruamel builds it: the merged pairs
        first, then the mapping's own, a later pair winning (and, as in ruamel, no duplicate
        check). The nodes are left as they are, for ruamel if the document falls back."""
        for key_node, value_node in self.flat_pairs(node):
            if type(key_node) is not ScalarNode:
                raise _UnusualNodeError
            out[self.scalar_value(key_node)] = self.build(value_node)
        return out

    def flat_pairs(self, node: Node) -> list[tuple[Node, Node]]:
        """A mapping's pairs as ruamel's `flatten_mapping` leaves them: merged ones first."""
        if id(node) in self.flattening:
            raise _UnusualNodeError  # a mapping merged into itself
        self.flattening.add(id(node))
        merged: list[tuple[Node, Node]] | None = None
        own = []
        for pair in node.value:
            if pair[0].ctag is not _MERGE_TAG:
                own.append(pair)
            elif merged is not None:
                raise _UnusualNodeError  # two merge keys: ruamel's error
            else:
                merged = self.merge_source(pair[1])
        self.flattening.discard(id(node))
        return (merged or []) + own

    def merge_source(self, node: Node) -> list[tuple[Node, Node]]:
        """The pairs a merge key brings: one mapping's, or a list's, the first one winning."""
        if type(node) is MappingNode:
            return self.flat_pairs(node)
        if type(node) is SequenceNode and all(type(sub) is MappingNode for sub in node.value):
            parts = [self.flat_pairs(sub) for sub in node.value]
            return [pair for part in reversed(parts) for pair in part]
        raise _UnusualNodeError  # ruamel's error: a merge of something not a mapping
