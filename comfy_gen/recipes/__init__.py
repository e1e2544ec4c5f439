"""Recipes: YAML files (JSON Schema checked) expanded into deterministic render items.

Usage::

    recipe = load_recipe("recipes/demo.yaml", settings=settings)   # RecipeError lists every problem
    items = expand(recipe, settings=settings)                        # list[RecipeItem], stable ids
    layout = expand_recipe(recipe)                                   # items + contact-sheet axes
"""

from __future__ import annotations

from typing import Any

from comfy_gen.recipes.expand import Expansion, dimensions, expand, expand_recipe, item_id, value_label
from comfy_gen.recipes.loader import (
    SCHEMA_PATH,
    default_allowed_dirs,
    load_recipe,
    resolve_recipe_path,
    schema,
)
from comfy_gen.recipes.model import (
    AXES,
    Axis,
    OutputConfig,
    PromptSpec,
    Recipe,
    RecipeItem,
    RecipeProblem,
    RefinementConfig,
    ValidationConfig,
)
from comfy_gen.recipes.prompts import derive_seeds


def __getattr__(name: str) -> Any:
    # Pillow is only needed to draw sheets; keep `import comfy_gen.recipes` light.
    if name == "make_contact_sheet":
        from comfy_gen.recipes.contact_sheet import make_contact_sheet

        return make_contact_sheet
    raise AttributeError(f"module 'comfy_gen.recipes' has no attribute {name!r}")


__all__ = [
    "AXES", "Axis", "Expansion", "OutputConfig", "PromptSpec", "Recipe", "RecipeItem", "RecipeProblem",
    "RefinementConfig", "SCHEMA_PATH", "ValidationConfig", "default_allowed_dirs", "derive_seeds",
    "dimensions", "expand", "expand_recipe", "item_id", "load_recipe", "make_contact_sheet",
    "resolve_recipe_path", "schema", "value_label",
]
