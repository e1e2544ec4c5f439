"""Batch preflight: everything that can fail before any GPU work, checked at once.

* every distinct composed workflow of the batch against the ``/object_info`` of
  every backend it may render on: unknown nodes, missing models (with
  suggestions), out-of-range values. A backend that fails is left out for those
  items (a warning; dispatch skips it); the run fails only when an item has no
  backend left;
* the validation plan, when the items ask for validation: a validator that
  cannot be loaded fails the run here, unless the plan allows skipping;
* the prompt enhancer, when the items ask for it: a model that cannot be
  loaded or an endpoint that does not answer fails the run here.

The flow calls it for the items that will render only (``batch.triage`` decides
first): a run with nothing to render contacts no server and loads no model.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from comfy_gen.errors import PreflightError
from comfy_gen.hashing import digest

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.validation.plan import ValidationPlan

log = logging.getLogger(__name__)


def distinct_jobs(run: Any, items: list[Any]) -> dict[str, tuple[tuple[str, ...], dict[str, Any]]]:
    """Composed graphs that differ in more than prompt text and seed, keyed by shape
    and candidate backends: ``{key: (candidates, graph)}``."""
    return {key: (job.candidates, job.graph) for key, job in _jobs(run, items).items()}


@dataclass
class _Job:
    candidates: tuple[str, ...]
    graph: dict[str, Any]
    item_ids: list[str] = field(default_factory=list)


def _jobs(run: Any, items: list[Any]) -> dict[str, _Job]:
    from comfy_gen.workflow import apply_params

    shapes: dict[str, _Job] = {}
    for item in items:
        params = item.params.replace(prompt="preflight", negative_prompt=None, seed=0)
        graph = apply_params(run.workflow(item.workflow), params, rng=random.Random(0))
        key = "|".join(item.candidates) + digest(graph)
        shapes.setdefault(key, _Job(tuple(item.candidates), graph)).item_ids.append(item.id)
    return shapes


@dataclass
class Eligibility:
    """Preflight per candidate backend: ``problems`` (items that no backend can
    render: the run fails), ``warnings`` (backends left out for some items) and
    ``eligible`` (item id -> the backends that passed, for dispatch)."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    eligible: dict[str, tuple[str, ...]] = field(default_factory=dict)


def check_backends(run: Any, items: list[Any]) -> Eligibility:
    """Check every distinct job on every backend it may render on.

    A backend that lacks a node or model of a job is left out for that job's
    items, with a warning; the run fails only for items that no backend can
    render. A backend that cannot be reached is marked down (dispatch probes it
    later) rather than left out; when none of a job's backends can be reached,
    the run fails fast (``AllBackendsDown``; the plain ``ComfyUIUnavailable``
    with a single backend). Each backend's ``/object_info`` is read once.
    """
    from comfy_gen.errors import AllBackendsDown, ComfyUIUnavailable
    from comfy_gen.workflow import preflight

    result = Eligibility()
    infos: dict[str, dict[str, Any] | None] = {}   # None: unreachable
    seen: set[str] = set()

    def note(lines: list[str], line: str) -> None:
        if line not in seen:
            seen.add(line)
            lines.append(line)

    for job in _jobs(run, items).values():
        passed: list[str] = []
        failures: list[str] = []
        for name in job.candidates:
            if name not in infos:
                try:
                    infos[name] = run.backends.get(name).client.object_info()
                except ComfyUIUnavailable as exc:
                    if len(job.candidates) == 1:
                        raise   # one backend, unreachable: the error it always was
                    infos[name] = None
                    run.backends.mark_down(name, exc.message)
                    note(result.warnings, f"[{name}] unreachable ({exc.message}); items go to the other "
                                          "backends, and this one is tried again later")
            info = infos[name]
            if info is None:
                continue
            found = preflight(job.graph, info)
            failures += [f"[{name}] {problem}" for problem in found]
            if not found:
                passed.append(name)
        reachable = [n for n in job.candidates if infos[n] is not None]
        if not reachable:
            raise AllBackendsDown(f"None of the backends {', '.join(job.candidates)} can be reached; "
                                  "nothing was queued", backends=job.candidates,
                                  hint="Start the ComfyUI server(s) named in COMFY_GEN_BACKENDS and run again.")
        if not passed:
            for line in failures:
                note(result.problems, line)
            continue
        for line in failures:
            note(result.warnings, f"{line} -> not used for {len(job.item_ids)} item(s); they render on "
                                  f"{', '.join(passed)}")
        if len(passed) < len(reachable):
            # Unreachable backends stay eligible: dispatch probes them and uses them once back.
            eligible = tuple(n for n in job.candidates if n in passed or infos[n] is None)
            for item_id in job.item_ids:
                result.eligible[item_id] = eligible
    return result


def check_jobs(run: Any, items: list[Any]) -> list[str]:
    """Problems of items no backend can render, as printable lines (empty when all is well)."""
    return check_backends(run, items).problems


def validation_plan(items: list[Any]) -> "ValidationPlan":
    """The one validation plan of a batch: every item of a recipe carries the same section."""
    from comfy_gen.validation.plan import ValidationPlan

    plans = {ValidationPlan.from_config(it.validation) for it in items}
    enabled = {plan for plan in plans if plan.enabled}
    if len(enabled) > 1:
        raise RuntimeError(f"The items of one run ask for {len(enabled)} different validation plans")
    return enabled.pop() if enabled else ValidationPlan()


def setup_rejudging(run: Any, items: Sequence[Any]) -> None:
    """Give ``run`` the items' validation plan with nothing loaded (``rejudger``):
    enough to judge stored items by the current thresholds before deciding what
    renders. ``setup_validation`` replaces it when something will be validated."""
    plan = validation_plan(list(items))
    run.validation = plan.rejudger(run.settings) if plan.enabled else None


def setup_validation(run: Any, items: list[Any]) -> list[str]:
    """Prepare the batch's validation plan once (its validators loaded and batched
    across items) and keep it on ``run.validation``.

    Returns warnings. Raises ValidatorUnavailable when validation is required
    and a validator cannot be loaded (unless the plan allows skipping).
    """
    plan = validation_plan(items)
    if not plan.enabled:
        return []
    run.validation = plan.prepare(run.settings, batching=True)
    return list(run.validation.warnings)


def setup_enhancer(run: Any, items: list[Any]) -> None:
    """Load or probe the prompt enhancer once when the items ask for it (EnhancerUnavailable:
    exit 2, nothing queued); its answers are cached under the state folder."""
    from comfy_gen.enhance.apply import prepare_enhancer

    wanted = next((it.enhance for it in items if it.enhance.enabled), None)
    if wanted is not None and run.enhancer is None:
        run.enhancer = prepare_enhancer(wanted, run.settings, cached=True)


def preflight_batch(run: Any, payload: list[dict[str, Any]]) -> dict[str, Any]:
    """Run every preflight check for the batch; raise with the full list of problems."""
    from comfy_gen.recipes import RecipeItem

    items = [RecipeItem.from_dict(p) for p in payload]
    checked = check_backends(run, items)
    if checked.problems:
        raise PreflightError(
            f"Preflight failed for recipe {run.recipe.name!r}: {len(checked.problems)} problem(s); "
            "nothing was queued", checked.problems,
            hint="Install the missing models/nodes on the server, or change the recipe.")
    run.eligible.update(checked.eligible)
    setup_enhancer(run, items)
    warnings = checked.warnings + setup_validation(run, items)
    for line in warnings:
        log.warning(line)
    return {"distinct_jobs": len(_jobs(run, items)), "warnings": warnings}
