"""Emulator behaviour beyond single captures: restart, ordering, files, models, CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
from PIL import Image

from comfy_gen.emulator import Emulator
from comfy_gen.emulator.catalog import DEFAULT_MODELS, _base_catalog
from tests.conftest import REPO_ROOT
from tests.emulator import replay
from tests.emulator.wsclient import Recorder


def _run(client: httpx.Client, workflow: dict, **extra: object) -> dict:
    response = client.post("/prompt", json={"prompt": workflow, **extra})
    assert response.status_code == 200, response.text
    return replay.wait_history(client, response.json()["prompt_id"])


def test_restart_loses_memory_keeps_outputs_and_wipes_temp(fresh_emulator: Emulator) -> None:
    emu = fresh_emulator
    with httpx.Client(base_url=emu.url) as client:
        entry = _run(client, replay.workflow("txt2img_batch2_preview"))
        saved = entry["outputs"]["9"]["images"][0]
        temp = entry["outputs"]["11"]["images"][0]
        assert (emu.temp_dir / temp["filename"]).exists()
        emu.restart()
        assert client.get("/history").json() == {}
        assert client.get("/queue").json() == {"queue_running": [], "queue_pending": []}
        assert not any(emu.temp_dir.iterdir())
        params = {"filename": saved["filename"], "subfolder": saved["subfolder"], "type": "output"}
        assert client.get("/view", params=params).status_code == 200
        assert client.get("/view", params={**temp, "type": "temp"}).status_code == 404
        workflow = replay.workflow("txt2img_batch2_preview")
        workflow["3"]["inputs"]["seed"] = 5
        response = client.post("/prompt", json={"prompt": workflow})
        assert response.json()["number"] == 0
        after = replay.wait_history(client, response.json()["prompt_id"])
    # Counters continue from the files on disk: b2_00003_ follows b2_00001/2.
    assert after["outputs"]["9"]["images"][0]["filename"] == "b2_00003_.png"
    assert emu.stats()["jobs_completed"] == 2


def test_restart_over_http(fresh_emulator: Emulator) -> None:
    with httpx.Client(base_url=fresh_emulator.url) as client:
        _run(client, replay.workflow("txt2img_fastest"))
        assert client.post("/_emulator/restart").json() == {"restarted": True}
        assert client.get("/history").json() == {}


def test_history_is_written_before_executing_null(emu: Emulator) -> None:
    with httpx.Client(base_url=emu.url) as client:
        ws = Recorder(emu.ws_url, "order-check")
        for seed in range(3):
            workflow = replay.workflow("txt2img_fastest")
            workflow["3"]["inputs"]["seed"] = 1000 + seed
            body = {"prompt": workflow, "client_id": "order-check"}
            prompt_id = client.post("/prompt", json=body).json()["prompt_id"]
            ws.wait_done(prompt_id)
            assert client.get(f"/history/{prompt_id}").json()  # no race to {}
        ws.close()


def test_one_worker_runs_jobs_in_number_order(fresh_emulator: Emulator) -> None:
    emu = fresh_emulator
    emu.faults.step_time = 0.03
    with httpx.Client(base_url=emu.url) as client:
        ws = Recorder(emu.ws_url, "fifo")
        ids = []
        for seed, extra in [(1, {}), (2, {}), (3, {"front": True}), (4, {"number": 0.5})]:
            workflow = replay.workflow("txt2img_fastest")
            workflow["3"]["inputs"]["seed"] = seed
            ids.append(client.post("/prompt", json={"prompt": workflow, "client_id": "fifo", **extra})
                       .json()["prompt_id"])
        for prompt_id in ids:
            ws.wait_done(prompt_id)
        ws.close()
    started = [m["data"]["prompt_id"] for m in ws.texts() if m["type"] == "execution_start"]
    # The first runs at once; then front (-2), explicit 0.5, then number 1.
    assert started == [ids[0], ids[2], ids[3], ids[1]]
    stats = emu.stats()
    assert stats["max_concurrency"] == 1 and stats["jobs_completed"] == 4
    busy = stats["busy"]
    assert all(a[1] <= b[0] for a, b in zip(busy, busy[1:]))  # never two at once


def test_images_are_deterministic_and_carry_the_prompt(fresh_emulator: Emulator) -> None:
    emu = fresh_emulator
    workflow = replay.workflow("txt2img_ckpt")
    workflow["5"]["inputs"].update(width=96, height=80)
    with httpx.Client(base_url=emu.url) as client:
        first = _run(client, workflow, extra_data={"extra_pnginfo": {"workflow": {"nodes": []}}})
        workflow["9"]["inputs"]["filename_prefix"] = "again/txt2img"
        second = _run(client, workflow)
        workflow["3"]["inputs"]["seed"] = 43
        third = _run(client, workflow)
    paths = [emu.output_dir / e["outputs"]["9"]["images"][0]["subfolder"] / e["outputs"]["9"]["images"][0]["filename"]
             for e in (first, second, third)]
    images = [Image.open(p) for p in paths]
    assert paths[1].parent.name == "again" and paths[2].name == "txt2img_00002_.png"
    assert images[0].size == (96, 80)
    assert images[0].tobytes() == images[1].tobytes() != images[2].tobytes()
    assert json.loads(images[0].info["prompt"])["3"]["class_type"] == "KSampler"
    assert json.loads(images[0].info["workflow"]) == {"nodes": []}


def test_view_preview_and_channels(fresh_emulator: Emulator) -> None:
    with httpx.Client(base_url=fresh_emulator.url) as client:
        image = _run(client, replay.workflow("txt2img_ckpt"))["outputs"]["9"]["images"][0]
        jpeg = client.get("/view", params={**image, "preview": "jpeg;90"})
        assert jpeg.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(jpeg.content)).format == "JPEG"
        alpha = client.get("/api/view", params={**image, "channel": "a"})
        assert Image.open(io.BytesIO(alpha.content)).mode == "RGBA"
        bad = client.get("/view", params={**image, "subfolder": "../.."})
        assert bad.status_code == 403


def test_models_override_drives_lists_and_validation(tmp_path: Path) -> None:
    models = {"checkpoints": ["only.safetensors"], "unet": ["u.safetensors"]}
    with Emulator(step_time=0.005, data_dir=tmp_path / "emu", models=models) as emu, \
            httpx.Client(base_url=emu.url) as client:
        assert client.get("/models/checkpoints").json() == ["only.safetensors"]
        assert client.get("/models/diffusion_models").json() == ["u.safetensors"]
        assert client.get("/models/loras").json() == DEFAULT_MODELS["loras"]
        info = client.get("/object_info/CheckpointLoaderSimple").json()
        assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == ["only.safetensors"]
        rejected = client.post("/prompt", json={"prompt": replay.workflow("txt2img_ckpt")})
        assert rejected.status_code == 400
        assert rejected.json()["node_errors"]["4"]["errors"][0]["type"] == "value_not_in_list"


def test_default_catalog_serves_the_shipped_model_names(emu: Emulator) -> None:
    with httpx.Client(base_url=emu.url) as client:
        info = client.get("/object_info").json()
    assert "sd_xl_base_1.0.safetensors" in info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
    assert "flux1-dev-fp8.safetensors" in info["UNETLoader"]["input"]["required"]["unet_name"][0]
    assert "t5xxl_fp16.safetensors" in info["DualCLIPLoader"]["input"]["required"]["clip_name2"][0]
    assert "pixel_space" in info["VAELoader"]["input"]["required"]["vae_name"][0]


def test_catalog_is_a_verbatim_subset_of_the_recording() -> None:
    full = json.loads((replay.CAPTURES / "files" / "object_info_full.json").read_text())
    ours = _base_catalog()
    assert all(ours[name] == full[name] for name in ours)
    used = {n["class_type"] for p in replay.WORKFLOWS.glob("*.json")
            for n in json.loads(p.read_text()).values() if n["class_type"] in full}
    required = {"SamplerCustomAdvanced", "FluxGuidance", "EmptySD3LatentImage", "DualCLIPLoader",
                "CLIPTextEncodeSDXL", "KSamplerAdvanced", "ImageScale", "EmptyHunyuanLatentVideo"}
    assert used | required <= set(ours)


def test_flux_style_graph_runs(emu: Emulator) -> None:
    graph = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev-fp8.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "clip_l.safetensors",
              "clip_name2": "t5xxl_fp16.safetensors", "type": "flux"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red lighthouse at sunset", "clip": ["2", 0]}},
        "5": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["4", 0], "guidance": 3.5}},
        "6": {"class_type": "BasicGuider", "inputs": {"model": ["1", 0], "conditioning": ["5", 0]}},
        "7": {"class_type": "RandomNoise", "inputs": {"noise_seed": 11}},
        "8": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "9": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "simple", "steps": 4, "denoise": 1.0}},
        "10": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 128, "height": 96, "batch_size": 1}},
        "11": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["7", 0], "guider": ["6", 0],
               "sampler": ["8", 0], "sigmas": ["9", 0], "latent_image": ["10", 0]}},
        "12": {"class_type": "VAEDecode", "inputs": {"samples": ["11", 0], "vae": ["3", 0]}},
        "13": {"class_type": "SaveImage", "inputs": {"filename_prefix": "flux/test", "images": ["12", 0]}},
    }
    with httpx.Client(base_url=emu.url) as client:
        ws = Recorder(emu.ws_url, "flux")
        prompt_id = client.post("/prompt", json={"prompt": graph, "client_id": "flux"}).json()["prompt_id"]
        ws.wait_done(prompt_id)
        ws.close()
        image = client.get(f"/history/{prompt_id}").json()[prompt_id]["outputs"]["13"]["images"][0]
    steps = [m["data"]["value"] for m in ws.texts() if m["type"] == "progress"]
    assert steps == [1, 2, 3, 4]
    assert Image.open(emu.output_dir / "flux" / image["filename"]).size == (128, 96)


def test_cli_runs_in_the_foreground_and_prints_the_url(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "comfy_gen.emulator", "--port", "0", "--data-dir", str(tmp_path / "d")],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split("listening on ")[1].split()[0]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                assert httpx.get(url + "/system_stats").status_code == 200
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert (tmp_path / "d" / "input" / "example.png").exists()
    finally:
        proc.terminate()
        proc.wait(10)
