"""comfy-gen: declarative, validated, resumable ComfyUI rendering.

The public API is re-exported here lazily (so importing ``comfy_gen`` stays
cheap); ``__all__`` is the supported surface and a test keeps it in sync.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # settings and values
    "Settings": "comfy_gen.config",
    "get_settings": "comfy_gen.config",
    "GenerationParams": "comfy_gen.params",
    "LoraSpec": "comfy_gen.params",
    "ComfyGenError": "comfy_gen.errors",
    # ComfyUI
    "ComfyUIClient": "comfy_gen.comfyui",
    "JobResult": "comfy_gen.comfyui",
    "OutputFile": "comfy_gen.comfyui",
    "Emulator": "comfy_gen.emulator",
    # workflows and the one render path
    "load_workflow": "comfy_gen.workflow",
    "apply_params": "comfy_gen.workflow",
    "get_params": "comfy_gen.workflow",
    "check_workflow": "comfy_gen.workflow",
    "render": "comfy_gen.pipeline",
    "RenderResult": "comfy_gen.pipeline",
    # the one-image service (comfy_gen.service.generate; not re-exported here, as
    # the name `generate` is the seed facade module comfy_gen.generate)
    "GenerateRequest": "comfy_gen.service",
    "GenerateResult": "comfy_gen.service",
    "CancelToken": "comfy_gen.service",
    "run_attempts": "comfy_gen.generation",
    "Thresholds": "comfy_gen.validation",
    # validation and refinement
    "ImageValidator": "comfy_gen.validation",
    "get_validator": "comfy_gen.validation",
    "validate_image": "comfy_gen.validation",
    "get_retry_params": "comfy_gen.strategies",
    "adjust_prompt_for_retry": "comfy_gen.strategies",
    "register_strategy": "comfy_gen.strategies",
    # storage
    "get_storage": "comfy_gen.storage",
    "upload_to_minio": "comfy_gen.storage",
    "Outbox": "comfy_gen.storage",
    # categories and recipes
    "load_registry": "comfy_gen.categories",
    "compose": "comfy_gen.categories",
    "load_recipe": "comfy_gen.recipes",
    "expand": "comfy_gen.recipes",
}

__all__ = sorted(_EXPORTS)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'comfy_gen' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
