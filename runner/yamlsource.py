"""YAML text -> plain data, remembering where every key and value stands.

PyYAML's constructed objects forget their line numbers, so we compose the node tree and build
the data ourselves. Every message about a campaign file can then point at a line and column,
for schema errors as much as for syntax errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]


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


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def parse(text: str) -> Document:
    """Parse one YAML document. Raises `YamlSyntaxError` with the position of the fault."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        position = Mark(mark.line + 1, mark.column + 1) if mark else Mark(1, 1)
        message = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        raise YamlSyntaxError(position, f"invalid YAML: {message}") from None
    except yaml.YAMLError as exc:
        # Reader errors (bad bytes) carry their position in the text, not as a mark.
        raise YamlSyntaxError(Mark(1, 1), f"invalid YAML: {str(exc).splitlines()[0]}") from None

    doc = Document(data=None)
    if root is None:
        return doc
    constructor = yaml.SafeLoader("")
    doc.data = _build(root, (), doc, constructor)
    return doc


def _build(node: yaml.Node, path: Path, doc: Document, constructor: yaml.SafeLoader) -> Any:
    doc.values.setdefault(path, _mark(node))
    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)  # resolves YAML merge keys (<<)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _build_scalar(key_node, constructor)
            if not isinstance(key, str | int | float | bool) and key is not None:
                key = str(key)
            key_str = key if isinstance(key, str) else str(key)
            child: Path = (*path, key_str)
            if key_str in result:
                doc.duplicates.append((child, _mark(key_node)))
            doc.keys[child] = _mark(key_node)
            doc.values.pop(child, None)
            if isinstance(value_node, yaml.ScalarNode) and value_node.style in ("|", ">"):
                doc.block_scalars.add(child)
            result[key_str] = _build(value_node, child, doc, constructor)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), doc, constructor) for i, item in enumerate(node.value)]
    return _build_scalar(node, constructor)


def _build_scalar(node: yaml.Node, constructor: yaml.SafeLoader) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return constructor.construct_object(node, deep=True)
    # A mapping or sequence used as a key: keep something printable.
    return str(constructor.construct_object(node, deep=True))
