"""The seed's example scripts (examples/) run unchanged against the emulator."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from comfy_gen.emulator import Emulator
from tests.conftest import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"
#: Any 40-hex commit id: the Hugging Face cache layout needs one.
FAKE_COMMIT = "0" * 40


def _run(script: str, tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run an example from an unrelated folder; its /tmp outputs land in tmp_path/tmp."""
    out_dir = tmp_path / "tmp"
    out_dir.mkdir(exist_ok=True)
    proc = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env={**os.environ, "TMPDIR": str(out_dir), **env})
    return proc, out_dir


def _assert_png(path: Path) -> None:
    assert path.is_file(), path
    assert Image.open(path).format == "PNG"


def test_end_to_end_example_uploads(gen_env: Emulator, s3_env, s3_server, tmp_path: Path) -> None:
    proc, out_dir = _run("end_to_end.py", tmp_path, COMFY_GEN_COMFYUI_URL=gen_env.url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[OK] Available at: " in proc.stdout
    _assert_png(out_dir / "landscape.png")
    names = [o.object_name for o in s3_server.client().list_objects(s3_env.minio_bucket, recursive=True)]
    assert names == ["landscape.png"]


def test_end_to_end_example_reports_server_down(tmp_path: Path) -> None:
    proc, _ = _run("end_to_end.py", tmp_path, COMFY_GEN_COMFYUI_URL="http://127.0.0.1:9",
                   COMFY_GEN_HTTP_RETRIES="1")
    assert proc.returncode == 2 and "[ERROR] Server unavailable" in proc.stdout


def test_batch_example(gen_env: Emulator, tmp_path: Path) -> None:
    proc, out_dir = _run("batch_processing.py", tmp_path, COMFY_GEN_COMFYUI_URL=gen_env.url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("[OK]") == 3
    for i in range(3):
        _assert_png(out_dir / f"batch_{i}.png")


@pytest.fixture
def hub_cache(tiny_clip_dir: Path, tmp_path: Path) -> Path:
    """A Hugging Face cache in which the tiny CLIP stands in for openai/clip-vit-base-patch32,
    so the seed's ``ImageValidator()`` (hub id default) loads offline."""
    repo = tmp_path / "hf-cache" / "models--openai--clip-vit-base-patch32"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(FAKE_COMMIT)
    shutil.copytree(tiny_clip_dir, repo / "snapshots" / FAKE_COMMIT)
    return tmp_path / "hf-cache"


def test_validation_example(gen_env: Emulator, hub_cache: Path, tiny_clip_dir: Path, tmp_path: Path) -> None:
    proc, out_dir = _run("validation_workflow.py", tmp_path, COMFY_GEN_COMFYUI_URL=gen_env.url,
                         HF_HUB_CACHE=str(hub_cache), HF_HUB_OFFLINE="1",
                         COMFY_GEN_CLIP_MODEL=str(tiny_clip_dir), COMFY_GEN_CLIP_DEVICE="cpu")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[INFO] Score: " in proc.stdout and "[OK] Validation passed!" in proc.stdout
    _assert_png(out_dir / "attempt_1.png")
