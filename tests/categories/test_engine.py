"""Composition rules: validation, prompts, LoRA merge/avoid/conditions, settings, workflow, output."""

from __future__ import annotations

import pytest

from comfy_gen.categories import CategoryRegistry, compose, compose_ids
from comfy_gen.errors import CompositionError
from comfy_gen.params import GenerationParams, LoraSpec
from tests.categories.conftest import make_category

DT, FG, TINY = "detail_tweaker.safetensors", "film_grain.safetensors", "tiny_sd15_lora.safetensors"


def lora(filename: str, strength: float = 0.8, **extra) -> dict:
    return {"filename": filename, "strength": strength, **extra}


# --- validation -----------------------------------------------------------------


def test_conflict_declared_on_one_side_rejects_either_order(build_registry) -> None:
    reg = build_registry([make_category("day", "setting", composition={"conflicts_with": ["dark"]}),
                          make_category("dark", "setting")])
    for ids in (["day", "dark"], ["dark", "day"]):
        with pytest.raises(CompositionError, match=r'conflicts with'):
            compose_ids(ids, registry=reg)


def test_missing_requirement_and_max_per_type_listed_together(build_registry) -> None:
    reg = build_registry([
        make_category("needs", "modifier", composition={"requires": ["base"]}),
        make_category("base", "subject"),
        make_category("solo", "style", composition={"max_per_type": 1}),
        make_category("other", "style"),
    ])
    with pytest.raises(CompositionError) as info:
        compose_ids(["needs", "solo", "other"], registry=reg)
    msg = info.value.message
    assert "\"needs\" requires 'base'" in msg
    assert '"solo" allows at most 1 style category, got 2 (solo, other)' in msg
    assert compose_ids(["needs", "base", "solo"], registry=reg).recipe["categories"] == ["needs", "base", "solo"]


def test_nothing_matched_is_an_error(shipped: CategoryRegistry) -> None:
    with pytest.raises(CompositionError, match="No categories matched"):
        compose("zzz qqq", registry=shipped)


# --- prompts --------------------------------------------------------------------


def test_prompt_order_user_text_triggers_required_then_optional(build_registry) -> None:
    reg = build_registry([
        make_category("low", "setting", composition={"priority": 10},
                      prompts={"positive_fragments": {"required": ["low req"], "optional": ["low opt"]},
                               "negative_fragments": {"required": ["bad low"], "optional": ["RED CAR"]}}),
        make_category("high", "subject", composition={"priority": 90},
                      loras={"recommended": [lora(FG, trigger_words=["grainy"])]},
                      prompts={"positive_fragments": {"required": ["High Req", "red car"], "optional": ["high opt"]},
                               "negative_fragments": {"required": ["bad high"], "optional": ["Bad Low"]}}),
    ])
    comp = compose_ids(["low", "high"], registry=reg, user_text="red  car, at dawn")
    assert comp.recipe["positive_prompt"] == "red car, at dawn, grainy, High Req, low req, high opt, low opt"
    assert comp.recipe["negative_prompt"] == "bad high, bad low"
    assert any("'RED CAR' dropped" in w for w in comp.explanation["warnings"])
    assert comp.explanation["remaining_prompt"] == "red car, at dawn"


# --- LoRAs ----------------------------------------------------------------------


def test_same_lora_merged_at_highest_strength_with_trigger_union(build_registry) -> None:
    reg = build_registry([
        make_category("a", "subject", loras={"recommended": [lora(DT, 0.4, trigger_words=["x"])]}),
        make_category("b", "style", loras={"required": [lora(DT, 0.6, trigger_words=["y", "x"])]}),
    ])
    comp = compose_ids(["a", "b"], registry=reg)
    assert comp.recipe["loras"] == [{"filename": DT, "strength": 0.6, "trigger_words": ["x", "y"]}]
    assert comp.explanation["warnings"] == [f"LoRA {DT!r} requested by a, b; using the highest strength 0.6"]


def test_tag_weight_scales_lora_strength_and_is_capped(build_registry) -> None:
    reg = build_registry([make_category("grain", "style", loras={"recommended": [lora(FG, 0.5)]})])
    assert compose("@grain:1.5", registry=reg).recipe["loras"][0]["strength"] == 0.75
    assert compose("@grain:0", registry=reg).recipe["loras"][0]["strength"] == 0.0
    assert compose_ids(["grain"], registry=reg, weights={"grain": 2.0}).recipe["loras"][0]["strength"] == 1.0
    reg = build_registry([make_category("strong", "style", loras={"recommended": [lora(FG, 1.5)]})])
    assert compose("@strong:2", registry=reg).recipe["loras"][0]["strength"] == 2.0


def test_avoided_lora_is_dropped_with_a_warning(build_registry) -> None:
    reg = build_registry([
        make_category("wants", "subject", loras={"required": [lora(DT)], "recommended": [lora(FG)]}),
        make_category("hates", "style", loras={"avoid": [DT]}),
    ])
    comp = compose_ids(["wants", "hates"], registry=reg)
    assert [x["filename"] for x in comp.recipe["loras"]] == [FG]
    assert comp.explanation["warnings"] == [f"LoRA {DT!r} from 'wants' dropped: avoided by hates"]


def test_lora_conditions(build_registry) -> None:
    reg = build_registry([
        make_category("cond", "style", workflows={"preferred": ["tiny-sd15.json"]}, loras={"recommended": [
            lora(TINY, condition="workflow:tiny-sd15.json"),
            lora(DT, condition="with:extra, text:old town"),
            lora(FG, condition="without:extra"),
        ]}),
        make_category("extra", "modifier"),
    ])
    names = lambda comp: [x["filename"] for x in comp.recipe["loras"]]  # noqa: E731
    assert names(compose_ids(["cond"], registry=reg)) == [TINY, FG]
    assert names(compose_ids(["cond", "extra"], registry=reg, user_text="an old town")) == [TINY, DT]
    skipped = [s for s in compose_ids(["cond", "extra"], registry=reg).explanation["steps"]
               if s["action"] == "skip_lora"]
    assert [s["detail"] for s in skipped] == [f"{DT}: condition 'text:old town' not met",
                                              f"{FG}: condition 'without:extra' not met"]


# --- settings -------------------------------------------------------------------


def test_highest_priority_setting_wins_and_ranges_clamp(build_registry) -> None:
    reg = build_registry([
        make_category("hi", "subject", composition={"priority": 80},
                      settings={"steps": {"min": 20, "max": 60, "default": 50}, "sampler": "euler",
                                "size": {"width": 768, "height": 1152, "aspect_ratio": "2:3"}}),
        make_category("lo", "style", composition={"priority": 20},
                      settings={"steps": {"min": 10, "max": 40, "default": 15}, "cfg": {"min": 4, "max": 6},
                                "sampler": "dpmpp_2m", "scheduler": "karras",
                                "size": {"width": 512, "height": 512}}),
    ])
    r = compose_ids(["lo", "hi"], registry=reg).recipe
    assert r["steps"] == 40          # hi's default 50 clamped into [20, 40]
    assert r["cfg"] == 5.0           # midpoint of the only range
    assert (r["sampler"], r["scheduler"]) == ("euler", "karras")
    assert (r["width"], r["height"], r["aspect_ratio"]) == (768, 1152, "2:3")
    assert r["denoise"] is None


def test_disjoint_ranges_warn_and_keep_winner(build_registry) -> None:
    reg = build_registry([
        make_category("a", "subject", composition={"priority": 60}, settings={"steps": {"min": 10, "max": 20,
                                                                                       "default": 15}}),
        make_category("b", "style", settings={"steps": {"min": 40, "max": 60, "default": 50}}),
    ])
    comp = compose_ids(["a", "b"], registry=reg)
    assert comp.recipe["steps"] == 15
    assert comp.explanation["warnings"] == ["steps ranges do not intersect (a: 10-20, b: 40-60); keeping 15 from 'a'"]


def test_no_settings_keep_the_workflow_values_and_aspect_only_size(build_registry) -> None:
    reg = build_registry([make_category("plain"), make_category("wide", "modifier",
                                                                 settings={"size": {"aspect_ratio": "16:9"}})])
    r = compose_ids(["plain"], registry=reg).recipe
    assert [r[k] for k in ("steps", "cfg", "width", "height", "sampler")] == [None] * 5
    r = compose_ids(["plain", "wide"], registry=reg).recipe
    assert (r["width"], r["height"], r["aspect_ratio"]) == (1344, 768, "16:9")


# --- workflow -------------------------------------------------------------------


def test_workflow_preference_by_priority(build_registry) -> None:
    reg = build_registry([
        make_category("lo", "style", composition={"priority": 10}, workflows={"preferred": ["sd15-txt2img.json"]}),
        make_category("hi", "subject", composition={"priority": 90}, workflows={"preferred": ["sdxl-txt2img.json"]}),
    ])
    assert compose_ids(["lo", "hi"], registry=reg).workflow == "sdxl-txt2img.json"


def test_workflow_filtered_by_excluded_and_capabilities(build_registry) -> None:
    reg = build_registry([
        make_category("pref", "subject", composition={"priority": 90},
                      workflows={"preferred": ["sd15-txt2img.json", "sdxl-txt2img.json"]}),
        make_category("text", "modifier", workflows={"required_capabilities": ["text_rendering"]}),
        make_category("nosdxl", "style", workflows={"excluded": ["sdxl-txt2img.json"]}),
        make_category("noflux", "setting", workflows={"excluded": ["flux-dev.json"]}),
    ])
    assert compose_ids(["pref", "nosdxl"], registry=reg).workflow == "sd15-txt2img.json"
    comp = compose_ids(["pref", "text"], registry=reg)
    assert comp.workflow == "flux-dev.json"
    skipped = [s["detail"] for s in comp.explanation["steps"] if s["action"] == "skip_workflow"]
    assert skipped == ["sd15-txt2img.json: lacks text_rendering", "sdxl-txt2img.json: lacks text_rendering"]
    with pytest.raises(CompositionError, match="No workflow offers the required capabilities text_rendering"):
        compose_ids(["text", "noflux"], registry=reg)


def test_workflow_default_and_fallback(build_registry) -> None:
    reg = build_registry([make_category("plain"), make_category("noflux", "style",
                                                                workflows={"excluded": ["flux-dev.json"]})])
    assert compose_ids(["plain"], registry=reg).workflow == "flux-dev.json"
    assert compose_ids(["plain", "noflux"], registry=reg).workflow == "sdxl-txt2img.json"


def test_unknown_preferred_workflow_only_without_required_capabilities(build_registry) -> None:
    reg = build_registry([
        make_category("mine", "subject", workflows={"preferred": ["my-own.json"]}),
        make_category("hires", "modifier", workflows={"required_capabilities": ["high_res"]}),
    ])
    assert compose_ids(["mine"], registry=reg).workflow == "my-own.json"
    assert compose_ids(["mine", "hires"], registry=reg).workflow == "flux-dev.json"


# --- output ---------------------------------------------------------------------


def test_recipe_shape_params_and_hash(shipped: CategoryRegistry) -> None:
    comp = compose("a vintage car @golden_hour", registry=shipped)
    assert set(comp.recipe) == {"positive_prompt", "negative_prompt", "loras", "steps", "cfg", "width", "height",
                                "aspect_ratio", "sampler", "scheduler", "denoise", "workflow", "checkpoint",
                                "categories"}
    params = comp.to_params()
    assert isinstance(params, GenerationParams)
    assert params.prompt == comp.recipe["positive_prompt"] and params.width == comp.recipe["width"]
    assert params.loras == (LoraSpec(name="detail_tweaker.safetensors", strength_model=0.5),)
    assert comp.recipe_hash.startswith("sha256:") and len(comp.recipe_hash) == 23
    again = compose("a vintage car @golden_hour", registry=shipped)
    assert again.recipe_hash == comp.recipe_hash
    assert compose("a vintage car @golden_hour:0.5", registry=shipped).recipe_hash == comp.recipe_hash  # no LoRA
    assert compose("a classic car @golden_hour", registry=shipped).recipe_hash != comp.recipe_hash
    data = comp.to_dict()
    assert set(data) == {"recipe", "explanation", "recipe_hash", "dry_run"}
    assert set(data["explanation"]) >= {"summary", "explicit_tags", "inferred_categories", "remaining_prompt",
                                        "final_categories", "steps", "warnings", "suggestions"}
    assert all(set(s) == {"phase", "action", "detail", "source"} for s in data["explanation"]["steps"])


def test_compose_ids_unknown_id_suggests(shipped: CategoryRegistry) -> None:
    from comfy_gen.categories import UnknownCategory
    from comfy_gen.errors import ConfigError

    with pytest.raises(UnknownCategory) as info:
        compose_ids(["portriat"], registry=shipped)
    assert isinstance(info.value, ConfigError) and info.value.suggestions[0] == "portrait"
