"""Small helpers over API-format graphs: links, consumers, ids, object_info specs.

An API-format graph is ``{node_id: {"class_type": str, "inputs": {name: value}}}``
where a value is a literal or a link ``[src_node_id, output_index]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

Graph = dict[str, dict[str, Any]]
Link = list[Any]  # [src_node_id, output_index]

#: Scalar widget types in object_info input specs; anything else upper-case is a link type.
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
#: File extensions that mark a combo as a list of model files.
MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx", ".pkl")
_NAME_INPUT = re.compile(r"^[a-z_]*name\d*$")


def is_link(value: Any) -> bool:
    """True for ``[src_id, output_index]`` values (ids may be str or int in the wild)."""
    return (isinstance(value, (list, tuple)) and len(value) == 2
            and isinstance(value[0], (str, int)) and not isinstance(value[0], bool)
            and isinstance(value[1], int) and not isinstance(value[1], bool))


def link_source(value: Any) -> tuple[str, int] | None:
    return (str(value[0]), int(value[1])) if is_link(value) else None


def sort_ids(ids: Iterator[str] | list[str]) -> list[str]:
    """Numeric ids in numeric order first, then the rest alphabetically (stable output)."""
    return sorted(ids, key=lambda i: (0, int(i), "") if i.isdigit() else (1, 0, i))


def nodes_of(wf: Graph, *class_types: str) -> list[str]:
    """Ids of nodes whose class_type is one of ``class_types``, in id order."""
    wanted = set(class_types)
    return sort_ids([nid for nid, node in wf.items() if node.get("class_type") in wanted])


def class_of(wf: Graph, node_id: str | None) -> str | None:
    node = wf.get(node_id) if node_id is not None else None
    return node.get("class_type") if node else None


def consumers(wf: Graph, node_id: str, output_index: int) -> list[tuple[str, str]]:
    """Every ``(consumer_id, input_name)`` that links to ``node_id``'s output."""
    found = []
    for nid in sort_ids(list(wf)):
        for name, value in (wf[nid].get("inputs") or {}).items():
            src = link_source(value)
            if src == (str(node_id), output_index):
                found.append((nid, name))
    return found


def rewire(wf: Graph, old: tuple[str, int], new: tuple[str, int], *,
           skip: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Point every consumer of ``old`` (except nodes in ``skip``) at ``new``; returns touched ids."""
    touched = []
    for nid, name in consumers(wf, *old):
        if nid in skip:
            continue
        wf[nid]["inputs"][name] = [new[0], new[1]]
        touched.append(nid)
    return touched


def next_id(wf: Graph) -> str:
    """max(numeric ids) + 1, as a string (non-numeric ids are left alone)."""
    numeric = [int(i) for i in wf if i.isdigit()]
    candidate = max(numeric, default=0) + 1
    while str(candidate) in wf:
        candidate += 1
    return str(candidate)


def title_of(node: dict[str, Any]) -> str:
    meta = node.get("_meta") or {}
    return str(meta.get("title") or "")


def norm_title(node: dict[str, Any]) -> str:
    """Lower-case title with non-alphanumerics removed (the original's matching rule)."""
    return re.sub(r"[^a-z0-9]", "", title_of(node).lower())


# --- object_info input specs ---------------------------------------------------


def input_specs(info: dict[str, Any], *, include_optional: bool = True) -> dict[str, tuple[list[Any], bool]]:
    """``{input_name: (spec, required)}`` in declared order (``input_order`` when present)."""
    sections = info.get("input") or {}
    order = info.get("input_order") or {}
    out: dict[str, tuple[list[Any], bool]] = {}
    for section, required in (("required", True), ("optional", False)):
        if section == "optional" and not include_optional:
            continue
        specs = sections.get(section) or {}
        names = order.get(section) or list(specs)
        for name in names:
            if name in specs:
                spec = specs[name]
                out[name] = (spec if isinstance(spec, list) else [spec], required)
    return out


def spec_type(spec: list[Any]) -> str:
    """``COMBO`` for both combo forms, else the declared type name (INT, MODEL, ...)."""
    head = spec[0] if spec else None
    if isinstance(head, list):
        return "COMBO"
    return str(head) if head is not None else "*"


def spec_options(spec: list[Any]) -> dict[str, Any]:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def combo_choices(spec: list[Any]) -> list[Any] | None:
    """Choices of a combo: legacy ``[[a, b], {...}]`` or V3 ``["COMBO", {"options": [...]}]``."""
    head = spec[0] if spec else None
    if isinstance(head, list):
        return list(head)
    if head == "COMBO":
        options = spec_options(spec).get("options")
        return list(options) if isinstance(options, list) else []
    return None


def is_widget(spec: list[Any]) -> bool:
    return spec_type(spec) in WIDGET_TYPES


def looks_like_model_combo(class_type: str, input_name: str, spec: list[Any], info: dict[str, Any]) -> bool:
    """A combo listing model files: its choices are files, or it is a ``*_name`` input of a loader."""
    choices = combo_choices(spec) or []
    if any(isinstance(c, str) and c.lower().endswith(MODEL_EXTENSIONS) for c in choices):
        return True
    category = str(info.get("category") or "")
    loader = "loader" in class_type.lower() or "loaders" in category
    return loader and not category.startswith("api node") and bool(_NAME_INPUT.match(input_name))


def output_types(info: dict[str, Any]) -> list[str]:
    return [str(t) if not isinstance(t, list) else "COMBO" for t in (info.get("output") or [])]
