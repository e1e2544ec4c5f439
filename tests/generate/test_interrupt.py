"""Ctrl-C during `comfy-gen generate`: only our job is interrupted, nothing partial is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from comfy_gen.emulator import Emulator


@pytest.fixture
def slow_emulator(tmp_path: Path):
    with Emulator(step_time=0.2, data_dir=tmp_path / "slow-emu") as emu:
        yield emu


def _history(emu: Emulator, prompt_id: str, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = httpx.get(f"{emu.url}/history/{prompt_id}").json().get(prompt_id)
        if entry:
            return entry
        time.sleep(0.05)
    raise AssertionError(f"{prompt_id} never reached the history")


def test_sigint_cancels_our_job_removes_output_and_exits_130(slow_emulator: Emulator, tmp_path: Path) -> None:
    env = {**os.environ, "COMFY_GEN_COMFYUI_URL": slow_emulator.url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "comfy_gen.cli", "generate", "-w", "tiny-sd15", "-p", "a calm lake",
         "--steps", "40", "-o", "partial.png", "--json-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    prompt_id = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            prompt_id = event.get("prompt_id") or prompt_id
            if event["type"] == "progress":
                break
        assert prompt_id, "no progress before the process ended"
        # Someone else's job waits behind ours: Ctrl-C must not touch it.
        foreign = httpx.post(f"{slow_emulator.url}/prompt", json={"prompt": _graph_of_other(), "client_id": "x"})
        foreign_id = foreign.json()["prompt_id"]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert f"Cancelled our job {prompt_id}" in out
    entry = _history(slow_emulator, prompt_id)
    assert entry["status"]["status_str"] == "error"
    assert "execution_interrupted" in [m[0] for m in entry["status"]["messages"]]
    # The other client's job was not interrupted: it is still queued or it ran to success.
    assert _history(slow_emulator, foreign_id, timeout=15)["status"]["status_str"] == "success"
    assert not (tmp_path / "partial.png").exists() and not (tmp_path / "partial.png.json").exists()
    assert not list((tmp_path / "state" / "work").rglob("*"))  # no attempt files left behind


def _graph_of_other() -> dict:
    wf = json.loads(Path(__file__).resolve().parents[2].joinpath("workflows", "tiny-sd15.json").read_text())
    wf["5"]["inputs"]["steps"] = 2
    wf["5"]["inputs"]["seed"] = 123
    return wf
