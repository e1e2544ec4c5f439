"""`comfy-gen generate` / `reproduce` / `metadata show` against the emulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfy_gen.stack import free_port
from PIL import Image

from comfy_gen.emulator import Emulator
from comfy_gen.metadata import validate_metadata
from tests.generate.helpers import chunks, json_lines, run_cli, strip_comfy_gen_chunks

TINY = "tiny-sd15"


def _graph(image: Path) -> dict:
    """The API graph ComfyUI embedded in the PNG (what was actually queued)."""
    return json.loads(chunks(image)["prompt"])


def _node(graph: dict, class_type: str) -> dict:
    return next(n for n in graph.values() if n["class_type"] == class_type)


def _history_size(emu: Emulator) -> int:
    return emu.stats()["history_size"]


def test_generate_keeps_comfyui_chunks_and_adds_metadata(gen_env: Emulator, tmp_path: Path) -> None:
    code, out, err = run_cli("generate", "-w", TINY, "-p", "a lighthouse on a hill", "-n", "blurry",
                             "--seed", "42", "--steps", "4", "-o", "out.png", "--project", "demo",
                             "--tags", "site:coast,draft")
    assert code == 0, err
    image = tmp_path / "out.png"
    assert out.strip() == str(image)
    found = chunks(image)
    # ComfyUI's own graph chunk is kept, and it is the graph we composed.
    sampler = _node(_graph(image), "KSampler")["inputs"]
    assert (sampler["seed"], sampler["steps"]) == (42, 4)
    meta = json.loads(found["comfygen_metadata"])
    assert meta["input"] == {"prompt": "a lighthouse on a hill", "negative_prompt": "blurry", "preset": None}
    assert meta["parameters"]["seed"] == 42 and meta["parameters"]["resolution"] == [64, 64]
    assert meta["organization"] == {"project": "demo", "batch_id": None, "tags": {"site": "coast", "draft": True}}
    assert meta["refinement"]["final_status"] == "unvalidated"
    assert found["parameters"].splitlines()[0] == "a lighthouse on a hill"
    assert "Steps: 4" in found["parameters"] and "Seed: 42" in found["parameters"]
    validate_metadata(meta)
    sidecar = json.loads((tmp_path / "out.png.json").read_text())
    assert sidecar["generation_id"] == meta["generation_id"]
    assert Image.open(image).size == (64, 64)
    assert not any((tmp_path / "state" / "work").iterdir())  # attempt files cleaned up


def test_metadata_show_and_reproduce_renders_the_same_image(gen_env: Emulator, tmp_path: Path) -> None:
    assert run_cli("generate", "-w", TINY, "-p", "a red barn in a field", "--seed", "7", "-o", "first.png")[0] == 0
    # Another render in between, so the reproduction cannot come from the server's cache.
    assert run_cli("generate", "-w", TINY, "-p", "a blue boat", "--seed", "8", "-o", "other.png")[0] == 0

    code, out, _ = run_cli("metadata", "show", "first.png")
    assert code == 0 and "Seed: 7" in out and "a red barn in a field" in out and "tiny-sd15" in out

    outputs_before = len(list(gen_env.output_dir.rglob("*.png")))
    code, out, err = run_cli("reproduce", "first.png", "-o", "again.png")
    assert code == 0, err
    assert len(list(gen_env.output_dir.rglob("*.png"))) == outputs_before + 1  # rendered anew
    assert strip_comfy_gen_chunks(tmp_path / "again.png") == strip_comfy_gen_chunks(tmp_path / "first.png")
    assert strip_comfy_gen_chunks(tmp_path / "again.png") != strip_comfy_gen_chunks(tmp_path / "other.png")
    meta = json.loads(chunks(tmp_path / "again.png")["comfygen_metadata"])
    assert meta["parameters"]["seed"] == 7


def test_reproduce_plain_comfyui_image_queues_its_embedded_graph(gen_env: Emulator, tmp_path: Path) -> None:
    assert run_cli("generate", "-w", TINY, "-p", "a quiet harbour", "--seed", "11", "-o", "a.png",
                   "--no-metadata")[0] == 0
    assert "comfygen_metadata" not in chunks(tmp_path / "a.png")
    assert not (tmp_path / "a.png.json").exists()
    code, _, err = run_cli("reproduce", "a.png", "-o", "b.png")
    assert code == 0, err
    assert _node(_graph(tmp_path / "b.png"), "KSampler")["inputs"]["seed"] == 11


def test_reproduce_without_metadata_fails_cleanly(gen_env: Emulator, tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    code, _, err = run_cli("reproduce", "plain.png")
    assert code == 1 and "No comfy-gen metadata" in err and "Traceback" not in err


def test_json_progress_prints_one_object_per_event(gen_env: Emulator, tmp_path: Path) -> None:
    code, out, err = run_cli("generate", "-w", TINY, "-p", "a green tree", "--steps", "3", "--json-progress")
    assert code == 0, err
    events = json_lines(out)
    types = [e["type"] for e in events]
    # The original's shapes (comfy_gen.progress_events), then comfy-gen's result.
    assert types[:2] == ["connected", "start"] and types[-3:] == ["complete", "attempt", "result"]
    assert set(types) <= {"connected", "start", "node", "progress", "cached", "complete", "attempt", "result"}
    progress = [e for e in events if e["type"] == "progress"]
    assert [p["step"] for p in progress] == [1, 2, 3]
    assert progress[-1]["max_steps"] == 3 and progress[-1]["percent"] == 100
    assert progress[-1]["message"] == "Sampling: 3/3 steps (100%)" and "eta_seconds" in progress[-1]
    complete = events[-3]
    assert complete["elapsed_seconds"] >= 0 and complete["prompt_id"] == events[-1]["prompt_id"]
    result = events[-1]
    assert result["status"] == "unvalidated" and Path(result["file"]).is_file()
    # No -o: the image goes to <output_dir>/adhoc/.
    assert Path(result["file"]).parent == tmp_path / "output" / "adhoc"


def test_preset_lora_and_flags_reach_the_graph(gen_env: Emulator, tmp_path: Path) -> None:
    code, _, err = run_cli("generate", "-w", TINY, "-p", "a small house", "--preset", "fast", "--steps", "5",
                           "--lora", "tiny_sd15_lora.safetensors:0.7", "--width", "96", "--height", "64",
                           "-o", "p.png")
    assert code == 0, err
    graph = _graph(tmp_path / "p.png")
    sampler = _node(graph, "KSampler")["inputs"]
    assert sampler["steps"] == 5                      # flag beats preset (15)
    assert sampler["sampler_name"] == "dpmpp_2m"      # preset beats workflow (euler)
    lora = _node(graph, "LoraLoader")["inputs"]
    assert lora["lora_name"] == "tiny_sd15_lora.safetensors" and lora["strength_model"] == 0.7
    assert Image.open(tmp_path / "p.png").size == (96, 64)
    assert json.loads(chunks(tmp_path / "p.png")["comfygen_metadata"])["input"]["preset"] == "fast"


@pytest.mark.parametrize("crop, expected_size", [("cover", (64, 48)), ("contain", (64, 48))])
def test_input_image_is_resized_uploaded_and_wired(gen_env: Emulator, tmp_path: Path, input_png: Path,
                                                   crop: str, expected_size: tuple[int, int]) -> None:
    code, _, err = run_cli("generate", "-w", "sd15-img2img", "-p", "a watercolor of the scene",
                           "-i", input_png.name, "--resize", "64x48", "--crop", crop, "--denoise", "0.6",
                           "-o", "img2img.png")
    assert code == 0, err
    graph = _graph(tmp_path / "img2img.png")
    name = _node(graph, "LoadImage")["inputs"]["image"]
    assert name.startswith("input_") and name.endswith(".png")
    assert Image.open(gen_env.input_dir / name).size == expected_size
    assert _node(graph, "KSampler")["inputs"]["denoise"] == 0.6


def test_input_image_from_url(gen_env: Emulator, tmp_path: Path) -> None:
    assert run_cli("generate", "-w", TINY, "-p", "a yellow kite", "--seed", "1", "-o", "src.png")[0] == 0
    src = _node(_graph(tmp_path / "src.png"), "SaveImage")
    served = next(gen_env.output_dir.rglob(f"{Path(src['inputs']['filename_prefix']).name}_*.png"))
    url = f"{gen_env.url}/view?filename={served.name}&subfolder=comfy-gen&type=output"
    code, _, err = run_cli("generate", "-w", "sd15-img2img", "-p", "a kite at dusk", "-i", url, "-o", "u.png")
    assert code == 0, err
    name = _node(_graph(tmp_path / "u.png"), "LoadImage")["inputs"]["image"]
    assert (gen_env.input_dir / name).is_file()


def test_dry_run_checks_everything_and_queues_nothing(gen_env: Emulator, tmp_path: Path,
                                                      input_png: Path) -> None:
    before = _history_size(gen_env)
    uploaded = set(gen_env.input_dir.iterdir())
    code, _, err = run_cli("generate", "-w", "sd15-img2img", "--dry-run", "-i", input_png.name,
                           "--resize", "64x64", "-o", "never.png")
    assert code == 0, err
    assert "nothing was queued" in err
    assert _history_size(gen_env) == before
    assert set(gen_env.input_dir.iterdir()) == uploaded  # the input image was checked, not uploaded
    assert not (tmp_path / "never.png").exists()


def _write(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return name



USAGE_ERRORS = [
    pytest.param(["--preset", "nope"], "Unknown preset 'nope'", id="unknown-preset"),
    pytest.param(["--steps", "0"], "steps must be", id="steps-range"),
    pytest.param(["--cfg", "45"], "cfg must be", id="cfg-range"),
    pytest.param(["--width", "100"], "divisible by 8", id="width-not-multiple-of-8"),
    pytest.param(["--denoise", "1.5"], "denoise must be", id="denoise-range"),
    pytest.param(["--lora", "detail.safetensors:strong"], "Invalid LoRA strength", id="lora-not-a-number"),
    pytest.param(["--lora", "detail.safetensors:-1"], "must be >= 0", id="lora-negative"),
    pytest.param(["--lora", "missing_lora.safetensors"], "missing_lora.safetensors", id="lora-not-on-server"),
    pytest.param(["--checkpoint", "tiny_sd15_v2.safetensors"], "did you mean: tiny_sd15.safetensors",
                 id="missing-model-with-suggestion"),
    pytest.param(["-i", "photo.png", "--resize", "64by64"], "Invalid size", id="bad-resize"),
    pytest.param(["-i", "/etc/hostname"], "is not a readable image", id="input-not-an-image"),
    pytest.param(["-i", "photo.png", "--crop", "cover"], "needs --resize", id="crop-without-resize"),
    pytest.param(["-o", "photo.png/out.png"], "photo.png is a file, not a folder", id="output-under-a-file"),
    pytest.param(["--retry-strategy", "lucky"], "Unknown retry strategy", id="unknown-strategy"),
    pytest.param(["--workflow", "no-such-workflow"], "Unknown workflow", id="unknown-workflow"),
    pytest.param(["--workflow", "@bad.json"], "invalid JSON at line", id="invalid-json"),
    pytest.param(["--workflow", "@ui.json"], "UI-format workflow", id="ui-format"),
    pytest.param(["--url", "@down"], "not reachable", id="server-unreachable"),
]


@pytest.mark.parametrize("extra, message", USAGE_ERRORS)
def test_usage_and_config_errors_exit_2_before_queueing(gen_env: Emulator, tmp_path: Path, input_png: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        extra: list[str], message: str) -> None:
    monkeypatch.setenv("COMFY_GEN_HTTP_RETRIES", "1")
    workflow = TINY if "--workflow" not in extra else None
    args = []
    for value in extra:
        if value == "@bad.json":
            value = _write(tmp_path, "bad.json", '{"1": {"class_type": "KSampler",,}')
        elif value == "@ui.json":
            value = _write(tmp_path, "ui.json", json.dumps({"nodes": [], "links": [], "version": 0.4}))
        elif value == "@down":
            value = f"http://127.0.0.1:{free_port()}"
        args.append(value)
    if "-i" in args and workflow:
        workflow = "sd15-img2img"
    before = _history_size(gen_env)
    code, _, err = run_cli("generate", *(["-w", workflow] if workflow else []), "-p", "a cat", *args)
    assert code == 2, err
    assert message in err and err.startswith("Error:") and "Traceback" not in err
    assert _history_size(gen_env) == before


def test_execution_error_exits_1_without_output(gen_env: Emulator, tmp_path: Path) -> None:
    gen_env.faults.error_node_class = "VAEDecode"
    code, _, err = run_cli("generate", "-w", TINY, "-p", "a cup of tea", "-o", "fail.png")
    assert code == 1
    assert "VAEDecode" in err and "Traceback" not in err
    assert not (tmp_path / "fail.png").exists()


def test_server_unreachable_is_a_one_paragraph_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMFY_GEN_COMFYUI_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("COMFY_GEN_HTTP_RETRIES", "1")
    code, out, err = run_cli("generate", "-w", TINY, "-p", "a cat")
    assert code == 2 and out == ""
    assert err.startswith("Error: ComfyUI is not reachable") and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 3   # message and hint, no stack


def test_job_lost_twice_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server restart loses the job; it is queued again once, a second loss is a runtime failure."""
    import threading
    import time

    with Emulator(step_time=0.1, data_dir=tmp_path / "emu") as emu:
        monkeypatch.setenv("COMFY_GEN_COMFYUI_URL", emu.url)
        monkeypatch.setenv("COMFY_GEN_POLL_INTERVAL", "0.1")
        restarts: list[float] = []
        emu.hold()  # each job (the first, then the one queued again) is running when the restart hits

        def restart_when_running() -> None:
            for _ in range(2):
                emu.wait_held(1, timeout=60)
                emu.restart()  # loses the held job; the hold stays on
                restarts.append(time.monotonic())

        killer = threading.Thread(target=restart_when_running, daemon=True)
        killer.start()
        code, _, err = run_cli("generate", "-w", TINY, "-p", "a paper lantern", "--steps", "30", "-o", "lost.png")
        killer.join(timeout=60)
    assert len(restarts) == 2
    assert code == 1 and "neither the queue nor the history" in err and "Traceback" not in err
    assert not (tmp_path / "lost.png").exists()
