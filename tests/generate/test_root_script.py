"""The root generate.py: every command the original had, listed by --help and working."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from comfy_gen.emulator import Emulator
from tests.conftest import REPO_ROOT


def _root(*args: str, cwd: Path, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"COMFY_GEN_COMFYUI_URL": url} if url else {})}
    return subprocess.run([sys.executable, str(REPO_ROOT / "generate.py"), *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env=env)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_original_command(tmp_path: Path, flag: str) -> None:
    proc = _root(flag, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for command in ("--cancel PROMPT_ID", "--list-loras", "--list-presets", "metadata show IMAGE", "--dry-run",
                    "--workflow", "--prompt", "--negative-prompt", "--input-image", "--resize", "--crop",
                    "--denoise", "--lora ", "--lora-preset", "--prompt-preset", "--validate / --no-validate",
                    "--positive-threshold", "--retry-strategy", "--max-attempts", "--quiet", "--json-progress",
                    "--no-metadata", "--no-embed-metadata", "--project", "--tags", "--batch-id", "--steps",
                    "--cfg", "--seed", "--width", "--height", "--sampler", "--scheduler", "--preset",
                    "docs/MIGRATING.md"):
        assert command in proc.stdout, command


def test_cancel_by_id_cancels_that_job(fresh_emulator: Emulator, tmp_path: Path) -> None:
    emu = fresh_emulator
    emu.hold()
    graph = json.loads((REPO_ROOT / "workflows" / "tiny-sd15.json").read_text())
    running = httpx.post(f"{emu.url}/prompt", json={"prompt": graph, "client_id": "a"}).json()["prompt_id"]
    graph["5"]["inputs"]["seed"] = 99
    waiting = httpx.post(f"{emu.url}/prompt", json={"prompt": graph, "client_id": "b"}).json()["prompt_id"]
    assert emu.wait_held(1, timeout=60) == [running]
    proc = _root("--cancel", waiting, cwd=tmp_path, url=emu.url)
    assert proc.returncode == 0, proc.stderr
    assert f"{waiting}: deleted" in proc.stdout
    queue = httpx.get(f"{emu.url}/queue").json()
    assert queue["queue_pending"] == [] and [item[1] for item in queue["queue_running"]] == [running]
    proc = _root("--cancel", "no-such-job", cwd=tmp_path, url=emu.url)
    assert proc.returncode == 1 and "neither running nor pending" in proc.stderr
    emu.release()


def test_list_loras_and_presets(gen_env: Emulator, tmp_path: Path) -> None:
    proc = _root("--list-loras", cwd=tmp_path, url=gen_env.url)
    assert proc.returncode == 0, proc.stderr
    assert "film_grain.safetensors" in proc.stdout and "LoRA presets" in proc.stdout
    proc = _root("--list-presets", cwd=tmp_path)
    assert proc.returncode == 0 and "mountain_lake" in proc.stdout and "high-quality" in proc.stdout
