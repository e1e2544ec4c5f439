"""The seed's example scripts (examples/) run unchanged against the emulator.

The scripts are the API reference's code blocks byte for byte, so they write to
the literal ``/tmp/...`` paths the reference uses. Runs are serialised with a
lock file (several checkouts may test on one machine), and any file already at
such a path is set aside for the run and put back after it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from filelock import FileLock
from PIL import Image

from comfy_gen.emulator import Emulator
from tests.conftest import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"
#: Any 40-hex commit id: the Hugging Face cache layout needs one.
FAKE_COMMIT = "0" * 40
TMP = Path("/tmp")


@pytest.fixture
def tmp_outputs(tmp_path: Path) -> Iterator[None]:
    """Exclusive use of the examples' /tmp output names for one test."""
    names = ["landscape.png", *(f"batch_{i}.png" for i in range(3)), *(f"attempt_{i}.png" for i in range(1, 4))]
    saved = tmp_path / "saved"
    saved.mkdir()
    with FileLock(str(TMP / "comfy-gen-examples.lock"), timeout=600):
        for name in names:
            if (TMP / name).exists():
                shutil.move(str(TMP / name), saved / name)
        try:
            yield
        finally:
            for name in names:
                (TMP / name).unlink(missing_ok=True)
                if (saved / name).exists():
                    shutil.move(str(saved / name), TMP / name)


def _run(script: str, tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run an example as its users did (the checkout importable), from an unrelated folder."""
    path = os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env={**os.environ, "PYTHONPATH": path, **env})
    return proc, TMP


def _assert_png(path: Path) -> None:
    assert path.is_file(), path
    assert Image.open(path).format == "PNG"


def test_examples_are_the_reference_text() -> None:
    """Unchanged: the reference's own imports, /tmp paths and prompts."""
    end_to_end = (EXAMPLES / "end_to_end.py").read_text()
    assert 'output_path = "/tmp/landscape.png"' in end_to_end and "tempfile" not in end_to_end
    assert 'output_path = f"/tmp/batch_{i}.png"' in (EXAMPLES / "batch_processing.py").read_text()
    assert 'output_path = f"/tmp/attempt_{attempt}.png"' in (EXAMPLES / "validation_workflow.py").read_text()


def test_end_to_end_example_uploads(gen_env: Emulator, s3_env, s3_server, tmp_path: Path, tmp_outputs) -> None:
    proc, out_dir = _run("end_to_end.py", tmp_path, COMFY_GEN_COMFYUI_URL=gen_env.url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[OK] Available at: " in proc.stdout
    _assert_png(out_dir / "landscape.png")
    names = [o.object_name for o in s3_server.client().list_objects(s3_env.minio_bucket, recursive=True)]
    assert names == ["landscape.png"]


def test_end_to_end_example_reports_server_down(tmp_path: Path, tmp_outputs) -> None:
    proc, _ = _run("end_to_end.py", tmp_path, COMFY_GEN_COMFYUI_URL="http://127.0.0.1:9",
                   COMFY_GEN_HTTP_RETRIES="1")
    assert proc.returncode == 2 and "[ERROR] Server unavailable" in proc.stdout


def test_batch_example(gen_env: Emulator, tmp_path: Path, tmp_outputs) -> None:
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


def test_validation_example(gen_env: Emulator, hub_cache: Path, tiny_clip_dir: Path, tmp_path: Path,
                            tmp_outputs) -> None:
    proc, out_dir = _run("validation_workflow.py", tmp_path, COMFY_GEN_COMFYUI_URL=gen_env.url,
                         HF_HUB_CACHE=str(hub_cache), HF_HUB_OFFLINE="1",
                         COMFY_GEN_CLIP_MODEL=str(tiny_clip_dir), COMFY_GEN_CLIP_DEVICE="cpu")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[INFO] Score: " in proc.stdout and "[OK] Validation passed!" in proc.stdout
    _assert_png(out_dir / "attempt_1.png")
