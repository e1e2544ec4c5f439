"""The prompt enhancer: a chat model rewrites a prompt before it renders.

Two backends behind one protocol (``core.EnhancerBackend``): a local
transformers model (``local``, default Qwen/Qwen2.5-0.5B-Instruct on CPU) and an
OpenAI-compatible chat endpoint (``http``: Ollama, vLLM, llama.cpp server).
Settings: ``COMFY_GEN_ENHANCE_*`` (comfy_gen.config). docs/validation.md#prompt-enhancer.

Usage::

    result = enhance_prompt("a red fox", style="cinematic", settings=get_settings())
    result.prompt, result.original, result.record()
"""

from __future__ import annotations

from comfy_gen.enhance.clean import clean_output
from comfy_gen.enhance.core import (Enhanced, Enhancer, EnhancerBackend, backend_from_settings, enhance_prompt,
                                    get_enhancer, reset_enhancers)
from comfy_gen.enhance.options import EnhanceOptions, Refiner, current_refiner, refining_with
from comfy_gen.enhance.styles import DEFAULT_STYLE, STYLES, check_style, system_prompt

__all__ = ["DEFAULT_STYLE", "STYLES", "EnhanceOptions", "Enhanced", "Enhancer", "EnhancerBackend", "Refiner",
           "backend_from_settings", "check_style", "clean_output", "current_refiner", "enhance_prompt",
           "get_enhancer", "refining_with", "reset_enhancers", "system_prompt"]
