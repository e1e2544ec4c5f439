"""Check a graph against the server's ``/object_info`` before queueing it.

Everything ComfyUI would reject with HTTP 400 that can be seen client-side is
reported at once: unknown node classes, missing model files (with suggestions),
bad combo values, values of the wrong type or out of range, missing required
inputs, broken links and no output node. Files uploaded as inputs (LoadImage)
and remote/dynamic lists are left to the server, since they change at runtime.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from comfy_gen.errors import PreflightError
from comfy_gen.workflow.custom_nodes import missing_packs, pack_for
from comfy_gen.workflow._graph import (
    MODEL_EXTENSIONS,
    Graph,
    combo_choices,
    input_specs,
    is_link,
    looks_like_model_combo,
    output_types,
    sort_ids,
    spec_options,
    spec_type,
)

#: Problem kinds, stable for --json consumers.
KINDS = ("invalid_node", "unknown_node", "missing_model", "invalid_choice", "invalid_value", "out_of_range",
         "missing_input", "broken_link", "bad_output_index", "link_type_mismatch", "no_output")


@dataclass(frozen=True)
class Problem:
    """One thing the server would reject; ``suggestions`` are close valid values."""

    node_id: str | None
    class_type: str | None
    input_name: str | None
    kind: str
    message: str
    suggestions: tuple[str, ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        where = f"node {self.node_id} ({self.class_type})" if self.node_id is not None else "workflow"
        if self.input_name:
            where += f" input {self.input_name!r}"
        text = f"{where}: {self.message}"
        if self.suggestions:
            text += f" (did you mean: {', '.join(self.suggestions)}?)"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "class_type": self.class_type, "input_name": self.input_name,
                "kind": self.kind, "message": self.message, "suggestions": list(self.suggestions)}


# --- model name suggestions ---------------------------------------------------------


def _stem(name: str) -> str:
    lowered = name.lower()
    for ext in MODEL_EXTENSIONS + (".yaml",):
        if lowered.endswith(ext):
            return lowered[: -len(ext)]
    return lowered


def find_model_fallbacks(requested: str, candidates: Iterable[str], limit: int = 5) -> list[str]:
    """Up to ``limit`` candidates resembling ``requested``, best first.

    The original's rule decides what matches: the extension-stripped, lower-cased
    names contain each other, or a ``-``/``_`` token of the request (2+ chars)
    occurs in the candidate. Matches rank by containment, then tokens hit, then
    difflib similarity.
    """
    req = _stem(requested)
    if not req:
        return []
    tokens = [t for t in re.split(r"[-_\s]+", req) if len(t) >= 2]
    scored = []
    for cand in dict.fromkeys(str(c) for c in candidates):
        stem = _stem(cand)
        base = stem.rsplit("/", 1)[-1]
        contains = bool(stem) and (req in stem or base in req)
        hits = sum(1 for t in tokens if t in stem)
        if not contains and not hits:
            continue
        ratio = difflib.SequenceMatcher(None, req, base).ratio()
        scored.append((-int(contains), -hits, -ratio, cand))
    return [s[3] for s in sorted(scored)[:limit]]


# --- preflight -----------------------------------------------------------------------


def _types_match(received: str, expected: str) -> bool:
    if "*" in (received, expected):
        return True
    return bool(set(received.split(",")) & set(expected.split(",")))


def _check_value(nid: str, cls: str, name: str, spec: list[Any], value: Any, info: dict[str, Any]) -> Problem | None:
    kind = spec_type(spec)
    opts = spec_options(spec)
    if kind == "COMBO":
        choices = combo_choices(spec) or []
        if opts.get("image_upload") or opts.get("remote") or opts.get("multiselect"):
            return None  # runtime lists (uploads, remote files): the server decides
        if value in choices:
            return None
        if looks_like_model_combo(cls, name, spec, info):
            sugg = find_model_fallbacks(str(value), [c for c in choices if isinstance(c, str)])
            avail = f"{len(choices)} available" if choices else "none installed"
            return Problem(nid, cls, name, "missing_model",
                           f"model file {value!r} is not on the server ({avail})", tuple(sugg))
        if not choices:
            return None
        sugg = difflib.get_close_matches(str(value), [str(c) for c in choices], n=5, cutoff=0.5)
        return Problem(nid, cls, name, "invalid_choice", f"{value!r} is not one of the allowed values",
                       tuple(sugg or [str(c) for c in choices[:5]]))
    if kind in ("INT", "FLOAT"):
        try:
            number = int(value) if kind == "INT" else float(value)
        except (TypeError, ValueError):
            return Problem(nid, cls, name, "invalid_value", f"{value!r} is not a valid {kind}")
        low, high = opts.get("min"), opts.get("max")
        if low is not None and number < low:
            return Problem(nid, cls, name, "out_of_range", f"{value!r} is below the minimum {low}")
        if high is not None and number > high:
            return Problem(nid, cls, name, "out_of_range", f"{value!r} is above the maximum {high}")
        return None
    if kind in ("STRING", "BOOLEAN"):
        if isinstance(value, (dict, list)):
            return Problem(nid, cls, name, "invalid_value", f"{kind} expected, got {type(value).__name__}")
        return None
    return Problem(nid, cls, name, "invalid_value",
                   f"expects a link from a {kind} output, got the literal {value!r}")


def _check_link(wf: Graph, object_info: dict[str, Any], nid: str, cls: str, name: str,
                spec: list[Any], value: Any) -> Problem | None:
    src_id, index = str(value[0]), int(value[1])
    src = wf.get(src_id)
    if src is None:
        return Problem(nid, cls, name, "broken_link", f"links to node {src_id!r}, which is not in the workflow")
    src_cls = str(src.get("class_type"))
    src_info = object_info.get(src_cls)
    if src_info is None:
        return None  # reported as unknown_node on the source
    outputs = output_types(src_info)
    if not 0 <= index < len(outputs):
        return Problem(nid, cls, name, "bad_output_index",
                       f"links to output {index} of node {src_id} ({src_cls}), which has {len(outputs)} output(s)")
    expected = spec_type(spec)
    if expected != "COMBO" and not _types_match(outputs[index], expected):
        return Problem(nid, cls, name, "link_type_mismatch",
                       f"expects {expected} but node {src_id} ({src_cls}) output {index} is {outputs[index]}")
    return None


def preflight(wf: Graph, object_info: dict[str, Any]) -> list[Problem]:
    """Every problem the server would report for ``wf``, in node-id order."""
    problems: list[Problem] = []
    has_output = False
    for nid in sort_ids([str(k) for k in wf]):
        node = wf[nid]
        cls = node.get("class_type") if isinstance(node, dict) else None
        if not isinstance(cls, str) or not isinstance(node.get("inputs", {}), dict):
            problems.append(Problem(nid, None, None, "invalid_node", "not a node (needs class_type and inputs)"))
            continue
        info = object_info.get(cls)
        if info is None:
            pack = pack_for(cls)
            if pack is not None:  # a known custom node: say where it comes from, no look-alikes
                problems.append(Problem(nid, cls, None, "unknown_node",
                                        f"node class {cls!r} is not installed on the server; it comes from "
                                        f"the custom node pack {pack.name} ({pack.url})"))
                continue
            sugg = difflib.get_close_matches(cls, list(object_info), n=5, cutoff=0.6)
            problems.append(Problem(nid, cls, None, "unknown_node",
                                    f"node class {cls!r} is not installed on the server", tuple(sugg)))
            continue
        has_output = has_output or bool(info.get("output_node"))
        inputs = node.get("inputs") or {}
        for name, (spec, required) in input_specs(info).items():
            if name not in inputs:
                if required:
                    problems.append(Problem(nid, cls, name, "missing_input", "required input is missing"))
                continue
            value = inputs[name]
            if is_link(value):
                problem = _check_link(wf, object_info, nid, cls, name, spec, value)
            elif isinstance(value, list) and spec_type(spec) not in ("COMBO",):
                problem = Problem(nid, cls, name, "broken_link", f"malformed link {value!r}")
            else:
                problem = _check_value(nid, cls, name, spec, value, info)
            if problem:
                problems.append(problem)
    if wf and not has_output and not any(p.kind == "unknown_node" for p in problems):
        problems.append(Problem(None, None, None, "no_output",
                                "the workflow has no output node (SaveImage, PreviewImage, ...)"))
    return problems


def check_workflow(wf: Graph, object_info: dict[str, Any]) -> None:
    """Raise PreflightError listing every problem ``preflight`` finds."""
    problems = preflight(wf, object_info)
    if not problems:
        return
    hint = None
    missing = [p for p in problems if p.kind == "missing_model"]
    if missing:
        hint = "List installed models with `comfy-gen models`"
        hint += ", or pick one of the suggestions." if any(p.suggestions for p in missing) else \
            ", or install the missing files on the server."
    elif any(p.kind == "unknown_node" for p in problems):
        packs = missing_packs(wf, object_info)
        hint = "; ".join(f"{', '.join(names)}: {pack.install}" for pack, names in packs.items()) \
            or "Install the custom nodes the workflow needs, or remove those nodes."
    raise PreflightError(f"Workflow failed preflight with {len(problems)} problem(s)", problems, hint=hint)
