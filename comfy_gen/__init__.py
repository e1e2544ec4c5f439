"""comfy-gen: declarative, validated, resumable ComfyUI rendering.

The public API is re-exported here lazily (so importing ``comfy_gen`` stays
cheap); ``__all__`` is the supported surface and a test keeps it in sync.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Settings": "comfy_gen.config",
    "get_settings": "comfy_gen.config",
    "GenerationParams": "comfy_gen.params",
    "LoraSpec": "comfy_gen.params",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'comfy_gen' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
