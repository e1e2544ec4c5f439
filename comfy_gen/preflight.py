"""Batch preflight: everything that can fail before any GPU work, checked at once.

* every distinct composed workflow of the batch (per backend) against that
  backend's ``/object_info``: unknown nodes, missing models (with suggestions),
  out-of-range values;
* the validator, when any item asks for validation: a model that cannot be
  loaded fails the run here, unless every such item allows skipping validation.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from comfy_gen.errors import PreflightError, ValidatorUnavailable
from comfy_gen.hashing import digest

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


def setup_validation(run: Any, items: list[Any]) -> list[str]:
    """Load the validator once for the run (a BatchingScorer shared by all items).

    Returns warnings. Raises ValidatorUnavailable when validation is required
    and the model cannot be loaded.
    """
    wanted = [it for it in items if it.validation.enabled]
    if not wanted:
        return []
    from comfy_gen.validation import BatchingScorer, get_validator

    model = run.settings.clip_model
    try:
        validator = get_validator(model)
    except ValidatorUnavailable as exc:
        if all(it.validation.allow_skip for it in wanted):
            run.validation_skipped = True
            return [f"VALIDATION SKIPPED: {exc.message} (the recipe allows skipping validation; "
                    "images are kept unvalidated)"]
        raise
    run.scorer = BatchingScorer(validator, max_batch=run.settings.clip_batch_size)
    return []


def preflight_batch(run: Any, payload: list[dict[str, Any]]) -> dict[str, Any]:
    """Run every preflight check for the batch; raise with the full list of problems."""
    from comfy_gen.recipes import RecipeItem

    items = [RecipeItem.from_dict(p) for p in payload]
    problems = check_jobs(run, items)
    if problems:
        raise PreflightError(
            f"Preflight failed for recipe {run.recipe.name!r}: {len(problems)} problem(s); nothing was queued",
            problems, hint="Install the missing models/nodes on the server, or change the recipe.")
    warnings = setup_validation(run, items)
    for line in warnings:
        log.warning(line)
    return {"distinct_jobs": len(distinct_jobs(run, items)), "warnings": warnings}
