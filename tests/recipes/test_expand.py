"""Expansion: stable ids, cartesian and zipped matrices, seeds, dynamic prompts, categories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfy_gen.config import Settings
from comfy_gen.params import GenerationParams, LoraSpec
from comfy_gen.recipes import RecipeItem, derive_seeds, expand, expand_recipe, item_id, load_recipe
from comfy_gen.recipes.expand import legacy_item_id

def load_expand(write_recipe, settings: Settings, text: str, **kw: object) -> list[RecipeItem]:
    return expand(load_recipe(write_recipe(text, **kw), settings=settings), settings=settings)


def test_same_recipe_same_ids(write_recipe, settings: Settings) -> None:
    path = write_recipe("""
        name: stable
        workflow: tiny-sd15.json
        defaults: {steps: 20, cfg: 7, width: 512, height: 512}
        prompts: [a lighthouse, a mountain lake, a city street at dusk]
        seeds: [1001, 2002]
    """)
    first = [i.id for i in expand(load_recipe(path, settings=settings), settings=settings)]
    second = [i.id for i in expand(load_recipe(path, settings=settings), settings=settings)]
    assert first == second and len(set(first)) == 6
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in first)


def test_ids_independent_of_order_and_key_layout(write_recipe, settings: Settings) -> None:
    a = load_expand(write_recipe, settings, """
        name: order
        workflow: tiny-sd15.json
        defaults: {steps: 20, cfg: 7.0}
        prompts: [a lighthouse, a mountain lake]
        seeds: [1, 2]
        matrix: {axes: {sampler: [euler, dpmpp_2m]}}
    """, name="a.yaml")
    b = load_expand(write_recipe, settings, """
        matrix:
          axes:
            sampler: [dpmpp_2m, euler]
        seeds: [2, 1]
        prompts:
          - a mountain lake
          - a lighthouse
        defaults:
          cfg: 7
          steps: 20
        workflow: tiny-sd15.json
        name: order
    """, name="b.yaml")
    assert [i.id for i in a] != [i.id for i in b]          # different order...
    assert sorted(i.id for i in a) == sorted(i.id for i in b)  # ...same items


def test_id_is_sha256_of_workflow_and_params_not_backend(write_recipe, settings: Settings) -> None:
    (item,) = load_expand(write_recipe, settings, "name: one\nworkflow: tiny-sd15.json\nprompts: [a cup]\nseeds: [5]\n")
    import hashlib

    blob = json.dumps({"workflow": "tiny-sd15.json", "params": item.params.to_dict()},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert item.id == hashlib.sha256(blob.encode()).hexdigest()[:16]
    assert item.id == item_id(item.workflow, item.params)
    other = item_id(item.workflow, item.params.replace(seed=6))
    assert other != item.id
    # Placement is not identity: the same item on another backend keeps its id.
    assert legacy_item_id(item.workflow, item.params, "default") != item.id


def test_cartesian_matrix_order_labels_and_grid(write_recipe, settings: Settings) -> None:
    exp = expand_recipe(load_recipe(write_recipe("""
        name: grid
        workflow: tiny-sd15.json
        prompts: [a red kite]
        seeds: [3]
        matrix:
          axes:
            steps: [10, 20, 30]
            cfg: [4.5, 7]
    """), settings=settings), settings=settings)
    got = [(i.index, i.params.steps, i.params.cfg, i.grid, i.labels) for i in exp.items]
    assert got == [
        (0, 10, 4.5, (0, 0), {"prompt": "a red kite", "seed": "3", "steps": "10", "cfg": "4.5"}),
        (1, 10, 7.0, (0, 1), {"prompt": "a red kite", "seed": "3", "steps": "10", "cfg": "7"}),
        (2, 20, 4.5, (1, 0), {"prompt": "a red kite", "seed": "3", "steps": "20", "cfg": "4.5"}),
        (3, 20, 7.0, (1, 1), {"prompt": "a red kite", "seed": "3", "steps": "20", "cfg": "7"}),
        (4, 30, 4.5, (2, 0), {"prompt": "a red kite", "seed": "3", "steps": "30", "cfg": "4.5"}),
        (5, 30, 7.0, (2, 1), {"prompt": "a red kite", "seed": "3", "steps": "30", "cfg": "7"}),
    ]
    assert (exp.rows_axis, exp.cols_axis) == ("steps", "cfg")


def test_rows_cols_swap_orientation(write_recipe, settings: Settings) -> None:
    exp = expand_recipe(load_recipe(write_recipe("""
        name: swap
        workflow: tiny-sd15.json
        prompts: [a boat, a bridge]
        seeds: [1, 2, 3]
        matrix: {rows: seed, cols: prompt}
    """), settings=settings), settings=settings)
    assert (exp.rows_axis, exp.cols_axis) == ("seed", "prompt")
    assert [(i.params.prompt, i.params.seed, i.grid) for i in exp.items[:4]] == [
        ("a boat", 1, (0, 0)), ("a boat", 2, (1, 0)), ("a boat", 3, (2, 0)), ("a bridge", 1, (0, 1))]


def test_zip_groups_advance_together(write_recipe, settings: Settings) -> None:
    exp = expand_recipe(load_recipe(write_recipe("""
        name: zipped
        workflow: tiny-sd15.json
        prompts: [a tower, a tree]
        matrix:
          axes:
            width: [512, 768, 512]
            height: [512, 512, 768]
            sampler: [euler, euler, dpmpp_2m]
          zip: [[width, height, sampler]]
    """), settings=settings), settings=settings)
    got = [(i.params.prompt, i.params.width, i.params.height, i.params.sampler, i.grid) for i in exp.items]
    assert got == [
        ("a tower", 512, 512, "euler", (0, 0)), ("a tower", 768, 512, "euler", (0, 1)),
        ("a tower", 512, 768, "dpmpp_2m", (0, 2)), ("a tree", 512, 512, "euler", (1, 0)),
        ("a tree", 768, 512, "euler", (1, 1)), ("a tree", 512, 768, "dpmpp_2m", (1, 2)),
    ]
    assert exp.cols_axis == "width+height+sampler"
    assert exp.items[1].labels["width+height+sampler"] == "768 / 512 / euler"


def test_size_loras_checkpoint_denoise_axes(write_recipe, settings: Settings) -> None:
    items = load_expand(write_recipe, settings, """
        name: axes
        workflow: tiny-sd15.json
        prompts: [a vase]
        seeds: [9]
        defaults:
          loras: ["base.safetensors:0.5"]
        matrix:
          axes:
            size: [512x768]
            loras: [[], ["detail.safetensors:0.8", {name: film.safetensors, strength: 0.4, strength_clip: 0.2}]]
            checkpoint: [a.safetensors]
            denoise: [0.6]
    """)
    assert [(i.params.width, i.params.height) for i in items] == [(512, 768), (512, 768)]
    assert items[0].params.loras == ()   # an axis value replaces defaults.loras
    assert items[1].params.loras == (LoraSpec("detail.safetensors", 0.8, 0.8), LoraSpec("film.safetensors", 0.4, 0.2))
    assert items[1].labels["loras"] == "detail:0.8, film:0.4" and items[0].labels["loras"] == "none"
    assert {(i.params.checkpoint, i.params.denoise) for i in items} == {("a.safetensors", 0.6)}
    # No grid axis varies except loras: one row.
    assert [i.grid for i in items] == [(0, 0), (0, 1)]


def test_defaults_and_prompt_entry_negative(write_recipe, settings: Settings) -> None:
    items = load_expand(write_recipe, settings, """
        name: negatives
        workflow: tiny-sd15.json
        defaults: {negative_prompt: blurry, steps: 12, loras: ["x.safetensors"]}
        prompts:
          - a bowl of fruit
          - {text: a cat on a sofa, label: cat, negative_prompt: dogs}
        seeds: [1]
    """)
    assert [(i.params.prompt, i.params.negative_prompt, i.labels["prompt"]) for i in items] == [
        ("a bowl of fruit", "blurry", "a bowl of fruit"), ("a cat on a sofa", "dogs", "cat")]
    assert items[0].params.steps == 12
    assert items[0].params.loras == (LoraSpec("x.safetensors", 1.0, 1.0),)


def test_seeds_list_range_and_fixed_count(write_recipe, settings: Settings) -> None:
    def seeds(spec: str, name: str = "seedy") -> list[int]:
        text = f"name: {name}\nworkflow: tiny-sd15.json\nprompts: [a key]\nseeds: {spec}\n"
        return [i.params.seed for i in load_expand(write_recipe, settings, text, name=f"{name}.yaml")]

    assert seeds("[5, 3, 99]") == [5, 3, 99]
    assert seeds("{start: 10, stop: 20, step: 4}") == [10, 14, 18]
    assert seeds("{start: 0, stop: 3}") == [0, 1, 2]
    counted = seeds("{count: 3}")
    # Pinned: these must be the same on every machine and Python version.
    assert counted == derive_seeds("seedy", 3) == [877277416, 3270268397, 180641255]
    import hashlib

    assert counted == [int(hashlib.sha256(f"comfy-gen-seed:v1:seedy:{i}".encode()).hexdigest()[:8], 16)
                       for i in range(3)]
    assert seeds("{count: 3}") == counted                       # fixed, not random per run
    assert seeds("{count: 3}", name="other") != counted          # salted by the recipe name
    assert seeds("{count: 2, base: 7}", name="a") == seeds("{count: 2, base: 7}", name="b") == derive_seeds(7, 2)


def test_no_seeds_gives_one_fixed_seed(write_recipe, settings: Settings) -> None:
    items = load_expand(write_recipe, settings, "name: noseed\nworkflow: tiny-sd15.json\nprompts: [a, b]\n")
    assert [i.params.seed for i in items] == [derive_seeds("noseed", 1)[0]] * 2
    assert [i.grid for i in items] == [(0, 0), (0, 1)]


def test_dynamic_prompts_and_wildcards(write_recipe, settings: Settings) -> None:
    items = load_expand(write_recipe, settings, """
        name: dyn
        workflow: tiny-sd15.json
        prompts:
          - a {small|large} __animal__ in a field
          - {text: "a __animal__ portrait", label: portrait}
        seeds: [1]
    """, wildcards={"animal": "# comment\nhorse\n\ncow\n"})
    assert [(i.params.prompt, i.labels["prompt"]) for i in items] == [
        ("a small cow in a field", "a small cow in a field"),
        ("a small horse in a field", "a small horse in a field"),
        ("a large cow in a field", "a large cow in a field"),
        ("a large horse in a field", "a large horse in a field"),
        ("a cow portrait", "portrait #1"),
        ("a horse portrait", "portrait #2"),
    ]


def test_template_syntax_error_is_a_problem(write_recipe, settings: Settings) -> None:
    from comfy_gen.errors import RecipeError

    path = write_recipe("name: broken\nworkflow: tiny-sd15.json\nprompts:\n  - a {red|blue kite\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path, settings=settings)
    (problem,) = info.value.problems
    assert (problem.line, problem.path) == (4, "$.prompts[0]")
    assert problem.message.startswith("invalid prompt template:")


def test_backends_chosen_from_params_not_order(write_recipe, settings: Settings) -> None:
    text = "name: multi\nworkflow: tiny-sd15.json\nbackends: [gpu1, gpu2]\nprompts: [a, b, c, d, e, f]\nseeds: [1, 2]\n"
    items = load_expand(write_recipe, settings, text)
    reordered = load_expand(write_recipe, settings, text.replace("[a, b, c, d, e, f]", "[f, e, d, c, b, a]"),
                            name="rev.yaml")
    assert {i.id: i.backend for i in items} == {i.id: i.backend for i in reordered}
    assert {i.backend for i in items} == {"gpu1", "gpu2"}


def test_item_round_trip_keeps_id(write_recipe, settings: Settings) -> None:
    items = load_expand(write_recipe, settings, """
        name: trip
        workflow: tiny-sd15.json
        defaults: {loras: ["a.safetensors:0.7"], steps: 8}
        prompts: [a shell]
        seeds: [1, 2]
        validation: {enabled: true, positive_threshold: 21}
        refinement: {strategy: seed_search, max_attempts: 3}
    """)
    for item in items:
        data = json.loads(json.dumps(item.to_dict()))
        back = RecipeItem.from_dict(data)
        assert back == item
        assert item_id(back.workflow, back.params) == item.id
    assert items[0].validation.to_dict() == {"enabled": True, "validator": "clip", "positive_threshold": 21.0,
                                             "delta_threshold": None, "allow_skip": False}
    assert items[0].refinement.to_dict() == {"strategy": "seed_search", "max_attempts": 3}


def test_two_thousand_items_unique(write_recipe, settings: Settings) -> None:
    # 10 prompts x 20 seeds x 5 steps x 2 cfg = 2,000 items (timing lives in bench/bench_expand.py).
    prompts = ", ".join(f"a scene number {n}" for n in range(10))
    items = load_expand(write_recipe, settings, f"""
        name: big
        workflow: tiny-sd15.json
        prompts: [{prompts}]
        seeds: {{count: 20}}
        matrix:
          axes:
            steps: [10, 15, 20, 25, 30]
            cfg: [5, 7]
    """)
    assert len(items) == 2000
    assert len({i.id for i in items}) == 2000
    assert [i.index for i in items] == list(range(2000))
    assert {(i.params.prompt, i.params.seed, i.params.steps, i.params.cfg) for i in items}.__len__() == 2000
    assert all(i.grid is None for i in items)  # four varying dimensions: no 2-D sheet


def test_categories_merge_precedence(write_recipe, settings: Settings, tmp_path: Path) -> None:
    cats = tmp_path / "cats"
    cats.mkdir()
    (cats / "dusk.yaml").write_text(
        "schema_version: 1.0.0\nid: dusk\ntype: setting\ndisplay_name: Dusk\n"
        "keywords: {primary: [dusk, twilight]}\n"
        "prompts: {positive_fragments: {required: [dusk light]}, negative_fragments: {required: [noon, Blurry]}}\n"
        "loras: {recommended: [{filename: dusk.safetensors, strength: 0.6}]}\n"
        "settings: {steps: {min: 10, max: 40, default: 33}, cfg: {min: 2, max: 9, default: 6.5}, sampler: heun}\n",
        encoding="utf-8")
    (cats / "ink.yaml").write_text(
        "schema_version: 1.0.0\nid: ink\ntype: style\ndisplay_name: Ink\nkeywords: {primary: [ink]}\n"
        "prompts: {positive_fragments: {required: [ink drawing]}}\n", encoding="utf-8")
    from comfy_gen.categories import load_registry

    registry = load_registry(settings, paths=[cats], strict=True)
    path = write_recipe("""
        name: cats
        workflow: tiny-sd15.json
        defaults: {steps: 20, cfg: 7, sampler: euler, negative_prompt: blurry, loras: ["mine.safetensors:0.9"]}
        prompts: [a harbour]
        seeds: [4]
        categories: ["@twilight"]
        matrix:
          axes:
            categories: [[], [ink]]
            cfg: [3]
    """)
    recipe = load_recipe(path, settings=settings, registry=registry)
    items = expand(recipe, settings=settings, registry=registry)
    plain, inked = items
    assert plain.categories == ["dusk"] and inked.categories == ["dusk", "ink"]
    p = plain.params
    assert p.steps == 33                 # categories beat defaults
    assert p.cfg == 3.0                  # matrix beats categories
    assert p.sampler == "heun"
    assert p.prompt is not None and p.prompt.startswith("a harbour") and "dusk light" in p.prompt
    assert "ink drawing" in (inked.params.prompt or "") and "ink drawing" not in p.prompt
    assert p.negative_prompt == "blurry, noon"   # recipe first, repeats dropped
    assert p.loras == (LoraSpec("mine.safetensors", 0.9, 0.9), LoraSpec("dusk.safetensors", 0.6, 0.6))
    assert plain.labels["categories"] == "none" and inked.labels["categories"] == "ink"
    # Same recipe, same registry: same ids.
    assert [i.id for i in expand(recipe, settings=settings, registry=registry)] == [plain.id, inked.id]


def test_item_params_are_generation_params(write_recipe, settings: Settings) -> None:
    (item,) = load_expand(write_recipe, settings, "name: t\nworkflow: other.json\nbackend: gpu2\nprompts: [x]\n")
    assert isinstance(item.params, GenerationParams)
    assert (item.workflow, item.backend) == ("other.json", "gpu2")


def test_recipe_summary_and_sections(write_recipe, settings: Settings) -> None:
    path = write_recipe("""
        name: summary
        description: A summary test.
        workflow: tiny-sd15.json
        prompts: ["a {red|green} door"]
        seeds: {count: 3}
        nightly: true
        policy_tier: general
        output: {dir: nightly/summary, prefix: sum, upload: true}
    """)
    recipe = load_recipe(path, settings=settings)
    data = json.loads(json.dumps(recipe.to_dict()))
    assert data["axes"] == {"prompt": 2, "seed": 3}
    assert data["nightly"] is True and data["policy_tier"] == "general" and data["backends"] == ["default"]
    assert data["output"] == {"dir": "nightly/summary", "prefix": "sum", "upload": True, "contact_sheet": False}
    import hashlib

    assert recipe.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert recipe.raw["name"] == "summary" and recipe.path == path.resolve()
    # Defaults for absent sections.
    bare = load_recipe(write_recipe("name: bare\nworkflow: tiny-sd15.json\nprompts: [x]\n", name="bare.yaml"),
                       settings=settings)
    assert (bare.output.dir, bare.output.prefix, bare.validation.enabled, bare.refinement.max_attempts) == \
        ("bare", "bare", False, 1)
