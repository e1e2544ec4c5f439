"""LoRA insertion rewires every MODEL and CLIP consumer, in chain order."""

from __future__ import annotations

import copy

import pytest

from comfy_gen.errors import WorkflowError
from comfy_gen.params import LoraSpec
from comfy_gen.workflow import add_loras, get_params
from comfy_gen.workflow._graph import consumers
from tests.workflow.conftest import node


def _ckpt_graph():
    """Two samplers, a scheduler and a CLIPSetLastLayer all consume the checkpoint outputs."""
    return {
        "1": node("CheckpointLoaderSimple", ckpt_name="m.safetensors"),
        "2": node("CLIPTextEncode", text="p", clip=("1", 1)),
        "3": node("CLIPTextEncode", text="n", clip=("1", 1)),
        "4": node("EmptyLatentImage", width=64, height=64, batch_size=1),
        "5": node("KSampler", seed=0, steps=3, cfg=7.0, sampler_name="euler", scheduler="normal", denoise=1.0,
                  model=("1", 0), positive=("2", 0), negative=("3", 0), latent_image=("4", 0)),
        "6": node("KSampler", seed=0, steps=3, cfg=7.0, sampler_name="euler", scheduler="normal", denoise=0.5,
                  model=("1", 0), positive=("2", 0), negative=("3", 0), latent_image=("5", 0)),
        "7": node("BasicScheduler", model=("1", 0), scheduler="normal", steps=3, denoise=1.0),
        "8": node("CLIPSetLastLayer", clip=("1", 1), stop_at_clip_layer=-2),
        "9": node("VAEDecode", samples=("6", 0), vae=("1", 2)),
        "10": node("SaveImage", images=("9", 0), filename_prefix="x"),
    }


def test_single_lora_rewires_every_model_and_clip_consumer():
    wf = _ckpt_graph()
    before = copy.deepcopy(wf)
    out = add_loras(wf, [LoraSpec("a.safetensors", 0.7)])
    assert wf == before  # pure
    assert out["11"] == {"class_type": "LoraLoader",
                         "inputs": {"model": ["1", 0], "clip": ["1", 1], "lora_name": "a.safetensors",
                                    "strength_model": 0.7, "strength_clip": 0.7},
                         "_meta": {"title": "LoRA: a.safetensors"}}
    assert consumers(out, "1", 0) == [("11", "model")]
    assert consumers(out, "1", 1) == [("11", "clip")]
    assert sorted(consumers(out, "11", 0)) == [("5", "model"), ("6", "model"), ("7", "model")]
    assert sorted(consumers(out, "11", 1)) == [("2", "clip"), ("3", "clip"), ("8", "clip")]
    assert out["9"]["inputs"]["vae"] == ["1", 2]  # VAE untouched


def test_chain_keeps_order_and_rewires_clip_for_every_link():
    out = add_loras(_ckpt_graph(), [LoraSpec("a"), LoraSpec("b", 0.5, 0.2), LoraSpec("c", 0.3)])
    assert [out[i]["inputs"]["lora_name"] for i in ("11", "12", "13")] == ["a", "b", "c"]
    assert out["12"]["inputs"]["model"] == ["11", 0] and out["12"]["inputs"]["clip"] == ["11", 1]
    assert out["13"]["inputs"]["model"] == ["12", 0] and out["13"]["inputs"]["clip"] == ["12", 1]
    assert (out["12"]["inputs"]["strength_model"], out["12"]["inputs"]["strength_clip"]) == (0.5, 0.2)
    assert sorted(consumers(out, "13", 0)) == [("5", "model"), ("6", "model"), ("7", "model")]
    assert sorted(consumers(out, "13", 1)) == [("2", "clip"), ("3", "clip"), ("8", "clip")]
    assert [lo.name for lo in get_params(out).loras] == ["a", "b", "c"]


def _unet_graph(clip_loader="DualCLIPLoader"):
    wf = {
        "1": node("UNETLoader", unet_name="u.safetensors", weight_dtype="default"),
        "3": node("CLIPTextEncode", text="p", clip=("2", 0)),
        "4": node("CLIPTextEncode", text="", clip=("2", 0)),
        "5": node("EmptySD3LatentImage", width=64, height=64, batch_size=1),
        "6": node("ModelSamplingFlux", model=("1", 0), max_shift=1.15, base_shift=0.5, width=64, height=64),
        "7": node("KSampler", seed=0, steps=3, cfg=1.0, sampler_name="euler", scheduler="simple", denoise=1.0,
                  model=("6", 0), positive=("3", 0), negative=("4", 0), latent_image=("5", 0)),
    }
    if clip_loader:
        wf["2"] = node(clip_loader, clip_name1="a", clip_name2="b", type="flux")
    return wf


def test_unet_source_rewires_clip_consumers_too():
    out = add_loras(_unet_graph(), [LoraSpec("a"), LoraSpec("b")])
    assert out["8"]["inputs"]["model"] == ["1", 0] and out["8"]["inputs"]["clip"] == ["2", 0]
    assert consumers(out, "9", 0) == [("6", "model")]
    assert sorted(consumers(out, "9", 1)) == [("3", "clip"), ("4", "clip")]
    assert consumers(out, "2", 0) == [("8", "clip")]


def test_unet_without_clip_loader_uses_model_only_loras():
    wf = _unet_graph(clip_loader=None)
    out = add_loras(wf, [LoraSpec("a", 0.4)])
    assert out["8"]["class_type"] == "LoraLoaderModelOnly"
    assert out["8"]["inputs"] == {"model": ["1", 0], "lora_name": "a", "strength_model": 0.4}
    assert consumers(out, "8", 0) == [("6", "model")]


def test_loras_go_to_the_loader_feeding_the_samplers():
    wf = _ckpt_graph()
    wf["20"] = node("CheckpointLoaderSimple", ckpt_name="other.safetensors")
    wf["21"] = node("CheckpointSave", model=("20", 0), clip=("20", 1), vae=("20", 2), filename_prefix="x")
    wf["0"] = node("CheckpointLoaderSimple", ckpt_name="unused_first.safetensors")
    out = add_loras(wf, [LoraSpec("a")])
    assert out["22"]["inputs"]["model"] == ["1", 0]
    assert out["21"]["inputs"]["model"] == ["20", 0]


def test_new_ids_skip_non_numeric_ids_and_existing_loras_stay_in_the_chain():
    wf = _ckpt_graph()
    wf["lora-old"] = node("LoraLoader", model=("1", 0), clip=("1", 1), lora_name="old", strength_model=1.0,
                          strength_clip=1.0)
    wf["5"]["inputs"]["model"] = ["lora-old", 0]
    out = add_loras(wf, [LoraSpec("new")])
    assert "11" in out and out["lora-old"]["inputs"]["model"] == ["11", 0]
    assert out["5"]["inputs"]["model"] == ["lora-old", 0]
    assert [lo.name for lo in get_params(out).loras] == ["new", "old"]


def test_no_loader_is_an_error_and_empty_list_is_a_copy():
    wf = {"1": node("SaveImage", images=("2", 0), filename_prefix="x")}
    with pytest.raises(WorkflowError, match="no checkpoint or UNET loader"):
        add_loras(wf, [LoraSpec("a")])
    same = add_loras(_ckpt_graph(), [])
    assert same == _ckpt_graph()
