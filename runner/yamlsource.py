"""YAML text -> plain data, remembering where every key and value stands.

PyYAML's constructed objects forget their line numbers, so we compose the node tree and build
the data ourselves. Every message about a campaign file can then point at a line and column,
for schema errors as much as for syntax errors.

Hostile or surprising YAML is refused or read as written:
- Values keep what was written (YAML 1.2's core schema, not 1.1's): ``0123456`` is the text
  ``0123456``, not the octal number 42798; ``NO``, ``yes``, ``on`` are text; booleans come only
  from ``true``/``false``, numbers only from plain decimals.
- Tags other than the standard ones (``!!python/name:…``, ``!custom``) are errors with a line.
- An alias bomb (a few hundred bytes expanding to billions of values) and deep nesting are
  refused in well under a second, before anything is built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]

MAX_VALUES = 100_000  # keys, values and items after aliases are expanded
MAX_DEPTH = 64  # nesting of mappings and lists


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based
    column: int  # 1-based


def format_path(path: Path) -> str:
    """``("message", "attributes", "x")`` -> ``message.attributes.x``; ``messages[0].text``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class Document:
    """A parsed YAML file: its data and the marks of every key and value in it."""

    data: Any
    keys: dict[Path, Mark] = field(default_factory=dict)
    values: dict[Path, Mark] = field(default_factory=dict)
    # Where block scalars start, so that template line numbers can be added to them.
    block_scalars: set[Path] = field(default_factory=set)
    duplicates: list[tuple[Path, Mark]] = field(default_factory=list)
    # The source text of plain scalars read as numbers or booleans, for values the product
    # uses as text (``coupon: 1.50`` is sent as 1.50, not 1.5).
    raw: dict[Path, str] = field(default_factory=dict)

    def as_written(self, *prefixes: Path) -> Any:
        """The data, with numbers and booleans under ``prefixes`` as the text written."""

        def walk(value: Any, path: Path) -> Any:
            if isinstance(value, dict):
                return {k: walk(v, (*path, k)) for k, v in value.items()}
            if isinstance(value, list):
                return [walk(v, (*path, i)) for i, v in enumerate(value)]
            if path in self.raw and any(path[: len(p)] == p for p in prefixes):
                return self.raw[path]
            return value

        return walk(self.data, ())

    def key_mark(self, path: Path) -> Mark:
        """The mark of the key that names ``path``, or of its nearest existing ancestor."""
        while path:
            if path in self.keys:
                return self.keys[path]
            if path in self.values:
                return self.values[path]
            path = path[:-1]
        return self.values.get((), Mark(1, 1))

    def value_mark(self, path: Path) -> Mark:
        """The mark of the value at ``path`` (falls back to its key, then its ancestors)."""
        if path in self.values:
            return self.values[path]
        return self.key_mark(path)


class YamlSyntaxError(Exception):
    def __init__(self, mark: Mark, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema resolution of plain scalars."""


_Loader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in [
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("tag:yaml.org,2002:int", r"^[-+]?(?:0|[1-9][0-9]*)$", list("-+0123456789")),
    (
        "tag:yaml.org,2002:float",
        r"^[-+]?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?$",
        list("-+0123456789"),
    ),
    ("tag:yaml.org,2002:merge", r"^<<$", ["<"]),
]:
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), _first)

_KNOWN_TAGS = {
    f"tag:yaml.org,2002:{name}"
    for name in ("null", "bool", "int", "float", "str", "map", "seq", "merge")
}


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def _indentation(at: yaml.Mark) -> bool:
    """Whether the place ``at`` points to is within its line's leading white space."""
    buffer = getattr(at, "buffer", None)
    pointer = getattr(at, "pointer", None)
    if not isinstance(buffer, str) or not isinstance(pointer, int):
        return at.column == 0
    start = buffer.rfind("\n", 0, pointer) + 1
    return not buffer[start:pointer].strip()


def _syntax_message(exc: yaml.MarkedYAMLError) -> tuple[Mark, str]:
    """A position and a message a person can act on, for one of PyYAML's errors."""
    problem = str(exc.problem or "")
    at = exc.problem_mark or exc.context_mark
    mark = Mark(at.line + 1, at.column + 1) if at else Mark(1, 1)
    if "'\\t'" in problem:
        if at is not None and _indentation(at):
            return (
                mark,
                "invalid YAML: a tab in the indentation; YAML indents with spaces, not tabs",
            )
        return mark, (
            "invalid YAML: a tab between values, which this reader does not take as a "
            "separator (after ':' or inside [ ] and { }): write a space"
        )
    context = str(exc.context or "")
    opened = exc.context_mark
    for kind, closer, name in (
        ("flow sequence", "]", "["),
        ("flow mapping", "}", "{"),
        ("quoted scalar", "quote", "quote"),
    ):
        if kind in context and opened is not None:
            where = Mark(opened.line + 1, opened.column + 1)
            what = f"the {name} opened here" if name != "quote" else "the quote opened here"
            needs = "is never closed" if closer == "quote" else f"is never closed with {closer}"
            return where, f"invalid YAML: {what} {needs} ({problem} on line {mark.line})"
    message = " ".join(x for x in (context, problem) if x)
    return mark, f"invalid YAML: {message}"


def parse(text: str) -> Document:
    """Parse one YAML document. Raises `YamlSyntaxError` with the position of the fault."""
    try:
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        raise YamlSyntaxError(*_syntax_message(exc)) from None
    except yaml.YAMLError as exc:
        # Reader errors (bad bytes) carry their position in the text, not as a mark.
        raise YamlSyntaxError(Mark(1, 1), f"invalid YAML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise YamlSyntaxError(
            Mark(1, 1), f"invalid YAML: nested too deeply (at most {MAX_DEPTH} levels)"
        ) from None

    doc = Document(data=None)
    if root is None:
        return doc
    _measure(root)
    builder = _Builder(doc)
    doc.data = builder.build(root, (), 0)
    return doc


def _measure(root: yaml.Node) -> None:
    """Refuse a document that expands past `MAX_VALUES` values or `MAX_DEPTH` levels, counting
    each node once per place an alias puts it, without building anything."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise YamlSyntaxError(
                _mark(node), f"invalid YAML: nested deeper than {MAX_DEPTH} levels"
            )
        known = sizes.get(id(node))
        if known is not None:
            return known
        total = 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                total += size(key, depth + 1) + size(value, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += size(item, depth + 1)
        if total > MAX_VALUES:
            raise YamlSyntaxError(
                _mark(node),
                f"invalid YAML: expands to more than {MAX_VALUES:,} values "
                "(aliases repeating aliases?)",
            )
        sizes[id(node)] = total
        return total

    size(root, 0)


class _Builder:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.constructor = _Loader("")

    def build(self, node: yaml.Node, path: Path, depth: int) -> Any:
        doc = self.doc
        doc.values.setdefault(path, _mark(node))
        self._check_tag(node)
        if isinstance(node, yaml.MappingNode):
            try:
                self.constructor.flatten_mapping(node)  # resolves YAML merge keys (<<)
            except yaml.MarkedYAMLError as exc:
                raise YamlSyntaxError(*_syntax_message(exc)) from None
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.scalar(key_node)
                key_str = key if isinstance(key, str) else str(key)
                child: Path = (*path, key_str)
                if key_str in result:
                    doc.duplicates.append((child, _mark(key_node)))
                doc.keys[child] = _mark(key_node)
                doc.values.pop(child, None)
                if isinstance(value_node, yaml.ScalarNode) and value_node.style in ("|", ">"):
                    doc.block_scalars.add(child)
                result[key_str] = self.build(value_node, child, depth + 1)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        value = self.scalar(node)
        if isinstance(value, bool | int | float) and isinstance(node, yaml.ScalarNode):
            doc.raw[path] = node.value
        return value

    def scalar(self, node: yaml.Node) -> Any:
        self._check_tag(node)
        if not isinstance(node, yaml.ScalarNode):
            return "<a mapping or list used as a key>"
        return self.constructor.construct_object(node, deep=True)

    @staticmethod
    def _check_tag(node: yaml.Node) -> None:
        if node.tag not in _KNOWN_TAGS:
            raise YamlSyntaxError(
                _mark(node),
                f"invalid YAML: the tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not "
                "allowed here (only plain YAML values: text, numbers, true/false, lists, "
                "mappings)",
            )
