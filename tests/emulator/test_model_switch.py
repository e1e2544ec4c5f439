"""The model-switch cost: a job whose checkpoint or LoRAs differ from the previous job's loads them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from comfy_gen.emulator import Emulator
from comfy_gen.emulator.executor import model_set
from comfy_gen.params import GenerationParams, LoraSpec
from comfy_gen.workflow import apply_params

TINY = json.loads((Path(__file__).resolve().parents[2] / "workflows" / "tiny-sd15.json").read_text())
A, B = "tiny_sd15.safetensors", "v1-5-pruned-emaonly.safetensors"
LORA = "tiny_sd15_lora.safetensors"


def graph(checkpoint: str, loras: tuple[LoraSpec, ...] = (), seed: int = 1) -> dict[str, Any]:
    return apply_params(TINY, GenerationParams(checkpoint=checkpoint, loras=loras, seed=seed))


IMAGE_ONLY = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "plain"}}}


def run_all(emu: Emulator, prompts: list[dict[str, Any]]) -> list[str]:
    with httpx.Client(base_url=emu.url) as client:
        ids = [client.post("/prompt", json={"prompt": p}).json()["prompt_id"] for p in prompts]
    assert emu.wait_idle(timeout=60), emu.stats()
    return ids


def test_a_job_loads_models_only_when_they_differ_from_the_previous_job(fresh_emulator: Emulator) -> None:
    prompts = [graph(A, seed=1), graph(A, seed=2), graph(B), graph(A), IMAGE_ONLY, graph(A, seed=3),
               graph(A, (LoraSpec(LORA, 0.5),)), graph(A, (LoraSpec(LORA, 0.8),)), graph(A, (LoraSpec(LORA, 0.8),), 9)]
    ids = run_all(fresh_emulator, prompts)
    stats = fresh_emulator.stats()
    assert stats["jobs_completed"] == len(prompts)
    # A (first load), B, A again, A + LoRA 0.5, A + LoRA 0.8; the image-only job keeps A loaded
    assert stats["model_switches"] == 5
    assert [entry["prompt_id"] for entry in stats["model_log"]] == [ids[0], ids[2], ids[3], ids[6], ids[7]]
    assert stats["loaded_models"] == model_set(prompts[-1])
    assert any(m.startswith(f"lora_name={LORA}@0.8") for m in stats["loaded_models"])


def test_a_restart_unloads_the_models(fresh_emulator: Emulator) -> None:
    run_all(fresh_emulator, [graph(A)])
    fresh_emulator.restart()
    run_all(fresh_emulator, [graph(A, seed=5)])
    assert fresh_emulator.stats()["model_switches"] == 2


def test_the_switch_time_is_spent_by_the_job_that_switches(tmp_path: Path) -> None:
    with Emulator(step_time=0.0, model_switch_time=0.3, data_dir=tmp_path / "emu") as emu:
        run_all(emu, [graph(A), graph(A, seed=2)])
        first, second = emu.stats()["busy"]
        # A lower bound only (a sleep never ends early), never an upper one.
        assert first[1] - first[0] >= 0.25
        with httpx.Client(base_url=emu.url) as client:
            answer = client.post("/_emulator/faults", json={"model_switch_time": 0})
            assert answer.status_code == 200 and answer.json()["model_switch_time"] == 0.0
            assert client.post("/_emulator/faults", json={"model_switch_time": "x"}).status_code == 400
        assert emu.faults.model_switch_time == 0.0
        run_all(emu, [graph(B)])
        assert emu.stats()["model_switches"] == 2
        emu.faults.reset()
        assert emu.faults.model_switch_time is None  # back to the emulator's own 0.3 s


def test_an_interrupt_during_a_load_leaves_nothing_loaded(tmp_path: Path) -> None:
    with Emulator(step_time=0.0, model_switch_time=30, data_dir=tmp_path / "emu") as emu:
        with httpx.Client(base_url=emu.url) as client:
            client.post("/prompt", json={"prompt": graph(A)})
            while emu.stats()["queue_running"] == 0:  # the job is loading its models
                time.sleep(0.01)
            client.post("/interrupt", json={})
        assert emu.wait_idle(timeout=20)
        stats = emu.stats()
        assert stats["jobs_interrupted"] == 1 and stats["model_switches"] == 0 and stats["loaded_models"] == []


@pytest.mark.parametrize("value", ["-1", "nan", "abc"], ids=["negative", "nan", "text"])
def test_cli_rejects_a_bad_model_switch_time(value: str) -> None:
    from comfy_gen.cli.emulator_cmd import emulator

    result = CliRunner().invoke(emulator, ["--model-switch-time", value, "--port", "0"])
    assert result.exit_code == 2 and "--model-switch-time" in result.output
