"""preflight finds, client-side, every problem the server would reject with 400."""

from __future__ import annotations

import copy

import pytest

from comfy_gen.errors import PreflightError
from comfy_gen.workflow import (
    Problem, check_workflow, find_model_fallbacks, preflight, referenced_models, validate_workflow_models,
)
from tests.workflow.conftest import RECORDED_DIR, SHIPPED_DIR, load_json, node

#: recorded invalid workflow -> (node_id, input_name, kind) the server reported
INVALID = {
    "invalid_bad_combo_value": ("3", "sampler_name", "invalid_choice"),
    "invalid_bad_node_class": ("12", None, "unknown_node"),
    "invalid_link_to_missing_node": ("8", "samples", "broken_link"),
    "invalid_missing_model": ("4", "ckpt_name", "missing_model"),
    "invalid_missing_required_input": ("3", "seed", "missing_input"),
    "invalid_no_output_node": (None, None, "no_output"),
    "invalid_value_below_min": ("3", "steps", "out_of_range"),
    "invalid_wrong_input_type_value": ("3", "steps", "invalid_value"),
    "invalid_wrong_link_type": ("3", "positive", "link_type_mismatch"),
    "partially_invalid_two_outputs": ("20", "steps", "out_of_range"),
}
VALID = sorted(p.stem for p in RECORDED_DIR.glob("*.json") if p.stem not in INVALID)


def test_every_invalid_recording_is_covered():
    assert sorted(p.stem for p in RECORDED_DIR.glob("*invalid*.json")) == sorted(INVALID)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_recorded_invalid_workflow_is_caught(name, object_info):
    problems = preflight(load_json(RECORDED_DIR / f"{name}.json"), object_info)
    assert [(p.node_id, p.input_name, p.kind) for p in problems] == [INVALID[name]]


@pytest.mark.parametrize("name", VALID)
def test_recorded_valid_workflow_passes(name, object_info):
    # runtime_error_* are valid client-side: the server only fails them while running
    assert preflight(load_json(RECORDED_DIR / f"{name}.json"), object_info) == []


@pytest.mark.parametrize("path", sorted(SHIPPED_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_shipped_workflows_are_valid_for_a_server_with_their_models(path, object_info):
    from comfy_gen.emulator.catalog import _custom_catalog

    wf = load_json(path)
    # the recorded server has no custom nodes; a server for the VHS workflow has VideoHelperSuite
    object_info = {**object_info, **copy.deepcopy(_custom_catalog())}
    problems = preflight(wf, object_info)
    # the recorded server only has the tiny models: everything else must be a missing model file
    assert all(p.kind == "missing_model" for p in problems), problems
    info = copy.deepcopy(object_info)
    for _nid, cls, name, _folders, value in referenced_models(wf):
        info[cls]["input"]["required"][name][0].append(value)
    assert preflight(wf, info) == []
    if path.stem == "tiny-sd15":
        assert problems == []


def test_all_problems_at_once_with_suggestions(object_info):
    wf = load_json(RECORDED_DIR / "txt2img_ckpt.json")
    wf["4"]["inputs"]["ckpt_name"] = "TINY_SD15.ckpt"
    wf["3"]["inputs"]["cfg"] = 500.0
    wf["3"]["inputs"]["latent_image"] = ["5", 3]
    wf["12"] = node("KSampeler", seed=1)
    with pytest.raises(PreflightError) as info:
        check_workflow(wf, object_info)
    problems = info.value.problems
    assert [(p.node_id, p.kind) for p in problems] == [
        ("3", "out_of_range"), ("3", "bad_output_index"), ("4", "missing_model"), ("12", "unknown_node")]
    assert problems[2].suggestions == ("tiny_sd15.safetensors",)
    assert "KSampler" in problems[3].suggestions
    text = str(info.value)
    assert "above the maximum 100.0" in text and "did you mean: tiny_sd15.safetensors" in text
    assert info.value.to_dict()["problems"][2]["kind"] == "missing_model"
    assert "comfy-gen models" in (info.value.hint or "")


def test_v3_combo_and_empty_model_lists(object_info):
    wf = {
        "1": node("UpscaleModelLoader", model_name="4x-sharp.pth"),
        "2": node("LoadImage", image="uploaded_later.png"),
        "3": node("ImageUpscaleWithModel", upscale_model=("1", 0), image=("2", 0)),
        "4": node("SaveImage", images=("3", 0), filename_prefix="up"),
    }
    problems = preflight(wf, object_info)
    # V3 COMBO form, no upscale models installed; LoadImage files are the server's business
    assert [(p.node_id, p.kind, p.suggestions) for p in problems] == [("1", "missing_model", ())]
    assert "none installed" in problems[0].message


def test_check_workflow_passes_silently(object_info):
    assert check_workflow(load_json(SHIPPED_DIR / "tiny-sd15.json"), object_info) is None


def test_problem_is_frozen_and_serialisable():
    p = Problem("3", "KSampler", "steps", "out_of_range", "0 is below the minimum 1")
    assert str(p) == "node 3 (KSampler) input 'steps': 0 is below the minimum 1"
    assert p.to_dict()["suggestions"] == []
    with pytest.raises(AttributeError):
        p.kind = "x"  # type: ignore[misc]


@pytest.mark.parametrize(("requested", "candidates", "expected"), [
    ("v1-5-pruned-emaonly.safetensors", ["v1-5-pruned-emaonly-fp16.safetensors", "sdxl.safetensors",
                                         "v1-5-inpainting.safetensors"],
     ["v1-5-pruned-emaonly-fp16.safetensors", "v1-5-inpainting.safetensors"]),
    ("SD_XL_base.safetensors", ["sd_xl_base_1.0.safetensors", "sd_xl_refiner_1.0.safetensors", "flux.sft"],
     ["sd_xl_base_1.0.safetensors", "sd_xl_refiner_1.0.safetensors"]),
    ("models/realistic.ckpt", ["Realistic.safetensors"], ["Realistic.safetensors"]),
    ("unrelated.safetensors", ["flux.sft"], []),
    ("", ["a.safetensors"], []),
], ids=["token-and-substring", "case-and-underscore", "either-way-substring", "none", "empty"])
def test_find_model_fallbacks(requested, candidates, expected):
    assert find_model_fallbacks(requested, candidates) == expected


def test_find_model_fallbacks_limit():
    names = [f"detail_v{i}.safetensors" for i in range(10)]
    assert len(find_model_fallbacks("detail.safetensors", names)) == 5
    assert find_model_fallbacks("detail.safetensors", names, limit=2) == names[:2]


def test_validate_workflow_models_seed_signature():
    wf = load_json(SHIPPED_DIR / "flux-dev.json")
    available = {"checkpoints": ["x.safetensors"], "vae": ["ae.safetensors"],
                 "diffusion_models": ["flux1-dev-fp8-e4m3.safetensors"]}
    ok, missing, suggestions = validate_workflow_models(wf, available)
    assert not ok
    assert missing == [("diffusion_models", "flux1-dev-fp8.safetensors")]  # text_encoders not listed: not checked
    assert suggestions == {"flux1-dev-fp8.safetensors": ["flux1-dev-fp8-e4m3.safetensors"]}
    ok, missing, _ = validate_workflow_models(load_json(SHIPPED_DIR / "tiny-sd15.json"),
                                              {"checkpoints": ["tiny_sd15.safetensors"], "loras": []})
    assert ok and missing == []
