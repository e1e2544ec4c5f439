"""Small helpers shared by the storage tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

from PIL import Image, PngImagePlugin

COMFY_PROMPT = {"3": {"class_type": "KSampler", "inputs": {"seed": 7, "steps": 20}},
                "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI"}}}
COMFY_WORKFLOW = {"nodes": [{"id": 3, "type": "KSampler"}], "links": [], "version": 0.4}


def make_png(path: Path, *, size: tuple[int, int] = (32, 24), noise: bool = False,
             comfy_chunks: bool = True) -> Path:
    """A small PNG, by default with the prompt/workflow text chunks ComfyUI writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if noise:
        img = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    else:
        img = Image.new("RGB", size, (40, 90, 160))
    info = PngImagePlugin.PngInfo()
    if comfy_chunks:
        info.add_text("prompt", json.dumps(COMFY_PROMPT))
        info.add_text("workflow", json.dumps(COMFY_WORKFLOW))
    img.save(path, pnginfo=info)
    return path
