"""The one YAML loader for recipes, categories and presets: bounded, with lines.

PyYAML's ``safe_load`` has no limits: a few hundred bytes of nested aliases
("billion laughs") describe a billion-node document, and anything that walks
the result (duplicate-key checks, JSON Schema) then runs for ever. An alias to
its own ancestor makes a cycle. Deep nesting ends in RecursionError. So the
node tree is composed once with a loader that measures, for every node, how
big and how deep it is *with aliases expanded* (memoised per node, so linear
in the file), and refuses the document before anything is constructed when:

* it nests deeper than :data:`MAX_DEPTH` levels (aliases and ``<<`` merges
  included, since they nest what they point to);
* an alias refers to a node that contains it (a cycle);
* aliases expand it to more than ``ALIAS_FACTOR`` times the nodes written in
  the file, or :data:`ALIAS_FLOOR` nodes, whichever is larger. Ordinary reuse
  (``defaults: &d`` referenced a few times) stays far below; amplification
  cannot reach it.

The node tree is kept so that error messages can give line numbers: the data
is constructed from it, and a JSON path (as jsonschema reports it) is mapped
back to the line of the deepest node that exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import yaml

PathElem = str | int

#: Deepest nesting of mappings/sequences accepted (recipes need about 6).
MAX_DEPTH = 64
#: Aliases may expand a document to ALIAS_FACTOR x its written node count ...
ALIAS_FACTOR = 10
#: ... or to this many nodes, whichever is larger.
ALIAS_FLOOR = 10_000
# Expanded sizes are saturated here so that the arithmetic stays small even
# for exponential alias chains.
_SATURATE = 1 << 62


class YamlSyntaxError(Exception):
    """Raised by :func:`load_yaml` with the 1-based line of the problem."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


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


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that measures every composed node (see the module docstring)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.sizes: dict[int, int] = {}    # id(node) -> expanded node count
        self.depths: dict[int, int] = {}   # id(node) -> expanded nesting depth
        self.written = 0                   # nodes actually written in the file
        self.nesting = 0
        self.largest_alias: tuple[int, str, int] = (0, "", 0)  # (size, name, line)

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            node = super().compose_node(parent, index)
            size = self.sizes.get(id(node))
            if size is None:  # its target is still open: the alias is inside it
                raise YamlSyntaxError(f"YAML alias *{event.anchor} refers to a node that contains it "
                                      "(a cycle)", event.start_mark.line + 1)
            if size > self.largest_alias[0]:
                self.largest_alias = (size, str(event.anchor), event.start_mark.line + 1)
            return node
        start = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise YamlSyntaxError(f"YAML nested deeper than {MAX_DEPTH} levels", start.line + 1)
        node = super().compose_node(parent, index)
        self.nesting -= 1
        self.written += 1
        children: list[yaml.Node]
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = []
        size = 1 + sum(self.sizes[id(c)] for c in children)
        depth = 1 + max((self.depths[id(c)] for c in children), default=0)
        if depth > MAX_DEPTH:  # only reachable through aliases: direct nesting was caught above
            raise YamlSyntaxError(f"YAML aliases nest deeper than {MAX_DEPTH} levels", start.line + 1)
        self.sizes[id(node)] = min(size, _SATURATE)
        self.depths[id(node)] = depth
        return node


def alias_budget(written: int) -> int:
    """Most nodes a document of ``written`` nodes may expand to through aliases."""
    return max(ALIAS_FLOOR, ALIAS_FACTOR * written)


def load_yaml(text: str) -> YamlDoc:
    """Parse one bounded YAML document; YamlSyntaxError with a line number.

    Linear in ``len(text)`` in time and memory (see the module docstring).
    """
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # the reader refuses unprintable characters (NUL) right here
        root = loader.get_single_node()
        if root is not None:
            expanded = loader.sizes[id(root)]
            budget = alias_budget(loader.written)
            if expanded > budget:
                size, name, line = loader.largest_alias
                shown = "more than 2^62" if expanded >= _SATURATE else str(expanded)
                raise YamlSyntaxError(
                    f"YAML aliases expand the document to {shown} nodes from {loader.written} written "
                    f"(limit {budget}); the largest is *{name} ({size} nodes at each use)", line)
        dups: list[tuple[tuple[PathElem, ...], int]] = []
        if root is not None:
            # Before construction: merging (<<) rewrites mapping nodes in place, and
            # a key that overrides a merged one is not a duplicate.
            _find_duplicates(root, dups)
        data = _construct(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc) from exc
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise YamlSyntaxError(f"YAML syntax error: unacceptable character #x{exc.character:04x} "
                              f"({exc.reason}) at line {line}", line) from exc
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"YAML syntax error: {exc}", 1) from exc
    except ValueError as exc:  # e.g. an integer past Python's digit limit
        raise YamlSyntaxError(f"YAML value cannot be read: {exc}", 1) from exc
    finally:
        if loader is not None:
            loader.dispose()
    return YamlDoc(data=data, root=root, duplicates=tuple(dups))


def load_data(text: str) -> Any:
    """Just the data of :func:`load_yaml` (what ``yaml.safe_load`` returns, bounded)."""
    return load_yaml(text).data


def _syntax_error(exc: yaml.MarkedYAMLError) -> YamlSyntaxError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    message = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.problem:
        where = exc.context_mark.line + 1 if exc.context_mark is not None else line
        message += f" ({exc.context} started on line {where})" if where != line else f" ({exc.context})"
    return YamlSyntaxError(f"YAML syntax error: {message}", line)


def _construct(root: yaml.Node) -> Any:
    # A fresh SafeLoader constructs from the already-composed node, so the data
    # is exactly what safe_load would return (anchors, merges and tags included).
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(root)
    finally:
        loader.dispose()


def _find_duplicates(root: yaml.Node, out: list[tuple[tuple[PathElem, ...], int]]) -> None:
    """Record keys that appear twice in one mapping (safe_load silently keeps the last).

    Each node is visited once, at the first path that reaches it, so aliased
    subtrees cost nothing extra; an explicit stack keeps deep files off the
    Python stack.
    """
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, tuple[PathElem, ...]]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            children: list[tuple[yaml.Node, tuple[PathElem, ...]]] = []
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = key_node.value
                if key in keys and key != "<<":
                    out.append(((*path, key), key_node.start_mark.line + 1))
                keys.add(key)
                children.append((value_node, (*path, key)))
            stack.extend(reversed(children))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed([(child, (*path, i)) for i, child in enumerate(node.value)]))
