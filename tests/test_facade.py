"""The seed's module-level API (comfy_gen.generate, re-exported by generate.py) over loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from PIL import Image

import comfy_gen.generate as g
from comfy_gen.config import reset_settings_cache
from comfy_gen.emulator import Emulator
from comfy_gen.stack import free_port
from tests.conftest import REPO_ROOT


@pytest.fixture
def server(emu: Emulator, use_backend) -> Iterator[Emulator]:
    use_backend(emu.url)
    yield emu


@pytest.fixture
def dead_server(monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("COMFY_GEN_COMFYUI_URL", url)
    monkeypatch.setenv("COMFY_GEN_HTTP_RETRIES", "1")
    # queue_prompt opens the event socket first and waits up to connect_timeout for it.
    monkeypatch.setenv("COMFY_GEN_CONNECT_TIMEOUT", "0.5")
    reset_settings_cache()
    return url


def _tiny() -> dict:
    return g.load_workflow("workflows/tiny-sd15.json")


# --- server and models ---------------------------------------------------------


def test_server_availability(server: Emulator) -> None:
    assert g.check_server_availability() is True


def test_server_down(dead_server: str) -> None:
    assert g.check_server_availability() is False
    assert g.get_available_models() is None
    assert g.queue_workflow(_tiny()) is None


def test_models_fallbacks_and_workflow_validation(server: Emulator) -> None:
    models = g.get_available_models()
    assert models is not None
    assert "tiny_sd15.safetensors" in models["checkpoints"] and "tiny_sd15_lora.safetensors" in models["loras"]
    assert "vae" in models
    assert g.find_model_fallbacks("tiny_sd15_v2.safetensors", models) == ["tiny_sd15.safetensors"]
    assert g.find_model_fallbacks("tiny_sd15_lora_v9.safetensors", models, "loras") == ["tiny_sd15_lora.safetensors"]
    assert len(g.find_model_fallbacks("safetensors", models)) <= 5

    assert g.validate_workflow_models(g.load_workflow("workflows/flux-dev.json"), models) == (True, [], {})
    wf = _tiny()
    wf["1"]["inputs"]["ckpt_name"] = "tiny_sd15_v2.safetensors"
    ok, missing, suggestions = g.validate_workflow_models(wf, models)
    assert ok is False and missing == [("checkpoints", "tiny_sd15_v2.safetensors")]
    assert suggestions == {"tiny_sd15_v2.safetensors": ["tiny_sd15.safetensors"]}


# --- loading and editing ---------------------------------------------------------


def test_load_workflow_errors_are_the_seed_ones(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        g.load_workflow("workflows/does-not-exist.json")
    (tmp_path / "broken.json").write_text('{"1": {"class_type": ')
    with pytest.raises(json.JSONDecodeError):
        g.load_workflow(str(tmp_path / "broken.json"))
    # Relative names resolve from the cwd first, then the configured workflows folder.
    wf = g.load_workflow("workflows/tiny-sd15.json")
    assert wf["5"]["class_type"] == "KSampler"
    assert g.load_workflow("tiny-sd15") == wf


def test_modify_functions_edit_in_place() -> None:
    wf = _tiny()
    assert g.modify_prompt(wf, "a harbour at dawn", "blurry, low quality") is wf
    assert (wf["2"]["inputs"]["text"], wf["3"]["inputs"]["text"]) == ("a harbour at dawn", "blurry, low quality")
    assert g.modify_prompt(wf, "a windmill") is wf
    assert wf["3"]["inputs"]["text"] == "blurry, low quality"  # no negative given: kept
    assert g.modify_denoise(wf, 0.55) is wf and wf["5"]["inputs"]["denoise"] == 0.55
    assert g.modify_sampler_params(wf, steps=9, cfg=4.5, sampler="dpmpp_2m", scheduler="karras") is wf
    sampler = wf["5"]["inputs"]
    assert (sampler["steps"], sampler["cfg"], sampler["sampler_name"], sampler["scheduler"]) == \
        (9, 4.5, "dpmpp_2m", "karras")
    assert sampler["seed"] == 0  # no seed given: the graph's own is kept
    assert g.modify_sampler_params(wf, seed=1234) is wf and wf["5"]["inputs"]["seed"] == 1234

    img = g.load_workflow("workflows/sd15-img2img.json")
    assert g.modify_input_image(img, "input_0a1b2c3d.png") is img
    assert img["4"]["inputs"]["image"] == "input_0a1b2c3d.png"


def test_preprocess_image_in_place(tmp_path: Path) -> None:
    path = tmp_path / "in.png"
    Image.new("RGB", (200, 100), (10, 200, 30)).save(path)
    assert g.preprocess_image(str(path), resize=(64, 64), crop="contain") == str(path)
    with Image.open(path) as img:
        assert img.size == (64, 64) and img.getpixel((0, 0)) == (0, 0, 0)  # letterbox padding
    assert g.preprocess_image(str(path), resize=(32, 48), crop="cover") == str(path)
    assert Image.open(path).size == (32, 48)


# --- queue, wait, download ---------------------------------------------------------


def test_queue_wait_download(server: Emulator, tmp_path: Path) -> None:
    wf = g.modify_prompt(_tiny(), "a lantern on a table")
    prompt_id = g.queue_workflow(wf)
    assert prompt_id
    status = g.wait_for_completion(prompt_id)
    assert status["status"]["status_str"] == "success" and status["outputs"]
    target = tmp_path / "nested" / "out.png"
    assert g.download_output(status, str(target)) is True
    assert json.loads(Image.open(target).info["prompt"])["2"]["inputs"]["text"] == "a lantern on a table"
    assert g.download_output({}, str(tmp_path / "none.png")) is False


def test_queue_without_retry(server: Emulator) -> None:
    prompt_id = g.queue_workflow(_tiny(), retry=False)
    assert prompt_id and g.wait_for_completion(prompt_id)["status"]["status_str"] == "success"


def test_queue_rejected_returns_none(server: Emulator) -> None:
    wf = _tiny()
    wf["1"]["inputs"]["ckpt_name"] = "not-installed.safetensors"
    before = server.stats()["history_size"]
    assert g.queue_workflow(wf) is None
    assert server.stats()["history_size"] == before


def test_wait_for_failed_job_returns_its_history(server: Emulator) -> None:
    server.faults.error_node_class = "VAEDecode"
    prompt_id = g.queue_workflow(_tiny())
    status = g.wait_for_completion(prompt_id)
    assert status["status"]["status_str"] == "error"
    assert g.download_output(status, "x.png") is False


def test_upload_image_to_comfyui_uses_a_unique_name(server: Emulator, tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    Image.new("RGB", (16, 16), (1, 2, 3)).save(path)
    first, second = g.upload_image_to_comfyui(str(path)), g.upload_image_to_comfyui(str(path))
    assert first and second and first != second
    assert first.startswith("input_") and first.endswith(".png")
    assert (server.input_dir / first).read_bytes() == path.read_bytes()
    assert g.upload_image_to_comfyui(str(tmp_path / "missing.png")) is None


def _queue_state(emu: Emulator) -> dict:
    return httpx.get(f"{emu.url}/queue").json()


def test_cancel_prompt_touches_only_the_given_prompt(server: Emulator) -> None:
    server.hold()  # the first job stays running until cancelled, however loaded the machine
    wf = _tiny()
    running = g.queue_workflow(g.modify_sampler_params(wf, steps=40, seed=1))
    pending = g.queue_workflow(g.modify_sampler_params(wf, steps=40, seed=2))
    assert server.wait_held(1, timeout=60) == [running]
    assert g.cancel_prompt(pending) is True
    state = _queue_state(server)
    assert [item[1] for item in state["queue_running"]] == [running]  # still running, not interrupted
    assert state["queue_pending"] == []
    assert g.cancel_prompt("00000000-0000-0000-0000-000000000000") is False
    assert g.cancel_prompt(running) is True
    assert g.wait_for_completion(running)["status"]["status_str"] == "error"


def test_upload_to_minio(s3_env, s3_server, tmp_path: Path) -> None:
    path = tmp_path / "up.png"
    Image.new("RGB", (8, 8)).save(path)
    url = g.upload_to_minio(str(path), "20260104_120000_up.png")
    assert url and url.endswith("/20260104_120000_up.png")
    obj = s3_server.client().stat_object(s3_env.minio_bucket, "20260104_120000_up.png")
    assert obj.content_type == "image/png"


def test_upload_to_minio_without_storage_returns_none(tmp_path: Path) -> None:
    path = tmp_path / "up.png"
    Image.new("RGB", (8, 8)).save(path)
    assert g.upload_to_minio(str(path), "up.png") is None


def test_retry_helpers_and_constants() -> None:
    params = g.get_retry_params(2, "progressive", base_steps=30, base_cfg=7.0, base_seed=42,
                                base_prompt="a sunset", base_negative="blurry")
    assert (params["steps"], params["cfg"], params["positive_prompt"]) == (50, 7.5, "a sunset")
    positive, negative = g.adjust_prompt_for_retry("single car, driving", "multiple cars", 2)
    assert positive.startswith("(single car:1.3)") and "duplicate" in negative
    assert (g.EXIT_SUCCESS, g.EXIT_FAILURE, g.EXIT_CONFIG_ERROR, g.EXIT_VALIDATION_FAILED) == (0, 1, 2, 3)
    assert (g.MAX_RETRIES, g.RETRY_DELAY, g.RETRY_BACKOFF) == (3, 2, 2)


def test_root_generate_py_reexports_and_runs_the_cli(server: Emulator, tmp_path: Path) -> None:
    import generate as root

    assert all(getattr(root, name) is getattr(g, name) for name in g.__all__)
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "generate.py"), "--workflow", "tiny-sd15",
                           "--prompt", "a paper boat", "--seed", "3", "--output", "boat.png", "--quiet"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**os.environ, "COMFY_GEN_COMFYUI_URL": server.url})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "boat.png").is_file()
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "generate.py"), "metadata", "show", "boat.png"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0 and "Seed: 3" in proc.stdout
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "generate.py"), "--list-presets"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0 and "draft" in proc.stdout and "high-quality" in proc.stdout
