"""Fixtures for the generate/reproduce tests: the CLI pointed at an emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from comfy_gen.config import reset_settings_cache
from comfy_gen.emulator import Emulator


@pytest.fixture
def gen_env(emu: Emulator, use_backend) -> Iterator[Emulator]:
    """The shared emulator, exported as COMFY_GEN_COMFYUI_URL (CLI runs read the env)."""
    use_backend(emu.url)
    yield emu


@pytest.fixture
def clip_env(gen_env: Emulator, tiny_clip_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """gen_env plus COMFY_GEN_CLIP_MODEL pointing at the tiny CLIP (CPU)."""
    monkeypatch.setenv("COMFY_GEN_CLIP_MODEL", str(tiny_clip_dir))
    monkeypatch.setenv("COMFY_GEN_CLIP_DEVICE", "cpu")
    reset_settings_cache()
    return gen_env


@pytest.fixture
def input_png(tmp_path: Path) -> Path:
    """A 120x80 RGB PNG inside the working directory (an allowed input folder)."""
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.new("RGB", (120, 80), (30, 120, 200)).save(path)
    return path
