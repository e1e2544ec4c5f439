"""YAML loading that remembers where every value came from.

PyYAML's ``safe_load`` returns plain dicts and lists with no positions, so we
compose the node tree once, keep it, and construct the data from it. Error
locations are found by walking the node tree along a JSON path (the path that
jsonschema reports) and taking the line of the deepest node that exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import yaml

PathElem = str | int


@dataclass(frozen=True)
class YamlDoc:
    """A parsed YAML document and its node tree (for line numbers)."""

    data: Any
    root: yaml.Node | None
    duplicates: tuple[tuple[tuple[PathElem, ...], int], ...] = ()

    def line_of(self, path: Sequence[PathElem]) -> int:
        """1-based line of the value at ``path``, or of its nearest existing parent.

        Mapping entries report the line of their key: for a block value the key
        line is where a reader looks, not the first line of the nested block.
        """
        node = self.root
        if node is None:
            return 1
        line = node.start_mark.line + 1
        for elem in path:
            if isinstance(node, yaml.MappingNode):
                found = None
                for key_node, value_node in node.value:
                    if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(elem):
                        found = (key_node, value_node)  # last one wins, as in safe_load
                if found is None:
                    return line
                line = found[0].start_mark.line + 1
                node = found[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(elem, int):
                if not 0 <= elem < len(node.value):
                    return line
                node = node.value[elem]
                line = node.start_mark.line + 1
            else:
                return line
        return line


class YamlSyntaxError(Exception):
    """Raised by :func:`load_yaml` with the 1-based line of the syntax problem."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def load_yaml(text: str) -> YamlDoc:
    """Parse one YAML document; raise YamlSyntaxError with a line number."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = _construct(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        message = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            where = exc.context_mark.line + 1 if exc.context_mark is not None else line
            message += f" ({exc.context} started on line {where})" if where != line else f" ({exc.context})"
        raise YamlSyntaxError(f"YAML syntax error: {message}", line) from exc
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"YAML syntax error: {exc}", 1) from exc
    dups: list[tuple[tuple[PathElem, ...], int]] = []
    if root is not None:
        _find_duplicates(root, (), dups)
    return YamlDoc(data=data, root=root, duplicates=tuple(dups))


def _construct(root: yaml.Node) -> Any:
    # A fresh SafeLoader constructs from the already-composed node, so the data
    # is exactly what safe_load would return (anchors, merges and tags included).
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(root)
    finally:
        loader.dispose()


def _find_duplicates(node: yaml.Node, path: tuple[PathElem, ...],
                     out: list[tuple[tuple[PathElem, ...], int]]) -> None:
    """Record keys that appear twice in one mapping (safe_load silently keeps the last)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = key_node.value
            if key in seen and key != "<<":
                out.append(((*path, key), key_node.start_mark.line + 1))
            seen.add(key)
            _find_duplicates(value_node, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            _find_duplicates(child, (*path, i), out)
