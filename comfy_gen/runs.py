"""Planning a recipe run and finishing it, as plain functions.

``plan_run`` turns a recipe path into a ``RunPlan``: the loaded recipe, its
items in order (after a ``backend`` override and ``max_items``), the contact-
sheet layout and whether to upload. It checks everything that can be checked
without a server, so a broken recipe fails before any process starts. The flow,
the CLI, and later the API and MCP (for previews) call it.

``finish_run`` turns the items' results into a ``RunSummary`` and writes the
run record (``results.jsonl``, ``summary.json``, ``summary.md``, the contact
sheet) into the run folder, so a run can be read without the Prefect server.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from comfy_gen.config import Settings
from comfy_gen.results import ItemResult, RunSummary, summarize

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.batch import BatchRun
    from comfy_gen.recipes import Recipe, RecipeItem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunPlan:
    """What a run will render, decided before anything is started."""

    recipe: "Recipe"
    items: tuple["RecipeItem", ...]
    rows_axis: str | None
    cols_axis: str | None
    upload: bool
    migrated: int = 0          # items renamed from an earlier id scheme (not re-rendered)

    @property
    def backends(self) -> list[str]:
        return sorted({name for it in self.items for name in it.candidates})


def plan_run(recipe_path: str | Path, *, settings: Settings, backend: str | None = None,
             max_items: int | None = None, upload: bool | None = None, confine: bool = True,
             migrate: bool = True) -> RunPlan:
    """Load and expand ``recipe_path`` into a ``RunPlan``.

    ``confine`` keeps the path inside the recipe folders (a deployment parameter
    or an API request is not the person at the keyboard). ``backend`` replaces
    the backends each item may render on; ``upload`` None follows the recipe's output.upload
    when storage is configured. ``migrate`` renames items stored under an
    earlier id scheme so they are found, not rendered again.
    Raises RecipeError / ConfigError / UsageError for anything wrong.
    """
    from comfy_gen.errors import UsageError
    from comfy_gen.recipes import default_allowed_dirs, expand_recipe, load_recipe

    if max_items is not None and max_items < 1:
        raise UsageError(f"max_items must be at least 1 (got {max_items})")
    allowed = default_allowed_dirs(settings) if confine else None
    recipe = load_recipe(recipe_path, settings=settings, allowed_dirs=allowed)
    expansion = expand_recipe(recipe, settings=settings)
    items = list(expansion.items)
    _check_output_folder(settings, recipe)
    migrated = migrate_items(settings, recipe, items) if migrate else 0
    if backend:
        settings.backend_url(backend)  # an unknown name fails here, before any work
        items = [replace(it, backend=backend, backends=(backend,)) for it in items]
    if max_items is not None:
        items = items[:max_items]
    wanted = recipe.output.upload if upload is None else upload
    return RunPlan(recipe=recipe, items=tuple(items), rows_axis=expansion.rows_axis,
                   cols_axis=expansion.cols_axis,
                   upload=bool(wanted) and (upload is not None or settings.storage_configured),
                   migrated=migrated)


def _check_output_folder(settings: Settings, recipe: "Recipe") -> None:
    """The recipe's items folder must be writable before any item renders (UsageError)."""
    from comfy_gen.outputs import check_output_folder
    from comfy_gen.storage import LocalStore

    check_output_folder(LocalStore.from_settings(settings).items_dir(recipe.output.dir or recipe.name),
                        what="output folder of the recipe")


def migrate_items(settings: Settings, recipe: "Recipe", items: Sequence["RecipeItem"]) -> int:
    """Rename items stored under their v1 id (which hashed the backend) to their
    current id, sidecar included, so an upgraded install re-renders nothing.

    Exact, not heuristic: the v1 id is recomputed from the same parameters and
    the placement v1 chose. Returns how many items were renamed.
    """
    from comfy_gen.recipes.expand import legacy_item_id
    from comfy_gen.storage import LocalStore, sidecar_path

    store = LocalStore.from_settings(settings)
    folder = recipe.output.dir or recipe.name
    items_dir = store.items_dir(folder)
    if not items_dir.is_dir():
        return 0
    renamed = 0
    for item in items:
        old = legacy_item_id(item.workflow, item.params, item.backend)
        if item.enhance.enabled:
            continue  # v1 had no enhancement: a v1 file is never this item's
        if old == item.id or store.find_existing(folder, item.id) is not None:
            continue
        source = store.find_existing(folder, old)
        if source is None:
            continue
        target = source.with_name(item.id + source.suffix)
        old_sidecar, new_sidecar = sidecar_path(source), sidecar_path(target)
        if old_sidecar.exists():
            _rewrite_sidecar_id(old_sidecar, new_sidecar, old, item.id)
        os.replace(source, target)
        old_sidecar.unlink(missing_ok=True)
        renamed += 1
    if renamed:
        log.info("Recipe %s: %d stored item(s) renamed to item-id v2 (nothing re-rendered)", recipe.name, renamed)
    return renamed


def _rewrite_sidecar_id(old_path: Path, new_path: Path, old_id: str, new_id: str) -> None:
    from comfy_gen.storage import atomic_write_json

    try:
        meta = json.loads(old_path.read_text())
    except (OSError, json.JSONDecodeError):
        return  # an unreadable sidecar marks nothing done; the item is rendered again
    info = meta.setdefault("comfy_gen", {})
    if info.get("item_id") == old_id:
        info["item_id"] = new_id
    result = info.get("result")
    if isinstance(result, dict) and result.get("item_id") == old_id:
        result["item_id"] = new_id
    info["migrated_from"] = old_id
    atomic_write_json(new_path, meta)


def stage_tasks_wanted(recipe: "Recipe", settings: Settings, render_count: int) -> bool:
    """Whether the items of a run show their stages as nested task runs: the
    recipe's ``stage_tasks`` unless auto, else ``COMFY_GEN_STAGE_TASKS``; auto means
    on while at most ``stage_tasks_max_items`` items render (what the Prefect
    server records without falling behind, bench/README.md)."""
    mode = recipe.stage_tasks if recipe.stage_tasks != "auto" else settings.stage_tasks
    if mode == "auto":
        return render_count <= settings.stage_tasks_max_items
    return mode == "on"


def finish_run(run: "BatchRun", results: Sequence[ItemResult], *, wall_seconds: float) -> RunSummary:
    """Summarise ``results`` and write the run record; returns the summary."""
    from comfy_gen.runrecord import write_record

    ordered = sorted(results, key=lambda r: r.index)
    summary = summarize(ordered, wall_seconds=wall_seconds).replace(
        recipe=run.recipe.name, run_id=run.run_id, run_dir=str(run.run_dir),
        items_dir=str(run.items_dir), flow_run_id=run.flow_run_id,
        validation_skipped=run.validation_skipped)
    return write_record(run, ordered, summary)
