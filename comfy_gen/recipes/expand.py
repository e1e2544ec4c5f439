"""Deterministic expansion of a Recipe into RecipeItems.

Dimensions are the recipe's axes in order (``prompts``, ``seeds``, then
``matrix.axes`` in file order); a zip group is one dimension, placed where its
first axis is. Items are the cartesian product of the dimensions, first
dimension slowest. Each item's id hashes only what it renders (workflow,
params, backend), so ids do not depend on item order or on the machine.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from comfy_gen.config import Settings, get_settings
from comfy_gen.enhance.options import EnhanceOptions
from comfy_gen.errors import ConfigError, PolicyViolation, RecipeError
from comfy_gen.hashing import digest
from comfy_gen.params import GenerationParams, LoraSpec
from comfy_gen.recipes.categories import compose_set, effective_recipe_tier, get_registry_for, merge_params
from comfy_gen.recipes.model import Axis, PromptSpec, Recipe, RecipeItem, RecipeProblem
from comfy_gen.recipes.prompts import derive_seeds

log = logging.getLogger(__name__)

#: Length of an item id in hex characters (64 bits: collisions are not a concern
#: for recipes capped at tens of thousands of items).
ID_HEX = 16


@dataclass(frozen=True)
class Dimension:
    """One independent dimension: a single axis, or a zip group advancing together."""

    key: str                    # label key: the axis name, or "a+b" for a zip group
    axes: tuple[Axis, ...]

    @property
    def size(self) -> int:
        return min(len(a.values) for a in self.axes)


@dataclass(frozen=True)
class Expansion:
    """Items plus the contact-sheet layout (label keys of the rows and cols dimensions)."""

    items: list[RecipeItem]
    rows_axis: str | None
    cols_axis: str | None
    tier: str


#: Version of the item-id rule. v1 hashed the backend too; v2 does not.
#: ``legacy_item_id`` keeps v1 so output folders written by it are migrated
#: (renamed) instead of re-rendered: see ``comfy_gen.runs.migrate_items``.
ITEM_ID_VERSION = 2


def item_id(workflow: str, params: GenerationParams, enhance: EnhanceOptions | None = None) -> str:
    """First 16 hex of sha256 over canonical JSON of workflow + params (+ the
    ``enhance`` section when enabled: an enhanced item renders another prompt)."""
    data: dict[str, Any] = {"workflow": workflow, "params": params.to_dict()}
    if enhance is not None and enhance.enabled:
        from comfy_gen.enhance.styles import check_style

        data["enhance"] = {"style": check_style(enhance.style)}  # no style = the default one
    return digest(data, ID_HEX)


def legacy_item_id(workflow: str, params: GenerationParams, backend: str) -> str:
    """The v1 id (backend included), for migrating folders written before v2."""
    return digest({"workflow": workflow, "params": params.to_dict(), "backend": backend}, ID_HEX)


def dimensions(recipe: Recipe) -> list[Dimension]:
    """The recipe's dimensions in expansion order."""
    by_name = {a.name: a for a in recipe.axes}
    group_of = {name: group for group in recipe.zip_groups for name in group}
    dims: list[Dimension] = []
    done: set[str] = set()
    for axis in recipe.axes:
        if axis.name in done:
            continue
        group = group_of.get(axis.name)
        if group is None:
            dims.append(Dimension(axis.name, (axis,)))
            done.add(axis.name)
        else:
            dims.append(Dimension("+".join(group), tuple(by_name[n] for n in group)))
            done.update(group)
    return dims


def value_label(axis: str, value: Any) -> str:
    """How a value is shown in labels and on the contact sheet."""
    if isinstance(value, PromptSpec):
        return value.label or value.text
    if axis == "size":
        return f"{value[0]}x{value[1]}"
    if axis == "loras":
        return ", ".join(f"{PurePath(lo.name).stem}:{lo.strength_model:g}" for lo in value) or "none"
    if axis == "categories":
        return " ".join(value) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _layout(recipe: Recipe, dims: list[Dimension]) -> tuple[Dimension | None, Dimension | None, bool]:
    """(rows dim, cols dim, has_grid). Dimensions of size 1 are constants, not sheet axes,
    unless matrix.rows/cols names them."""
    def dim_of(axis: str | None) -> Dimension | None:
        return next((d for d in dims if axis is not None and axis in [a.name for a in d.axes]), None)

    named_rows, named_cols = dim_of(recipe.rows_axis), dim_of(recipe.cols_axis)
    varying = [d for d in dims if d.size > 1 or d is named_rows or d is named_cols]
    if len(varying) > 2:
        return None, None, False
    if len(varying) == 2:
        rows = named_rows or (varying[1] if named_cols is varying[0] else varying[0])
        cols = named_cols or next(d for d in varying if d is not rows)
        return rows, cols, True
    if len(varying) == 1:
        return (varying[0], None, True) if named_rows is varying[0] else (None, varying[0], True)
    return None, None, True


def explicit_values(values: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Axis values of one combination -> GenerationParams fields, extra categories."""
    out: dict[str, Any] = {}
    categories: tuple[str, ...] = ()
    for name, value in values.items():
        if name == "prompt":
            out["prompt"] = value.text
            if value.negative_prompt is not None:
                out.setdefault("negative_prompt", value.negative_prompt)
        elif name == "negative_prompt":
            out["negative_prompt"] = value  # the axis beats a prompt entry's negative
        elif name == "size":
            out["width"], out["height"] = value
        elif name == "categories":
            categories = value
        else:
            out[name] = value
    return out, categories


def expand_recipe(recipe: Recipe, *, settings: Settings | None = None, registry: Any = None) -> Expansion:
    """Every item of the recipe, with contact-sheet layout. Deterministic.

    Raises PolicyViolation when categories exceed the effective tier, RecipeError
    for other category problems (with the recipe line).
    """
    settings = settings or get_settings()
    tier: str = settings.policy_tier
    dims = dimensions(recipe)
    rows_dim, cols_dim, has_grid = _layout(recipe, dims)
    uses_categories = bool(recipe.categories) or any(a.name == "categories" for a in recipe.axes)
    if uses_categories:
        tier = effective_recipe_tier(settings, recipe.policy_tier)
        registry = get_registry_for(settings, registry)
    default_seed = derive_seeds(recipe.name, 1)[0]
    compositions: dict[tuple[tuple[str, ...], str], tuple[GenerationParams, list[str]]] = {}
    items: list[RecipeItem] = []
    seen: set[str] = set()
    ranges = [range(d.size) for d in dims]
    for combo in itertools.product(*ranges):
        values: dict[str, Any] = {}
        labels: dict[str, str] = {}
        for dim, k in zip(dims, combo):
            for axis in dim.axes:
                values[axis.name] = axis.values[k]
            labels[dim.key] = " / ".join(value_label(a.name, a.values[k]) for a in dim.axes)
        explicit, extra_categories = explicit_values(values)
        explicit.setdefault("seed", default_seed)
        categories = list(dict.fromkeys(recipe.categories + extra_categories))
        composed = None
        if categories:
            composed, categories = _compose(recipe, categories, explicit.get("prompt") or "", extra_categories,
                                            registry=registry, tier=tier, cache=compositions)
        params = merge_params(recipe.defaults, composed, explicit)
        backend = _backend_for(recipe, params)
        iid = item_id(recipe.workflow, params, recipe.enhance)
        if iid in seen:
            log.info("recipe %s: dropping a duplicate item (%s)", recipe.name, labels)
            continue
        seen.add(iid)
        grid = None
        if has_grid:
            grid = (combo[dims.index(rows_dim)] if rows_dim else 0, combo[dims.index(cols_dim)] if cols_dim else 0)
        items.append(RecipeItem(
            id=iid, index=len(items), params=params, workflow=recipe.workflow, backend=backend,
            labels=labels, grid=grid, categories=categories, validation=recipe.validation,
            refinement=recipe.refinement, enhance=recipe.enhance, backends=recipe.backends))
    return Expansion(items=items, rows_axis=rows_dim.key if rows_dim else None,
                     cols_axis=cols_dim.key if cols_dim else None, tier=tier)


def expand(recipe: Recipe, *, settings: Settings | None = None, registry: Any = None) -> list[RecipeItem]:
    """Every item of the recipe (see :func:`expand_recipe`)."""
    return expand_recipe(recipe, settings=settings, registry=registry).items


def _backend_for(recipe: Recipe, params: GenerationParams) -> str:
    # The v1 placement (a params hash over the recipe's backends), kept only so
    # runs.migrate_items can recompute v1 ids. Rendering dispatches over all of
    # ``recipe.backends`` (comfy_gen.backends.BackendPool.lease).
    if len(recipe.backends) == 1:
        return recipe.backends[0]
    h = int(digest({"workflow": recipe.workflow, "params": params.to_dict()})[:8], 16)
    return recipe.backends[h % len(recipe.backends)]


def _compose(recipe: Recipe, categories: list[str], prompt: str, extra: tuple[str, ...], *,
             registry: Any, tier: str, cache: dict[tuple[tuple[str, ...], str], tuple[GenerationParams, list[str]]]
             ) -> tuple[GenerationParams, list[str]]:
    """(params from the categories, resolved category ids) for one item; cached per set and prompt."""
    key = (tuple(categories), prompt)
    cached = cache.get(key)
    if cached is not None:
        return cached
    where = _category_path(recipe, extra)
    line = recipe.lines.get(where, 1)
    try:
        composition = compose_set(categories, registry=registry, tier=tier, user_text=prompt)
    except PolicyViolation as exc:
        raise PolicyViolation(f"{recipe.path}:{line}: {where}: {exc.message}", exc.violations) from exc
    except ConfigError as exc:
        problem = RecipeProblem(str(recipe.path), line, where, exc.message)
        raise RecipeError(f"{recipe.path}: categories cannot be composed", [problem]) from exc
    # Category LoRAs get an explicit clip strength so item params round-trip exactly.
    composed = composition.to_params()
    composed = composed.replace(loras=tuple(LoraSpec(lo.name, lo.strength_model, lo.clip_strength)
                                            for lo in composed.loras))
    ids = [str(c.id) for c in getattr(composition, "categories", ())] or list(categories)
    cache[key] = (composed, ids)
    return composed, ids


def _category_path(recipe: Recipe, extra: tuple[str, ...]) -> str:
    if extra:
        axis = next(a for a in recipe.axes if a.name == "categories")
        return f"$.matrix.axes.categories[{axis.values.index(extra)}]"
    return "$.categories"
