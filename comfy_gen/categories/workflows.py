"""Which shipped workflow can do what, and how a composition picks one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from comfy_gen.categories.model import Category
from comfy_gen.errors import CompositionError

#: Capabilities of the shipped workflows (workflows/*.json). A workflow missing
#: here has unknown capabilities: usable only when nothing is required.
WORKFLOW_CAPABILITIES: dict[str, frozenset[str]] = {
    "flux-dev.json": frozenset({"txt2img", "high_res", "text_rendering"}),
    "sdxl-txt2img.json": frozenset({"txt2img", "high_res"}),
    "sd15-txt2img.json": frozenset({"txt2img"}),
    "sd15-img2img.json": frozenset({"img2img"}),
    "tiny-sd15.json": frozenset({"txt2img"}),
}
KNOWN_CAPABILITIES: frozenset[str] = frozenset().union(*WORKFLOW_CAPABILITIES.values())
#: Used when no category prefers a workflow that fits (the original's default).
DEFAULT_WORKFLOW = "flux-dev.json"


@dataclass
class WorkflowChoice:
    """The chosen workflow and why."""

    workflow: str
    source: str                 # category id whose preference won, or "default"
    required: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    rejected: list[str] = field(default_factory=list)   # "name: reason" for each skipped candidate


def choose_workflow(categories: Sequence[Category], *,
                    capabilities: Mapping[str, frozenset[str]] | None = None) -> WorkflowChoice:
    """Pick a workflow for categories already sorted by priority (highest first).

    Candidates are every category's ``preferred`` list in that order, then
    DEFAULT_WORKFLOW, then the table's other workflows. The first candidate that
    no category excludes and that offers every required capability wins.
    """
    table = dict(WORKFLOW_CAPABILITIES if capabilities is None else capabilities)
    required = tuple(sorted({c for cat in categories for c in cat.required_capabilities}))
    excluded = tuple(sorted({w for cat in categories for w in cat.excluded_workflows}))
    candidates: list[tuple[str, str]] = []
    for cat in categories:
        candidates += [(w, cat.id) for w in cat.preferred_workflows]
    candidates += [(DEFAULT_WORKFLOW, "default")] + [(w, "default") for w in table]
    choice = WorkflowChoice(workflow="", source="", required=required, excluded=excluded)
    seen: set[str] = set()
    for name, source in candidates:
        if name in seen:
            continue
        seen.add(name)
        reason = _unfit(name, table, required, excluded)
        if reason is None:
            choice.workflow, choice.source = name, source
            return choice
        if source != "default":
            choice.rejected.append(f"{name}: {reason}")
    raise CompositionError(
        f"No workflow offers the required capabilities {', '.join(required) or '(none)'} "
        f"without being excluded ({', '.join(excluded) or 'none excluded'})",
        hint="Remove one of the categories, or add a workflow with these capabilities.",
    )


def _unfit(name: str, table: Mapping[str, frozenset[str]], required: tuple[str, ...],
           excluded: tuple[str, ...]) -> str | None:
    if name in excluded:
        return "excluded by a selected category"
    caps = table.get(name)
    if caps is None:
        return None if not required else f"capabilities unknown, required {', '.join(required)}"
    missing = [c for c in required if c not in caps]
    return f"lacks {', '.join(missing)}" if missing else None
