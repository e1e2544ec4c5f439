"""The original's catalog flags against the emulator: --prompt-preset, --lora-preset,
--list-presets, --list-loras, and the presets file's validation block."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from comfy_gen.emulator import Emulator
from comfy_gen.stack import free_port
from tests.generate.helpers import chunks, json_lines, run_cli

TINY = "tiny-sd15"


def _graph(image: Path) -> dict:
    return json.loads(chunks(image)["prompt"])


def _nodes(graph: dict, class_type: str) -> list[dict]:
    return [graph[k] for k in sorted(graph, key=int) if graph[k]["class_type"] == class_type]


def test_prompt_preset_supplies_prompt_negative_and_settings(gen_env: Emulator, tmp_path: Path) -> None:
    code, _, err = run_cli("generate", "-w", TINY, "--prompt-preset", "mountain_lake", "-n", "blurry",
                           "--preset", "draft", "--steps", "3", "-o", "lake.png")
    assert code == 0, err
    graph = _graph(tmp_path / "lake.png")
    texts = {n["inputs"]["text"] for n in _nodes(graph, "CLIPTextEncode")}
    assert any(t.startswith("a calm mountain lake at sunrise") for t in texts)
    assert "oversaturated, text, watermark, blurry" in texts      # the preset's negative, then -n
    sampler = _nodes(graph, "KSampler")[0]["inputs"]
    assert sampler["steps"] == 3 and sampler["cfg"] == 5.0          # flag > --preset > recommended (30, 7.0)
    latent = _nodes(graph, "EmptyLatentImage")[0]["inputs"]
    assert (latent["width"], latent["height"]) == (768, 512)        # recommended > workflow


def test_prompt_flag_replaces_the_preset_text(gen_env: Emulator, tmp_path: Path) -> None:
    code, _, err = run_cli("generate", "-w", TINY, "--prompt-preset", "red_fox", "-p", "a grey wolf",
                           "--steps", "2", "-o", "w.png")
    assert code == 0, err
    meta = json.loads(chunks(tmp_path / "w.png")["comfygen_metadata"])
    assert meta["input"]["prompt"] == "a grey wolf" and meta["input"]["negative_prompt"] == "cartoon, extra legs"


def test_lora_preset_then_lora_flags_in_order(gen_env: Emulator, tmp_path: Path) -> None:
    code, _, err = run_cli("generate", "-w", TINY, "-p", "an old tram", "--steps", "2", "--lora-preset",
                           "film_look", "--lora", "tiny_sd15_lora.safetensors:0.7", "-o", "t.png")
    assert code == 0, err
    chain = [(n["inputs"]["lora_name"], n["inputs"]["strength_model"])
             for n in _nodes(_graph(tmp_path / "t.png"), "LoraLoader")]
    assert chain == [("film_grain.safetensors", 0.4), ("detail_tweaker.safetensors", 0.3),
                     ("tiny_sd15_lora.safetensors", 0.7)]


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["--prompt-preset", "nope"], "Unknown prompt preset 'nope'", id="unknown-prompt-preset"),
    pytest.param(["--lora-preset", "nope"], "Unknown LoRA preset 'nope'", id="unknown-lora-preset"),
    pytest.param(["-p", "x"], "Missing option '--workflow'", id="no-workflow"),
])
def test_unknown_catalog_names_exit_2(gen_env: Emulator, args: list[str], message: str) -> None:
    before = gen_env.stats()["history_size"]
    workflow = [] if "-p" in args else ["-w", TINY]
    code, _, err = run_cli("generate", *workflow, *args)
    assert code == 2 and message in err and "Traceback" not in err
    assert gen_env.stats()["history_size"] == before


def test_list_presets_needs_no_server_or_workflow(tmp_path: Path) -> None:
    code, out, err = run_cli("generate", "--list-presets")
    assert code == 0, err
    assert "mountain_lake" in out and "[landscape]" in out and "high-quality" in out
    code, out, _ = run_cli("generate", "--list-presets", "--json-progress")
    data = json.loads(out)
    assert {p["name"] for p in data["prompt_presets"]} >= {"red_fox", "product_watch"}


def test_list_presets_with_a_missing_user_catalog_exits_2(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COMFY_GEN_PROMPT_CATALOG_FILE", str(tmp_path / "gone.yaml"))
    code, _, err = run_cli("generate", "--list-presets")
    assert code == 2 and "gone.yaml" in err and "Traceback" not in err


def test_list_loras_shows_server_loras_beside_presets(gen_env: Emulator) -> None:
    code, out, err = run_cli("generate", "--list-loras")
    assert code == 0, err
    server, presets = out.split("LoRA presets")
    assert "detail_tweaker.safetensors  0.6  Adds fine texture" in server
    assert "tiny_sd15_lora.safetensors" in server
    assert "film_look" in presets and "film_grain.safetensors:0.4" in presets
    assert "not on the server: wan21_lightx2v_4step_lora.safetensors" in presets
    code, out, _ = run_cli("generate", "--list-loras", "--json-progress")
    data = json.loads(out)
    assert "film_grain.safetensors" in [x["name"] for x in data["server_loras"]]


def test_list_loras_needs_the_server(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COMFY_GEN_HTTP_RETRIES", "1")
    code, _, err = run_cli("generate", "--list-loras", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 2 and "Cannot reach ComfyUI" in err and "Traceback" not in err


def _presets_file(tmp_path: Path, block: dict) -> Path:
    path = tmp_path / "presets.yaml"
    path.write_text(yaml.safe_dump({"presets": {}, "validation": block}))
    return path


@pytest.mark.parametrize(("block", "flags", "attempts", "code"), [
    pytest.param({"enabled": True, "attempts": 2, "threshold": 99}, [], 2, 3, id="block-enables"),
    pytest.param({"enabled": True, "auto_retry": False, "positive_threshold": 99}, [], 1, 3, id="original-keys"),
    pytest.param({"enabled": True, "attempts": 2, "threshold": 99}, ["--no-validate"], 1, 0, id="flag-wins"),
    pytest.param({"enabled": True, "attempts": 2, "threshold": 99}, ["--positive-threshold", "1"], 1, 0,
                 id="flag-threshold-wins"),
])
def test_presets_file_validation_block(clip_env: Emulator, tmp_path: Path, monkeypatch, block: dict,
                                       flags: list[str], attempts: int, code: int) -> None:
    monkeypatch.setenv("COMFY_GEN_PRESETS_FILE", str(_presets_file(tmp_path, block)))
    # A fixed seed: with a random one the tiny CLIP can score an image below even 1 (flaky).
    got, out, err = run_cli("generate", "-w", TINY, "-p", "a dog by a lake", "--steps", "2", "--seed", "1", "--json-progress",
                            "-o", "v.png", *flags)
    assert got == code, err
    events = json_lines(out)
    assert len([e for e in events if e["type"] == "attempt"]) == attempts


def test_bad_validation_block_is_a_config_error(gen_env: Emulator, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COMFY_GEN_PRESETS_FILE", str(_presets_file(tmp_path, {"attempts": "many"})))
    code, _, err = run_cli("generate", "-w", TINY, "-p", "a dog")
    assert code == 2 and "validation.attempts must be a whole number" in err


@pytest.mark.parametrize("flags", [["--no-auto-retry"], ["--retry-limit", "1"]], ids=["no-auto-retry", "retry-limit"])
def test_original_retry_flags(clip_env: Emulator, tmp_path: Path, flags: list[str]) -> None:
    code, out, err = run_cli("generate", "-w", TINY, "-p", "a dog", "--steps", "2", "--validate",
                             "--positive-threshold", "99", "--json-progress", "-o", "r.png", *flags)
    assert code == 3, err
    assert len([e for e in json_lines(out) if e["type"] == "attempt"]) == 1
