"""Batch preflight: everything that can fail before any GPU work, checked at once.

* every distinct composed workflow of the batch (per backend) against that
  backend's ``/object_info``: unknown nodes, missing models (with suggestions),
  out-of-range values;
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
from typing import TYPE_CHECKING, Any, Sequence

from comfy_gen.errors import PreflightError
from comfy_gen.hashing import digest

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.validation.plan import ValidationPlan

log = logging.getLogger(__name__)


def distinct_jobs(run: Any, items: list[Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Composed graphs that differ in more than prompt text and seed, keyed by shape."""
    from comfy_gen.workflow import apply_params

    shapes: dict[str, tuple[str, dict[str, Any]]] = {}
    for item in items:
        params = item.params.replace(prompt="preflight", negative_prompt=None, seed=0)
        graph = apply_params(run.workflow(item.workflow), params, rng=random.Random(0))
        shapes.setdefault(item.backend + digest(graph), (item.backend, graph))
    return shapes


def check_jobs(run: Any, items: list[Any]) -> list[str]:
    """Problems of every distinct job, as printable lines (empty when all is well)."""
    from comfy_gen.workflow import preflight

    problems: list[str] = []
    seen: set[str] = set()
    for backend, graph in distinct_jobs(run, items).values():
        object_info = run.backends.get(backend).client.object_info()
        for problem in preflight(graph, object_info):
            line = f"[{backend}] {problem}"
            if line not in seen:
                seen.add(line)
                problems.append(line)
    return problems


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
    problems = check_jobs(run, items)
    if problems:
        raise PreflightError(
            f"Preflight failed for recipe {run.recipe.name!r}: {len(problems)} problem(s); nothing was queued",
            problems, hint="Install the missing models/nodes on the server, or change the recipe.")
    setup_enhancer(run, items)
    warnings = setup_validation(run, items)
    for line in warnings:
        log.warning(line)
    return {"distinct_jobs": len(distinct_jobs(run, items)), "warnings": warnings}
