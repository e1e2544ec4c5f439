"""The prompt and LoRA catalogs: loading, schema errors, and the original's scoring rules."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from comfy_gen.catalogs import (LoraCatalog, LoraEntry, ModelScenario, load_lora_catalog, load_prompt_catalog,
                                suggest_loras, suggest_model)
from comfy_gen.config import Settings
from comfy_gen.errors import ProblemListError, UsageError

SD15 = "v1-5-pruned-emaonly.safetensors"


def _catalog(*loras: LoraEntry, **scenarios: ModelScenario) -> LoraCatalog:
    return LoraCatalog(loras=loras, model_suggestions=scenarios, source="test")


def test_shipped_catalogs_load_and_are_neutral_samples() -> None:
    loras, prompts = load_lora_catalog(), load_prompt_catalog()
    assert loras.get("detail_tweaker.safetensors") is not None
    assert {"simple_image", "text_to_video", "image_to_video"} <= set(loras.model_suggestions)
    assert {p.category for p in prompts.saved_prompts.values()} == {
        "landscape", "product", "architecture", "animal", "portrait"}


def test_scoring_tags_use_cases_and_acceleration() -> None:
    catalog = _catalog(
        LoraEntry("detail.safetensors", tags=("detail", "sharp"), use_cases=("product photo",)),
        LoraEntry("film.safetensors", tags=("film",), compatible_with=("sd15", "v1-5")),
        LoraEntry("xl-only.safetensors", tags=("detail",), compatible_with=("sdxl",)),
        LoraEntry("fast.safetensors", tags=("acceleration",), compatible_with=("wan",), recommended_strength=0.9),
    )
    got = suggest_loras("A sharp product photo, fine DETAIL, film look", SD15, 5, catalog)
    assert [(s.name, s.score) for s in got] == [("detail.safetensors", 7), ("film.safetensors", 2)]
    assert got[0].suggested_strength == 1.0 and "use case 'product photo'" in got[0].reason
    # +5 for an acceleration tag on a Wan model; incompatible LoRAs are skipped, zero scores dropped
    wan = suggest_loras("a fox in snow", "wan2.2_t2v_high_noise.safetensors", 3, catalog)
    assert [(s.name, s.score, s.suggested_strength) for s in wan] == [("fast.safetensors", 5, 0.9)]
    assert suggest_loras("detail", SD15, 1, catalog)[0].name == "detail.safetensors"  # top n
    assert suggest_loras("detail", SD15, 0, catalog) == []
    # compatible_with empty = any model; ties keep catalog order
    tie = _catalog(LoraEntry("b.safetensors", tags=("sky",)), LoraEntry("a.safetensors", tags=("sky",)))
    assert [s.name for s in suggest_loras("blue sky", "anything", 3, tie)] == ["b.safetensors", "a.safetensors"]


@pytest.mark.parametrize(("task", "model", "source"), [
    pytest.param("portrait", SD15, "table", id="portrait"),
    pytest.param("landscape", SD15, "table", id="landscape"),
    pytest.param("anime", SD15, "table", id="anime"),
    pytest.param("video", "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", "table", id="video"),
    pytest.param("image-to-video", "ltx-video-2b-v0.9.5.safetensors", "table", id="i2v"),
    pytest.param("something else", SD15, "table", id="default"),
    pytest.param("studio", "sdxl.safetensors", "catalog", id="catalog-scenario"),
])
def test_suggest_model_catalog_first_then_table(task: str, model: str, source: str) -> None:
    catalog = _catalog(studio=ModelScenario("studio", "sdxl.safetensors", workflow="sdxl-txt2img",
                                            default_loras=("detail.safetensors",)))
    got = suggest_model(task, catalog)
    assert (got.recommended, got.source) == (model, source)
    assert got.to_dict()["recommended"] == model


def test_suggest_model_finds_shipped_scenarios_by_dashed_name() -> None:
    got = suggest_model("text-to-video")
    assert got.source == "catalog" and got.workflow == "wan22-t2v-vhs"
    assert got.default_loras == ("wan21_lightx2v_4step_lora.safetensors",)


def test_lora_preset_strengths() -> None:
    catalog = _catalog(LoraEntry("a.safetensors", recommended_strength=0.4), LoraEntry("b.safetensors"),
                       set=ModelScenario("set", "m", default_loras=("a.safetensors", "b.safetensors",
                                                                    "c.safetensors:0.8", "odd:name")))
    specs = catalog.preset_loras("set")
    assert [(s.name, s.strength_model) for s in specs] == [
        ("a.safetensors", 0.4), ("b.safetensors", 1.0), ("c.safetensors", 0.8), ("odd:name", 1.0)]
    with pytest.raises(UsageError, match="Unknown LoRA preset 'nope'.*available: set"):
        catalog.preset_loras("nope")


def test_prompt_preset_negative_is_prepended() -> None:
    preset = load_prompt_catalog().get("red_fox")
    assert preset.negative_for("blurry") == "cartoon, extra legs, blurry"
    assert preset.negative_for(None) == "cartoon, extra legs"
    with pytest.raises(UsageError, match="Unknown prompt preset 'nope'"):
        load_prompt_catalog().get("nope")


def test_user_catalog_replaces_the_sample(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"saved_prompts": {"barn": {"positive": "a red barn in a field"}}}))
    catalog = load_prompt_catalog(Settings(prompt_catalog_file=path).prompt_catalog_file)
    assert list(catalog.saved_prompts) == ["barn"] and catalog.source == str(path)


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("saved_prompts:\n  x:\n    negative: n\n", ["mine.yaml:2: $.saved_prompts.x: 'positive' is a required property"],
                 id="missing-field"),
    pytest.param("saved_prompts:\n  x:\n    positive: p\n    colour: red\n",
                 ["mine.yaml:4: $.saved_prompts.x.colour: unknown property (allowed: category,"], id="unknown-key"),
    pytest.param("saved_prompts:\n  x: {positive: p}\n  x: {positive: q}\n",
                 ["mine.yaml:3: $.saved_prompts.x: duplicate key"], id="duplicate"),
    pytest.param("saved_prompts: [", ["mine.yaml:1:"], id="yaml-syntax"),
    pytest.param("a: &a [*a]\n", ["mine.yaml:1:"], id="alias-cycle"),
])
def test_bad_prompt_catalog_names_file_line_and_problem(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ProblemListError) as info:
        load_prompt_catalog(path)
    joined = "\n".join(str(p) for p in info.value.problems)
    for fragment in expected:
        assert fragment.replace("mine.yaml", str(path)) in joined, joined


def test_missing_or_bad_lora_catalog_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ProblemListError, match="Cannot read the LoRA catalog"):
        load_lora_catalog(tmp_path / "absent.yaml")
    bad = tmp_path / "l.yaml"
    bad.write_text("loras:\n  - filename: a.safetensors\n    recommended_strength: -1\n")
    with pytest.raises(ProblemListError) as info:
        load_lora_catalog(bad)
    assert f"{bad}:3: $.loras[0].recommended_strength" in info.value.problems[0]


def test_every_suggested_workflow_ships() -> None:
    from pathlib import Path

    from comfy_gen.catalogs import lora_catalog_for
    from comfy_gen.catalogs.suggest import DEFAULT_TASK, MODEL_TABLE
    from comfy_gen.config import get_settings

    shipped = {p.stem for p in (Path(__file__).resolve().parents[2] / "workflows").glob("*.json")}
    named = {entry[0][1] for entry in MODEL_TABLE.values()} | {DEFAULT_TASK[0][1]}
    named |= {s.workflow for s in lora_catalog_for(get_settings()).model_suggestions.values() if s.workflow}
    assert named <= shipped, named - shipped
