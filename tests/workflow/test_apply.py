"""apply_params writes every parameter to every node that takes it; get_params reads them back."""

from __future__ import annotations

import copy
import json
import random

import pytest

from comfy_gen.errors import UsageError, WorkflowError
from comfy_gen.params import SEED_MAX, GenerationParams
from comfy_gen.workflow import (
    apply_params, apply_params_with_report, get_params, set_checkpoint, set_input_image, set_prompt,
    set_sampler_params, set_seed, set_size,
)
from tests.workflow.conftest import SHIPPED_DIR, load_json, node


def _custom_graph():
    """Every sampler/noise/scheduler/latent family in one graph."""
    return {
        "1": node("UNETLoader", unet_name="u.safetensors", weight_dtype="default"),
        "2": node("DualCLIPLoader", clip_name1="a", clip_name2="b", type="flux"),
        "3": node("CLIPTextEncode", text="p", clip=("2", 0)),
        "4": node("CLIPTextEncode", text="n", clip=("2", 0)),
        "5": node("EmptySD3LatentImage", width=1024, height=1024, batch_size=1),
        "6": node("EmptyHunyuanLatentVideo", width=848, height=480, length=25, batch_size=1),
        "10": node("KSampler", seed=0, steps=20, cfg=7.0, sampler_name="euler", scheduler="normal", denoise=1.0,
                   model=("1", 0), positive=("3", 0), negative=("4", 0), latent_image=("5", 0)),
        "11": node("KSamplerAdvanced", add_noise="enable", noise_seed=0, steps=20, cfg=7.0, sampler_name="euler",
                   scheduler="normal", start_at_step=10, end_at_step=10000, return_with_leftover_noise="disable",
                   model=("1", 0), positive=("3", 0), negative=("4", 0), latent_image=("10", 0)),
        "12": node("RandomNoise", noise_seed=0),
        "13": node("SamplerCustom", add_noise=True, noise_seed=0, cfg=7.0, model=("1", 0), positive=("3", 0),
                   negative=("4", 0), sampler=("14", 0), sigmas=("15", 0), latent_image=("6", 0)),
        "14": node("KSamplerSelect", sampler_name="euler"),
        "15": node("BasicScheduler", model=("1", 0), scheduler="simple", steps=20, denoise=1.0),
        "16": node("CFGGuider", model=("1", 0), positive=("3", 0), negative=("4", 0), cfg=7.0),
    }


def test_seed_written_to_every_sampler_and_noise_node():
    out = apply_params(_custom_graph(), GenerationParams(seed=99))
    assert out["10"]["inputs"]["seed"] == 99
    assert [out[i]["inputs"]["noise_seed"] for i in ("11", "12", "13")] == [99, 99, 99]


@pytest.mark.parametrize("seed", [None, -1], ids=["none", "minus-one"])
def test_missing_seed_is_random_never_the_baked_one(seed):
    wf = load_json(SHIPPED_DIR / "tiny-sd15.json")
    assert wf["5"]["inputs"]["seed"] == 0
    seeds = set()
    for _ in range(5):
        out, report = apply_params_with_report(wf, GenerationParams(seed=seed))
        assert 0 <= report.seed <= SEED_MAX and out["5"]["inputs"]["seed"] == report.seed
        seeds.add(report.seed)
    assert len(seeds) > 1
    a = apply_params(wf, GenerationParams(seed=seed), rng=random.Random(3))
    b = apply_params(wf, GenerationParams(seed=seed), rng=random.Random(3))
    assert a == b  # an rng makes it reproducible


def test_sampler_params_reach_every_family():
    out, report = apply_params_with_report(_custom_graph(), GenerationParams(
        seed=1, steps=8, cfg=3.5, sampler="dpmpp_2m", scheduler="karras", denoise=0.6))
    assert [out[i]["inputs"]["steps"] for i in ("10", "11", "15")] == [8, 8, 8]
    assert [out[i]["inputs"]["cfg"] for i in ("10", "11", "13", "16")] == [3.5] * 4
    assert [out[i]["inputs"]["sampler_name"] for i in ("10", "11", "14")] == ["dpmpp_2m"] * 3
    assert [out[i]["inputs"]["scheduler"] for i in ("10", "11", "15")] == ["karras"] * 3
    assert out["10"]["inputs"]["denoise"] == 0.6 and out["15"]["inputs"]["denoise"] == 0.6
    # a base/refiner split stays proportional; "to the end" (10000) is left alone
    assert (out["11"]["inputs"]["start_at_step"], out["11"]["inputs"]["end_at_step"]) == (4, 10000)
    assert report.touched()["15"] == ["steps", "scheduler", "denoise"]
    json.dumps(report.to_dict())  # JSON-safe for --dry-run --json


def test_size_on_sd3_and_video_latents():
    out = apply_params(_custom_graph(), GenerationParams(seed=1, width=640, height=384, batch_size=2))
    for nid in ("5", "6"):
        assert (out[nid]["inputs"]["width"], out[nid]["inputs"]["height"], out[nid]["inputs"]["batch_size"]) \
            == (640, 384, 2)
    assert out["6"]["inputs"]["length"] == 25


def test_checkpoint_goes_to_unet_loader_in_unet_graphs():
    out = apply_params(load_json(SHIPPED_DIR / "flux-dev.json"), GenerationParams(seed=1, checkpoint="f2.sft"))
    assert out["1"]["inputs"]["unet_name"] == "f2.sft"
    out = apply_params(load_json(SHIPPED_DIR / "sd15-txt2img.json"), GenerationParams(seed=1, checkpoint="c.ckpt"))
    assert out["1"]["inputs"]["ckpt_name"] == "c.ckpt"


def test_vae_written_to_existing_loader():
    out = apply_params(load_json(SHIPPED_DIR / "flux-dev.json"), GenerationParams(seed=1, vae="v2.safetensors"))
    assert out["3"]["inputs"]["vae_name"] == "v2.safetensors" and len(out) == 10


def test_input_image_needs_a_load_image_node():
    out = apply_params(load_json(SHIPPED_DIR / "sd15-img2img.json"), GenerationParams(seed=1, input_image="in.png"))
    assert out["4"]["inputs"]["image"] == "in.png"
    with pytest.raises(WorkflowError, match="no LoadImage"):
        apply_params(load_json(SHIPPED_DIR / "sd15-txt2img.json"), GenerationParams(input_image="in.png"))


def test_extra_inputs(object_info):
    wf = load_json(SHIPPED_DIR / "sd15-txt2img.json")
    out = apply_params(wf, GenerationParams(seed=1, extra=(("7.filename_prefix", "mine"),)))
    assert out["7"]["inputs"]["filename_prefix"] == "mine"
    with pytest.raises(UsageError, match="no node '99'"):
        apply_params(wf, GenerationParams(extra=(("99.text", "x"),)))
    with pytest.raises(UsageError, match="has no input 'nope'"):
        apply_params(wf, GenerationParams(extra=(("7.nope", "x"),)))
    with pytest.raises(UsageError, match="NODE_ID.INPUT_NAME"):
        apply_params(wf, GenerationParams(extra=(("7", "x"),)))
    # an optional input absent from the node is accepted when object_info declares it
    out = apply_params(wf, GenerationParams(seed=1, extra=(("1.ckpt_name", "x.safetensors"),)), object_info=object_info)
    assert out["1"]["inputs"]["ckpt_name"] == "x.safetensors"


def test_unused_params_warn_and_input_is_not_mutated():
    wf = load_json(SHIPPED_DIR / "sd15-img2img.json")
    before = copy.deepcopy(wf)
    _, report = apply_params_with_report(wf, GenerationParams(seed=1, width=512, input_image="a.png"))
    assert wf == before
    assert any("empty-latent" in w for w in report.warnings)


def test_get_params_reads_the_graph_values():
    flux = get_params(load_json(SHIPPED_DIR / "flux-dev.json"))
    assert (flux.steps, flux.cfg, flux.sampler, flux.scheduler) == (20, 1.0, "euler", "simple")
    assert (flux.width, flux.height, flux.checkpoint, flux.vae) == (1024, 1024, "flux1-dev-fp8.safetensors",
                                                                  "ae.safetensors")
    assert flux.negative_prompt == "" and flux.prompt
    tiny = get_params(load_json(SHIPPED_DIR / "tiny-sd15.json"))
    assert (tiny.steps, tiny.width, tiny.seed, tiny.checkpoint) == (3, 64, 0, "tiny_sd15.safetensors")
    img = get_params(load_json(SHIPPED_DIR / "sd15-img2img.json"))
    assert (img.denoise, img.input_image, img.width) == (0.7, "example.png", None)


def test_round_trip_apply_then_get():
    params = GenerationParams(prompt="a kite", negative_prompt="fog", seed=7, steps=9, cfg=4.5,
                              sampler="heun", scheduler="karras", denoise=0.8, width=320, height=256, batch_size=3,
                              checkpoint="c.safetensors")
    got = get_params(apply_params(load_json(SHIPPED_DIR / "sd15-txt2img.json"), params))
    assert got.replace(vae=None) == params


def test_set_helpers_are_pure():
    wf = load_json(SHIPPED_DIR / "sd15-txt2img.json")
    before = copy.deepcopy(wf)
    assert set_prompt(wf, "x", "y")["2"]["inputs"]["text"] == "x"
    assert set_seed(wf, 5)["5"]["inputs"]["seed"] == 5
    assert set_sampler_params(wf, steps=4)["5"]["inputs"]["steps"] == 4
    assert set_size(wf, 256, 128)["4"]["inputs"]["height"] == 128
    assert set_checkpoint(wf, "z")["1"]["inputs"]["ckpt_name"] == "z"
    with pytest.raises(WorkflowError):
        set_input_image(wf, "a.png")
    assert wf == before
