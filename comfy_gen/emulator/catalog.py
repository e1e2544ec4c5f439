"""The emulator's node catalog: a trimmed copy of a real server's ``/object_info``.

``data/object_info.json`` holds the recorded definitions (ComfyUI 0.3.64, see
tests/recordings) of the node classes the recorded and shipped workflows use.
Model-file combos (``ckpt_name``, ``lora_name``, ...) are filled at request time
from the emulator's model list, and LoadImage's list from the input folder, as
ComfyUI does when it rescans its folders. ``data/custom_nodes.json`` adds the
custom-node classes comfy-gen uses (segment-anything for ``--transparent``,
VideoHelperSuite's VHS_VideoCombine), written from those packs' sources; an
emulator started with ``custom_nodes=False`` is a server without the packs.
"""

from __future__ import annotations

import copy
import json
import mimetypes
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

#: Folders GET /models lists, in the recorded order (captures/010).
MODEL_FOLDERS: list[str] = [
    "checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models",
    "clip_vision", "style_models", "embeddings", "diffusers", "vae_approx", "controlnet",
    "gligen", "upscale_models", "custom_nodes", "hypernetworks", "photomaker",
    "classifiers", "model_patches", "audio_encoders",
]

#: ComfyUI's legacy folder names still resolve (folder_paths.map_legacy).
FOLDER_ALIASES: dict[str, str] = {"unet": "diffusion_models", "clip": "text_encoders"}

#: The recorded tiny models plus the neutral names the shipped workflows use.
DEFAULT_MODELS: dict[str, list[str]] = {
    "checkpoints": [
        "tiny_sd15.safetensors", "v1-5-pruned-emaonly.safetensors", "sd_xl_base_1.0.safetensors",
        "ltx-video-2b-v0.9.5.safetensors",
    ],
    "loras": ["tiny_sd15_lora.safetensors", "detail_tweaker.safetensors", "film_grain.safetensors"],
    "vae": ["tiny_sd15_vae.safetensors", "ae.safetensors", "sdxl_vae.safetensors", "wan_2.1_vae.safetensors"],
    "diffusion_models": ["tiny_sd15_unet.safetensors", "flux1-dev-fp8.safetensors",
                         "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors"],
    "text_encoders": [
        "tiny_sd15_clip_l.safetensors", "clip_l.safetensors", "t5xxl_fp16.safetensors",
        "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
    ],
    "embeddings": [],
}

#: input name -> model folder whose file list fills that combo.
COMBO_FOLDERS: dict[str, str] = {
    "ckpt_name": "checkpoints",
    "lora_name": "loras",
    "vae_name": "vae",
    "unet_name": "diffusion_models",
    "clip_name": "text_encoders",
    "clip_name1": "text_encoders",
    "clip_name2": "text_encoders",
    "clip_name3": "text_encoders",
    "clip_name4": "text_encoders",
    "control_net_name": "controlnet",
    "model_name": "upscale_models",
}

#: Nodes whose ``image`` combo lists the input folder and that validate the file
#: themselves (VALIDATE_INPUTS), so "sub/x.png" is accepted (captures/312).
IMAGE_INPUT_NODES = frozenset({"LoadImage", "LoadImageMask"})

#: Choices VAELoader always offers besides files (captures/014 vs object_info).
VAE_EXTRAS = ["pixel_space"]


@lru_cache(maxsize=1)
def _base_catalog() -> dict[str, Any]:
    text = resources.files("comfy_gen.emulator").joinpath("data/object_info.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@lru_cache(maxsize=1)
def _custom_catalog() -> dict[str, Any]:
    text = resources.files("comfy_gen.emulator").joinpath("data/custom_nodes.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    data.pop("_comment", None)
    return data


def custom_node_classes() -> list[str]:
    """The custom-node classes the emulator can serve."""
    return list(_custom_catalog())


def normalize_models(models: dict[str, list[str]] | None) -> dict[str, list[str]]:
    """Merge an override into the defaults; folder aliases map to canonical names."""
    merged = {k: list(v) for k, v in DEFAULT_MODELS.items()}
    for folder, names in (models or {}).items():
        merged[FOLDER_ALIASES.get(folder, folder)] = sorted(names)
    return merged


def input_images(input_dir: Path) -> list[str]:
    """Top-level image files of the input folder, as LoadImage lists them."""
    if not input_dir.is_dir():
        return []
    names = []
    for entry in input_dir.iterdir():
        mime = mimetypes.guess_type(entry.name)[0] or ""
        if entry.is_file() and mime.startswith("image/"):
            names.append(entry.name)
    return sorted(names)


class Catalog:
    """Node definitions with live model and input-file combos."""

    def __init__(self, models: dict[str, list[str]], input_dir: Path, *, custom_nodes: bool = True) -> None:
        self.models = models
        self.input_dir = input_dir
        self._classes: dict[str, Any] = {**_base_catalog(), **(_custom_catalog() if custom_nodes else {})}

    def class_names(self) -> list[str]:
        return list(self._classes)

    def has(self, class_type: Any) -> bool:
        return isinstance(class_type, str) and class_type in self._classes

    def raw(self, class_type: str) -> dict[str, Any]:
        """The static definition (do not mutate)."""
        info: dict[str, Any] = self._classes[class_type]
        return info

    def is_output(self, class_type: str) -> bool:
        return bool(self.raw(class_type).get("output_node"))

    def return_types(self, class_type: str) -> list[str]:
        return list(self.raw(class_type)["output"])

    def models_in(self, folder: str) -> list[str] | None:
        folder = FOLDER_ALIASES.get(folder, folder)
        if folder in self.models:
            return list(self.models[folder])
        if folder in MODEL_FOLDERS:
            return []
        return None

    def object_info(self, class_type: str | None = None) -> dict[str, Any]:
        """GET /object_info[/{class}]; an unknown class gives ``{}`` (captures/006)."""
        names = self.class_names() if class_type is None else [class_type]
        images = input_images(self.input_dir)
        out: dict[str, Any] = {}
        for name in names:
            if not self.has(name):
                continue
            out[name] = self.node_info(name, images)
        return out

    def node_info(self, class_type: str, images: list[str] | None = None) -> dict[str, Any]:
        info = copy.deepcopy(self.raw(class_type))
        if images is None:
            images = input_images(self.input_dir)
        for section in ("required", "optional"):
            for name, spec in info["input"].get(section, {}).items():
                choices = self._choices(class_type, name, images)
                if choices is not None:
                    _set_choices(spec, choices)
        return info

    def input_spec(self, class_type: str, images: list[str]) -> dict[str, dict[str, Any]]:
        """``{"required": {...}, "optional": {...}}`` with live combos."""
        inputs: dict[str, dict[str, Any]] = self.node_info(class_type, images)["input"]
        return inputs

    def _choices(self, class_type: str, name: str, images: list[str]) -> list[str] | None:
        if name == "image" and class_type in IMAGE_INPUT_NODES:
            return images
        if class_type in _custom_catalog():
            return None  # the packs list their own fixed choices (e.g. SAM model names)
        folder = COMBO_FOLDERS.get(name)
        if folder is None:
            return None
        files = list(self.models.get(folder, []))
        if class_type == "VAELoader":
            files += VAE_EXTRAS
        return files


def _set_choices(spec: list[Any], choices: list[str]) -> None:
    """Write choices into a legacy ``[[...], {...}]`` or V3 ``["COMBO", {options}]`` spec."""
    if spec and isinstance(spec[0], list):
        spec[0] = list(choices)
    elif spec and spec[0] == "COMBO":
        if len(spec) < 2:
            spec.append({})
        spec[1]["options"] = list(choices)
