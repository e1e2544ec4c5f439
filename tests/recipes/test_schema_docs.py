"""The schema documents itself, the docs cover it, and shipped recipes are valid."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest

from comfy_gen.config import Settings
from comfy_gen.recipes import SCHEMA_PATH, expand_recipe, load_recipe
from tests.conftest import REPO_ROOT

SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
DOCS = (REPO_ROOT / "docs" / "recipes.md").read_text(encoding="utf-8")
SHIPPED = sorted((REPO_ROOT / "recipes").glob("*.yaml"))
MODELINE = "# yaml-language-server: $schema=../comfy_gen/recipes/recipe.schema.json"


def walk_properties(node: Any, path: str = "") -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(json path, property name, property schema) for every `properties` entry anywhere."""
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            yield f"{path}.{name}", name, sub
        for key, value in node.items():
            yield from walk_properties(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk_properties(value, f"{path}[{i}]")


def test_schema_is_valid_2020_12() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_every_property_has_a_description() -> None:
    props = list(walk_properties(SCHEMA))
    assert len(props) > 40
    missing = [path for path, _, sub in props if not sub.get("description")]
    assert missing == []


@pytest.mark.parametrize("name", sorted(SCHEMA["properties"]))
def test_top_level_property_documented(name: str) -> None:
    assert re.search(rf"^#+ .*`{re.escape(name)}`", DOCS, re.M), f"no heading for `{name}` in docs/recipes.md"


def test_every_property_name_appears_in_docs() -> None:
    names = {name for _, name, _ in walk_properties(SCHEMA)}
    assert sorted(n for n in names if f"`{n}`" not in DOCS) == []


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_recipes_validate_and_expand(path: Path) -> None:
    assert path.read_text(encoding="utf-8").splitlines()[0] == MODELINE
    settings = Settings()  # the checkout's workflows/ folder and category library
    recipe = load_recipe(path, settings=settings)
    assert expand_recipe(recipe, settings=settings).items


def test_demo_recipe_shape() -> None:
    settings = Settings()
    recipe = load_recipe(REPO_ROOT / "recipes" / "demo.yaml", settings=settings)
    exp = expand_recipe(recipe, settings=settings)
    assert len(exp.items) == 6 and (exp.rows_axis, exp.cols_axis) == ("prompt", "seed")
    assert sorted(i.grid for i in exp.items if i.grid) == [(r, c) for r in range(3) for c in range(2)]
    assert recipe.workflow == "tiny-sd15.json" and recipe.output.contact_sheet
    assert recipe.validation.enabled and recipe.validation.allow_skip
    assert recipe.validation.positive_threshold == 20
    assert (recipe.refinement.strategy, recipe.refinement.max_attempts) == ("progressive", 2)
    nightly = [p.stem for p in SHIPPED if load_recipe(p, settings=settings).nightly]
    assert nightly == ["nightly-example"]


def test_categories_example_uses_ids_and_tags() -> None:
    settings = Settings()
    recipe = load_recipe(REPO_ROOT / "recipes" / "categories-example.yaml", settings=settings)
    assert "landscape" in recipe.categories and "@golden_hour" in recipe.categories
    items = expand_recipe(recipe, settings=settings).items
    assert {tuple(i.categories) for i in items} == {("landscape", "golden_hour"),
                                                   ("landscape", "golden_hour", "watercolor")}
