"""Bad recipes: every problem at once, as exact `file:line: json.path: message` strings."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfy_gen.config import Settings
from comfy_gen.errors import PathNotAllowed, RecipeError
from comfy_gen.recipes import RecipeProblem, load_recipe
from tests.recipes.conftest import BAD_DIR


def problems_of(path: Path | str, settings: Settings, **kwargs: object) -> list[str]:
    with pytest.raises(RecipeError) as info:
        load_recipe(path, settings=settings, **kwargs)  # type: ignore[arg-type]
    assert all(isinstance(p, RecipeProblem) for p in info.value.problems)
    return [str(p) for p in info.value.problems]


def test_problem_str_format() -> None:
    problem = RecipeProblem("r.yaml", 7, "$.defaults.steps", "too many")
    assert str(problem) == "r.yaml:7: $.defaults.steps: too many"
    assert problem.to_dict() == {"file": "r.yaml", "line": 7, "path": "$.defaults.steps", "message": "too many"}


def test_schema_errors_all_reported_with_lines(settings: Settings) -> None:
    f = BAD_DIR / "schema-errors.yaml"
    assert problems_of(f, settings) == [
        f"{f}:1: $.name: must be a slug: lowercase letters, digits, '-' and '_', starting with a letter or digit"
        " (got 'Bad Name')",
        f"{f}:3: $.backend: must be a backend name from settings (COMFY_GEN_BACKENDS or 'default'), "
        "not a URL or credentials",
        f"{f}:5: $.defaults.steps: 'twenty' is not of type 'integer'",
        f"{f}:6: $.defaults.stpes: unknown property 'stpes' (did you mean 'steps'?)",
        f"{f}:9: $.seeds: 'stop' is a required property",
        f"{f}:12: $.refinement.max_attempts: 0 is less than the minimum of 1",
    ]


def test_backend_url_credentials_never_echoed(settings: Settings) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(BAD_DIR / "schema-errors.yaml", settings=settings)
    text = str(info.value) + repr(info.value.to_dict())
    assert "hunter2" not in text and "gpu.example.com" not in text


def test_semantic_errors_all_reported(settings: Settings) -> None:
    f = BAD_DIR / "semantic-errors.yaml"
    found = problems_of(f, settings)
    assert found[:8] == [
        f"{f}:2: $.workflow: unknown workflow 'missing-workflow.json' (available: other.json, tiny-sd15.json)",
        f"{f}:3: $.backend: unknown backend 'gpu9' (known: default, gpu1, gpu2); "
        "define backends in settings (COMFY_GEN_BACKENDS)",
        f"{f}:5: $.defaults.steps: steps must be an integer in 1..150 (got 500)",
        f"{f}:6: $.defaults.width: width must be 64..8192 and divisible by 8 (got 500)",
        f"{f}:7: $.defaults.loras[0]: Invalid LoRA strength in 'detail.safetensors:strong': 'strong' is not a number",
        f"{f}:9: $.prompts[0]: wildcard __terrain__ not found (no wildcards/terrain.txt next to the recipe)",
        f"{f}:12: $.matrix.axes.cfg: axis 'cfg' has no values",
        f"{f}:15: $.matrix.zip[0]: zip group has unequal lengths: sampler=2, steps=3",
    ]
    # The strategy list grows as strategies are registered; the built-ins are always there.
    assert len(found) == 9
    assert found[8].startswith(f"{f}:17: $.refinement.strategy: unknown strategy 'wishful_thinking' (available: ")
    assert "progressive" in found[8] and "seed_search" in found[8]


def test_yaml_syntax_error_has_its_line(settings: Settings) -> None:
    f = BAD_DIR / "syntax-error.yaml"
    assert problems_of(f, settings) == [
        f"{f}:6: $: YAML syntax error: expected ',' or ']', but got ':' (while parsing a flow sequence started on line 5)"
    ]


def test_unknown_category_suggests_close_ids(settings: Settings) -> None:
    f = BAD_DIR / "unknown-category.yaml"
    assert problems_of(f, settings) == [f"{f}:5: $.categories: unknown category 'landscap' (did you mean: landscape?)"]


def test_schema_and_semantic_problems_together_sorted_by_line(write_recipe, settings: Settings) -> None:
    path = write_recipe("""
        name: mixed
        workflow: nope.json
        prompts: [a cat]
        defaults:
          cfg: 99
          sampler: 3
        seeds: [1, 1.5]
        colour: red
        name: mixed-again
    """)
    assert problems_of(path, settings) == [
        f"{path}:2: $.workflow: unknown workflow 'nope.json' (available: other.json, tiny-sd15.json)",
        f"{path}:5: $.defaults.cfg: cfg must be in 1.0..30.0 (got 99.0)",
        f"{path}:6: $.defaults.sampler: 3 is not of type 'string'",
        f"{path}:7: $.seeds[1]: 1.5 is not of type 'integer'",
        f"{path}:8: $.colour: unknown property 'colour' (allowed: backend, backends, categories, defaults, "
        "description, enhance, matrix, name, nightly, output, policy_tier, prompts, refinement, seeds, stage_tasks, validation, workflow)",
        f"{path}:9: $.name: duplicate key (the later value would silently win)",
    ]


def test_matrix_problems(write_recipe, settings: Settings) -> None:
    path = write_recipe("""
        name: matrix-problems
        workflow: tiny-sd15.json
        prompts: [a kite]
        seeds: {start: 10, stop: 10}
        matrix:
          axes:
            prompt: [another kite]
            size: [512x512, 513x512]
            width: [512]
          zip: [[steps, size]]
          rows: cfg
    """)
    assert problems_of(path, settings) == [
        f"{path}:4: $.seeds: the seed range is empty (stop must be greater than start)",
        f"{path}:7: $.matrix.axes.prompt: 'prompt' is given twice: use either prompts or matrix.axes.prompt",
        f"{path}:8: $.matrix.axes.size: use either the size axis or width/height axes, not both",
        f"{path}:8: $.matrix.axes.size[1]: width must be 64..8192 and divisible by 8 (got 513)",
        f"{path}:10: $.matrix.zip[0]: zip names axis 'steps', which the recipe does not vary",
        f"{path}:11: $.matrix.rows: rows names axis 'cfg', which the recipe does not vary",
    ]


def test_nothing_to_render(write_recipe, settings: Settings) -> None:
    path = write_recipe("name: empty\nworkflow: tiny-sd15.json\n")
    assert problems_of(path, settings) == [
        f"{path}:1: $: nothing to render: add prompts, matrix.axes.prompt or categories"]


def test_not_a_mapping_and_missing_file(write_recipe, settings: Settings, tmp_path: Path) -> None:
    path = write_recipe("- just\n- a list\n")
    assert problems_of(path, settings) == [f"{path}:1: $: a recipe must be a mapping (name:, workflow:, prompts: ...)"]
    missing = tmp_path / "missing.yaml"
    assert problems_of(missing, settings) == [f"{missing}:1: $: cannot read file: No such file or directory"]


def test_policy_tier_violation_reported_at_load(write_recipe, settings: Settings, tmp_path: Path) -> None:
    cats = tmp_path / "cats"
    cats.mkdir()
    (cats / "moody.yaml").write_text(
        "schema_version: 1.0.0\nid: moody\ntype: style\ndisplay_name: Moody\npolicy_tier: mature\n"
        "keywords: {primary: [moody]}\nprompts: {positive_fragments: {required: [moody lighting]}}\n",
        encoding="utf-8")
    from comfy_gen.categories import load_registry

    registry = load_registry(settings, paths=[cats], strict=True)
    path = write_recipe("name: tiers\nworkflow: tiny-sd15.json\nprompts: [a hallway]\ncategories: [moody]\n")
    mature = settings.model_copy(update={"policy_tier": "mature"})
    assert load_recipe(path, settings=mature, registry=registry).categories == ("moody",)
    lowered = write_recipe("name: tiers\nworkflow: tiny-sd15.json\nprompts: [a hallway]\ncategories: [moody]\n"
                           "policy_tier: general\n", name="lowered.yaml")
    found = problems_of(lowered, mature, registry=registry)
    assert len(found) == 1 and found[0].startswith(f"{lowered}:4: $.categories: Category \"moody\" requires")
    # A recipe cannot raise the server's tier: explicit on a general server is still general.
    raised = write_recipe("name: tiers\nworkflow: tiny-sd15.json\nprompts: [a hallway]\ncategories: [moody]\n"
                          "policy_tier: explicit\n", name="raised.yaml")
    assert problems_of(raised, settings, registry=registry)[0].startswith(f"{raised}:4: $.categories: Category")


def test_allowed_dirs_confine_the_path(write_recipe, settings: Settings, tmp_path: Path) -> None:
    path = write_recipe("name: ok\nworkflow: tiny-sd15.json\nprompts: [a cup]\n")
    assert load_recipe(path, settings=settings, allowed_dirs=[path.parent]).name == "ok"
    with pytest.raises(PathNotAllowed):
        load_recipe(path, settings=settings, allowed_dirs=[tmp_path / "elsewhere"])
    # Without allowed_dirs (the CLI) any path the user names is read.
    assert load_recipe(path, settings=settings).name == "ok"


def test_bare_name_found_in_recipes_dir(write_recipe, settings: Settings) -> None:
    write_recipe("name: by-name\nworkflow: tiny-sd15.json\nprompts: [a cup]\n", name="by-name.yaml")
    assert load_recipe("by-name", settings=settings).name == "by-name"
