"""Prompt nodes are found through sampler links, for every sampler type."""

from __future__ import annotations

import logging

from comfy_gen.params import GenerationParams
from comfy_gen.workflow import apply_params, apply_params_with_report, find_prompt_nodes, get_params
from tests.workflow.conftest import node


def _base(**extra):
    """Checkpoint + two encoders; callers add the sampler part."""
    wf = {
        "1": node("CheckpointLoaderSimple", ckpt_name="m.safetensors"),
        "2": node("CLIPTextEncode", text="pos", clip=("1", 1)),
        "3": node("CLIPTextEncode", text="neg", clip=("1", 1)),
        "4": node("EmptyLatentImage", width=512, height=512, batch_size=1),
    }
    wf.update(extra)
    return wf


def test_ksampler_links_win_over_misleading_titles():
    wf = _base()
    wf["2"]["_meta"] = {"title": "Negative Prompt"}  # wired to positive despite its title
    wf["3"]["_meta"] = {"title": "Positive Prompt"}
    wf["5"] = node("KSampler", seed=0, steps=20, cfg=7.0, sampler_name="euler", scheduler="normal", denoise=1.0,
                   model=("1", 0), positive=("2", 0), negative=("3", 0), latent_image=("4", 0))
    found = find_prompt_nodes(wf)
    assert (found.positive, found.negative, found.by_links) == (["2"], ["3"], True)
    out = apply_params(wf, GenerationParams(prompt="a cat", negative_prompt="dark", seed=1))
    assert out["2"]["inputs"]["text"] == "a cat" and out["3"]["inputs"]["text"] == "dark"


def test_ksampler_advanced():
    wf = _base(**{"5": node("KSamplerAdvanced", add_noise="enable", noise_seed=0, steps=20, cfg=7.0,
                            sampler_name="euler", scheduler="normal", start_at_step=0, end_at_step=10000,
                            return_with_leftover_noise="disable", model=("1", 0), positive=("3", 0),
                            negative=("2", 0), latent_image=("4", 0))})
    found = find_prompt_nodes(wf)
    assert (found.positive, found.negative) == (["3"], ["2"])


def test_sampler_custom_through_flux_guidance_and_combine():
    wf = _base()
    wf["6"] = node("CLIPTextEncode", text="style", clip=("1", 1))
    wf["7"] = node("ConditioningCombine", conditioning_1=("2", 0), conditioning_2=("6", 0))
    wf["8"] = node("FluxGuidance", conditioning=("7", 0), guidance=3.5)
    wf["9"] = node("SamplerCustom", add_noise=True, noise_seed=0, cfg=1.0, model=("1", 0), positive=("8", 0),
                   negative=("3", 0), sampler=("10", 0), sigmas=("11", 0), latent_image=("4", 0))
    found = find_prompt_nodes(wf)
    assert found.positive == ["2", "6"] and found.negative == ["3"]


def test_sampler_custom_advanced_cfg_guider_through_controlnet():
    wf = _base()
    wf["6"] = node("ControlNetApplyAdvanced", positive=("2", 0), negative=("3", 0), control_net=("12", 0),
                   image=("13", 0), strength=1.0, start_percent=0.0, end_percent=1.0)
    wf["7"] = node("CFGGuider", model=("1", 0), positive=("6", 0), negative=("6", 1), cfg=5.0)
    wf["8"] = node("SamplerCustomAdvanced", noise=("9", 0), guider=("7", 0), sampler=("10", 0),
                   sigmas=("11", 0), latent_image=("4", 0))
    wf["9"] = node("RandomNoise", noise_seed=0)
    found = find_prompt_nodes(wf)
    assert (found.positive, found.negative) == (["2"], ["3"])
    out = apply_params(wf, GenerationParams(seed=5, cfg=3.0))
    assert out["9"]["inputs"]["noise_seed"] == 5 and out["7"]["inputs"]["cfg"] == 3.0


def test_basic_guider_flux_encoder_has_no_negative(caplog):
    wf = {
        "1": node("UNETLoader", unet_name="flux.safetensors", weight_dtype="default"),
        "2": node("DualCLIPLoader", clip_name1="a.safetensors", clip_name2="b.safetensors", type="flux"),
        "3": node("CLIPTextEncodeFlux", clip=("2", 0), clip_l="old", t5xxl="old", guidance=3.5),
        "4": node("FluxGuidance", conditioning=("3", 0), guidance=3.5),
        "5": node("BasicGuider", model=("1", 0), conditioning=("4", 0)),
        "6": node("SamplerCustomAdvanced", noise=("7", 0), guider=("5", 0), sampler=("8", 0),
                  sigmas=("9", 0), latent_image=("10", 0)),
        "7": node("RandomNoise", noise_seed=0),
    }
    found = find_prompt_nodes(wf)
    assert (found.positive, found.negative) == (["3"], [])
    with caplog.at_level(logging.WARNING):
        out, report = apply_params_with_report(wf, GenerationParams(prompt="a fox", negative_prompt="ugly", seed=1))
    assert out["3"]["inputs"]["clip_l"] == "a fox" and out["3"]["inputs"]["t5xxl"] == "a fox"
    assert any("no negative prompt node" in w for w in report.warnings)
    assert "no negative prompt node" in caplog.text


def test_sdxl_encoder_writes_both_text_fields():
    wf = _base()
    wf["2"] = node("CLIPTextEncodeSDXL", clip=("1", 1), text_g="g", text_l="l", width=1024, height=1024,
                   crop_w=0, crop_h=0, target_width=1024, target_height=1024)
    wf["5"] = node("KSampler", seed=0, steps=20, cfg=7.0, sampler_name="euler", scheduler="normal", denoise=1.0,
                   model=("1", 0), positive=("2", 0), negative=("3", 0), latent_image=("4", 0))
    out = apply_params(wf, GenerationParams(prompt="a boat", seed=1))
    assert out["2"]["inputs"]["text_g"] == out["2"]["inputs"]["text_l"] == "a boat"
    assert get_params(out).prompt == "a boat"


def test_zero_out_negative_is_not_followed_back_to_the_positive():
    wf = _base()
    wf["6"] = node("ConditioningZeroOut", conditioning=("2", 0))
    wf["5"] = node("KSampler", seed=0, steps=20, cfg=1.0, sampler_name="euler", scheduler="simple", denoise=1.0,
                   model=("1", 0), positive=("2", 0), negative=("6", 0), latent_image=("4", 0))
    found = find_prompt_nodes(wf)
    assert (found.positive, found.negative, found.shared) == (["2"], [], [])


def test_node_feeding_both_sides_is_reported_not_silently_written():
    wf = _base()
    wf["5"] = node("KSampler", seed=0, steps=20, cfg=1.0, sampler_name="euler", scheduler="normal", denoise=1.0,
                   model=("1", 0), positive=("2", 0), negative=("2", 0), latent_image=("4", 0))
    found = find_prompt_nodes(wf)
    assert (found.positive, found.negative, found.shared) == ([], [], ["2"])
    out, report = apply_params_with_report(wf, GenerationParams(prompt="a cat", negative_prompt="dark", seed=1))
    assert out["2"]["inputs"]["text"] == "a cat"  # the only prompt node: written, with a warning
    assert any("feed both positive and negative" in w for w in report.warnings)
    assert any("no negative prompt node" in w for w in report.warnings)


def test_shared_node_title_breaks_the_tie():
    wf = _base()
    wf["2"]["_meta"] = {"title": "Negative prompt"}
    wf["5"] = node("KSampler", seed=0, steps=20, cfg=1.0, sampler_name="euler", scheduler="normal", denoise=1.0,
                   model=("1", 0), positive=("2", 0), negative=("2", 0), latent_image=("4", 0))
    assert find_prompt_nodes(wf).negative == ["2"]


def test_titles_used_only_without_sampler_links():
    wf = _base()
    wf["2"]["_meta"] = {"title": "Motion Prompt"}
    wf["3"]["_meta"] = {"title": "Negative Prompt"}
    found = find_prompt_nodes(wf)
    assert (found.positive, found.negative, found.by_links) == (["2"], ["3"], False)
    untitled = _base()
    assert find_prompt_nodes(untitled).positive == ["2"]  # first encoder


def test_non_numeric_ids_are_followed():
    wf = {
        "ckpt": node("CheckpointLoaderSimple", ckpt_name="m.safetensors"),
        "pos": node("CLIPTextEncode", text="p", clip=("ckpt", 1)),
        "neg": node("CLIPTextEncode", text="n", clip=("ckpt", 1)),
        "lat": node("EmptyLatentImage", width=64, height=64, batch_size=1),
        "ks": node("KSampler", seed=0, steps=3, cfg=7.0, sampler_name="euler", scheduler="normal", denoise=1.0,
                   model=("ckpt", 0), positive=("pos", 0), negative=("neg", 0), latent_image=("lat", 0)),
    }
    found = find_prompt_nodes(wf)
    assert (found.positive, found.negative) == (["pos"], ["neg"])


def test_custom_text_encoder_by_name():
    wf = _base()
    wf["2"] = node("MyTextEncodeDeluxe", clip=("1", 1), prompt="old", weight=1.0)
    wf["5"] = node("KSampler", seed=0, steps=20, cfg=7.0, sampler_name="euler", scheduler="normal", denoise=1.0,
                   model=("1", 0), positive=("2", 0), negative=("3", 0), latent_image=("4", 0))
    out = apply_params(wf, GenerationParams(prompt="a tram", seed=1))
    assert out["2"]["inputs"] == {"clip": ["1", 1], "prompt": "a tram", "weight": 1.0}
