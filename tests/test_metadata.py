"""Metadata document, schema, sidecar, PNG chunks and the A1111 line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from comfy_gen.errors import MetadataNotFound, UsageError
from comfy_gen.metadata import (a1111_parameters, build_metadata, embed_png_metadata, load_schema,
                                parse_tags, png_text_chunks, read_metadata, validate_metadata,
                                write_sidecar)
from comfy_gen.params import GenerationParams, LoraSpec
from tests.storage.helpers import COMFY_PROMPT, COMFY_WORKFLOW, make_png

PARAMS = GenerationParams(prompt="a lighthouse on a cliff, golden hour", negative_prompt="blurry, low quality",
                          seed=1234, steps=20, cfg=7.5, sampler="euler", scheduler="normal",
                          width=768, height=512, checkpoint="sdxl_base.safetensors",
                          loras=(LoraSpec("detail.safetensors", 0.8), LoraSpec("style.safetensors", 0.5, 0.3)))


def _meta(**overrides) -> dict:
    kwargs = dict(params=PARAMS, workflow_name="sdxl-basic", model=None, vae="sdxl_vae.safetensors",
                  prompt_id="p-42", validation={"passed": True, "reason": "ok", "positive_score": 0.31,
                                                "negative_score": 0.12, "score_delta": 0.19},
                  attempts=[{"params": PARAMS.replace(seed=1), "scores": {"positive_score": 0.2}},
                            {"params": PARAMS, "scores": {"positive_score": 0.31}}],
                  max_attempts=3, strategy="progressive", final_status="success",
                  storage={"url": "http://s3/b/demo/x.png", "key": "demo/x.png", "file_size_bytes": 123,
                           "format": "png", "generation_time_seconds": 4.2},
                  organization={"project": "coast", "batch_id": "b1", "tags": "mood:calm,draft"},
                  flow_run_id="fr-1", item_id="abc123", recipe="demo")
    kwargs.update(overrides)
    return build_metadata(**kwargs)


def test_parse_tags() -> None:
    assert parse_tags("k:v,flag") == {"k": "v", "flag": True}
    assert parse_tags(" a : b:c , ,x ") == {"a": "b:c", "x": True}
    assert parse_tags("") == {} and parse_tags(None) == {}


def test_parse_tags_refuses_a_tag_without_a_name() -> None:
    from comfy_gen.errors import UsageError

    with pytest.raises(UsageError, match="no name"):
        parse_tags("project:coast,:orphan")


def test_build_metadata_sections_validate_against_schema() -> None:
    meta = _meta()
    validate_metadata(meta)
    assert load_schema()["$schema"].endswith("2020-12/schema")
    assert meta["input"] == {"prompt": PARAMS.prompt, "negative_prompt": PARAMS.negative_prompt, "preset": None}
    assert meta["workflow"] == {"name": "sdxl-basic", "model": "sdxl_base.safetensors", "vae": "sdxl_vae.safetensors"}
    assert meta["parameters"]["resolution"] == [768, 512]
    assert meta["parameters"]["loras"] == [{"name": "detail.safetensors", "strength": 0.8},
                                           {"name": "style.safetensors", "strength": 0.5, "strength_clip": 0.3}]
    assert meta["quality"]["prompt_adherence"] == {"clip": 0.31}
    ref = meta["refinement"]
    assert ref["attempt"] == 2 and ref["max_attempts"] == 3 and ref["final_status"] == "success"
    assert ref["attempts"][0]["params"]["seed"] == 1 and ref["previous_scores"] == [{"positive_score": 0.2}]
    assert meta["organization"]["tags"] == {"mood": "calm", "draft": True}
    assert meta["prefect"] == {"flow_run_id": "fr-1"}
    assert meta["comfy_gen"]["item_id"] == "abc123" and meta["comfy_gen"]["recipe"] == "demo"
    assert meta["comfyui"]["prompt_id"] == "p-42"
    json.dumps(meta)  # JSON-safe


def test_minimal_metadata_validates_and_bad_metadata_does_not() -> None:
    meta = build_metadata(params={"prompt": "a cat"})
    validate_metadata(meta)
    assert meta["parameters"]["resolution"] is None and meta["quality"] is None
    meta["parameters"]["seed"] = "not-a-number"
    del meta["storage"]
    with pytest.raises(UsageError) as info:
        validate_metadata(meta)
    assert "parameters/seed" in str(info.value) and "storage" in str(info.value)


def test_a1111_line_format() -> None:
    assert a1111_parameters(_meta()) == (
        "a lighthouse on a cliff, golden hour\n"
        "Negative prompt: blurry, low quality\n"
        "Steps: 20, Sampler: euler, CFG scale: 7.5, Seed: 1234, Size: 768x512, "
        "Model: sdxl_base.safetensors, VAE: sdxl_vae.safetensors, "
        "Lora: detail.safetensors:0.8, Lora: style.safetensors:0.5")
    bare = build_metadata(params={"prompt": "a cat", "steps": 4})
    assert a1111_parameters(bare) == "a cat\nSteps: 4"


def test_embed_keeps_comfyui_chunks_and_pixels(tmp_path: Path) -> None:
    png = make_png(tmp_path / "ComfyUI_00001_.png", noise=True)
    pixels = Image.open(png).tobytes()
    meta = _meta()
    embed_png_metadata(png, meta)
    embed_png_metadata(png, meta)  # idempotent: chunks replaced, not duplicated
    chunks = png_text_chunks(png)
    assert json.loads(chunks["prompt"]) == COMFY_PROMPT
    assert json.loads(chunks["workflow"]) == COMFY_WORKFLOW
    assert json.loads(chunks["comfygen_metadata"]) == meta
    assert chunks["parameters"] == a1111_parameters(meta)
    assert png.read_bytes().count(b"comfygen_metadata") == 1
    with Image.open(png) as img:  # Pillow (and so ComfyUI/A1111 readers) see the same chunks
        assert img.tobytes() == pixels
        assert img.text["parameters"] == a1111_parameters(meta)
        assert json.loads(img.text["prompt"]) == COMFY_PROMPT
    assert [p.name for p in tmp_path.iterdir()] == ["ComfyUI_00001_.png"]


def test_embed_handles_non_latin_prompts(tmp_path: Path) -> None:
    png = make_png(tmp_path / "u.png")
    meta = build_metadata(params={"prompt": "灯台 au crépuscule — ☀", "seed": 1})
    embed_png_metadata(png, meta)
    assert read_metadata(png)["input"]["prompt"] == "灯台 au crépuscule — ☀"
    assert Image.open(png).text["parameters"].startswith("灯台")


def test_read_metadata_round_trip_and_fallbacks(tmp_path: Path) -> None:
    meta = _meta()
    png = make_png(tmp_path / "a.png")
    embed_png_metadata(png, meta)
    read = read_metadata(png)
    assert read.pop("source") == "png" and read == meta

    # no chunk: the sidecar
    side_png = make_png(tmp_path / "b.png")
    assert write_sidecar(side_png, meta) == tmp_path / "b.png.json"
    assert read_metadata(side_png)["source"] == "sidecar"

    # neither: ComfyUI's own chunks
    comfy = read_metadata(make_png(tmp_path / "c.png"))
    assert comfy["source"] == "comfyui" and comfy["prompt"] == COMFY_PROMPT

    # nothing at all: a clear error naming the sidecar
    bare = make_png(tmp_path / "d.png", comfy_chunks=False)
    with pytest.raises(MetadataNotFound, match="d.png.json"):
        read_metadata(bare)
    jpg = tmp_path / "e.jpg"
    Image.new("RGB", (8, 8)).save(jpg)
    with pytest.raises(MetadataNotFound):
        read_metadata(jpg)
    write_sidecar(jpg, meta)
    assert read_metadata(jpg)["generation_id"] == meta["generation_id"]


def test_embed_refuses_non_png(tmp_path: Path) -> None:
    jpg = tmp_path / "x.jpg"
    Image.new("RGB", (8, 8)).save(jpg)
    with pytest.raises(UsageError, match="Not a PNG"):
        embed_png_metadata(jpg, _meta())
