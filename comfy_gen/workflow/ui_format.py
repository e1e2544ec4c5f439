"""Convert a ComfyUI *UI-format* workflow (``nodes``/``links``) to API format.

The UI file stores widget values positionally (``widgets_values``), so the
server's ``/object_info`` is needed to know which value belongs to which input:
widgets are the scalar/combo inputs in declared order, and a seed-like widget
(``control_after_generate``) is followed by its "randomize/fixed" control value.
Links are followed through Reroute nodes, PrimitiveNode values are inlined,
bypassed nodes (mode 4) pass their matching-typed input through, muted nodes
(mode 2) and notes are dropped.
"""

from __future__ import annotations

from typing import Any

from comfy_gen.errors import WorkflowError
from comfy_gen.workflow._graph import Graph, input_specs, is_widget, spec_options, spec_type

#: UI-only nodes that never reach the server.
VIRTUAL_NODES = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})
MODE_MUTED, MODE_BYPASS = 2, 4


def is_ui_format(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data


def _link_table(links: Any) -> dict[int, tuple[str, int]]:
    table: dict[int, tuple[str, int]] = {}
    for link in links or []:
        if isinstance(link, dict):  # newer schema: objects
            table[int(link["id"])] = (str(link["origin_id"]), int(link["origin_slot"]))
        elif isinstance(link, list) and len(link) >= 4:  # [id, origin_id, origin_slot, target_id, ...]
            table[int(link[0])] = (str(link[1]), int(link[2]))
    return table


def _has_control(name: str, spec: list[Any]) -> bool:
    opts = spec_options(spec)
    return bool(opts.get("control_after_generate")) or (spec_type(spec) == "INT" and name in ("seed", "noise_seed"))


def _widget_inputs(node: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    values = node.get("widgets_values")
    specs = input_specs(info)
    if isinstance(values, dict):  # some custom nodes store widgets by name
        return {k: v for k, v in values.items() if k in specs}
    out: dict[str, Any] = {}
    queue = list(values or [])
    for name, (spec, _required) in specs.items():
        if not is_widget(spec) or spec_options(spec).get("forceInput"):
            continue
        if not queue:
            break
        out[name] = queue.pop(0)
        if _has_control(name, spec) and queue and queue[0] in CONTROL_VALUES:
            queue.pop(0)
    return out


def convert_ui_workflow(data: dict[str, Any], object_info: dict[str, Any], *, source: str = "workflow") -> Graph:
    """API-format graph for a UI-format workflow; WorkflowError for nodes it cannot map."""
    nodes = {str(n.get("id")): n for n in data.get("nodes") or [] if isinstance(n, dict)}
    links = _link_table(data.get("links"))

    def resolve(link_id: Any, depth: int = 0) -> Any:
        if link_id is None or int(link_id) not in links or depth > 64:
            return None
        origin_id, slot = links[int(link_id)]
        origin = nodes.get(origin_id)
        if origin is None:
            return None
        kind = origin.get("type")
        if kind == "Reroute":
            first = (origin.get("inputs") or [{}])[0]
            return resolve(first.get("link"), depth + 1)
        if kind == "PrimitiveNode":
            widgets = origin.get("widgets_values") or [None]
            return widgets[0]
        mode = origin.get("mode", 0)
        if mode == MODE_MUTED:
            return None
        if mode == MODE_BYPASS:
            outputs = origin.get("outputs") or []
            out_type = outputs[slot].get("type") if slot < len(outputs) else None
            for inp in origin.get("inputs") or []:
                if inp.get("type") == out_type and inp.get("link") is not None:
                    return resolve(inp["link"], depth + 1)
            return None
        return [origin_id, slot]

    graph: Graph = {}
    unknown: list[str] = []
    for node_id, node in nodes.items():
        cls = node.get("type")
        if cls in VIRTUAL_NODES or node.get("mode", 0) in (MODE_MUTED, MODE_BYPASS):
            continue
        info = object_info.get(str(cls))
        if info is None:
            unknown.append(f"{node_id} ({cls})")
            continue
        inputs = _widget_inputs(node, info)
        for inp in node.get("inputs") or []:
            if inp.get("link") is None:
                continue
            value = resolve(inp["link"])
            name = (inp.get("widget") or {}).get("name") or inp.get("name")
            if value is not None and name:
                inputs[name] = value
        title = node.get("title") or info.get("display_name") or cls
        graph[node_id] = {"class_type": cls, "inputs": inputs, "_meta": {"title": title}}
    if unknown:
        raise WorkflowError(
            f"{source}: cannot convert the UI-format workflow: node types not on the server: {', '.join(unknown)}",
            path=source,
            hint='Install the missing custom nodes, or export the workflow with "Save (API)" in ComfyUI.',
        )
    if not graph:
        raise WorkflowError(f"{source}: the UI-format workflow has no executable nodes", path=source)
    return graph
