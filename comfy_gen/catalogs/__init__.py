"""Catalogs: saved prompts (``--prompt-preset``), the LoRA catalog (``--lora-preset``,
``--list-loras``) and the suggestions built on it (``suggest_model``, ``suggest_loras``).

    from comfy_gen.catalogs import load_lora_catalog, suggest_loras, suggest_model
    suggest_model("text-to-video").recommended
    [s.name for s in suggest_loras("a product photo of a watch", "v1-5-pruned-emaonly.safetensors")]

The shipped YAML files are neutral samples; ``catalogs_for(settings)`` loads the
user's files when ``COMFY_GEN_LORA_CATALOG_FILE`` / ``COMFY_GEN_PROMPT_CATALOG_FILE``
are set. Schemas: ``lora_catalog.schema.json``, ``prompt_catalog.schema.json``.
"""

from __future__ import annotations

from typing import Any

from comfy_gen.catalogs.loader import (LORA_SCHEMA, PROMPT_SCHEMA, SHIPPED_LORA_CATALOG, SHIPPED_PROMPT_CATALOG,
                                       load_lora_catalog, load_prompt_catalog)
from comfy_gen.catalogs.model import LoraCatalog, LoraEntry, ModelScenario, PromptCatalog, PromptPreset
from comfy_gen.catalogs.suggest import LoraSuggestion, ModelSuggestion, suggest_loras, suggest_model


def lora_catalog_for(settings: Any) -> LoraCatalog:
    """The LoRA catalog these settings name (``lora_catalog_file``), else the shipped one."""
    return load_lora_catalog(getattr(settings, "lora_catalog_file", None))


def prompt_catalog_for(settings: Any) -> PromptCatalog:
    """The prompt catalog these settings name (``prompt_catalog_file``), else the shipped one."""
    return load_prompt_catalog(getattr(settings, "prompt_catalog_file", None))


__all__ = [
    "LORA_SCHEMA", "PROMPT_SCHEMA", "SHIPPED_LORA_CATALOG", "SHIPPED_PROMPT_CATALOG", "LoraCatalog", "LoraEntry",
    "LoraSuggestion", "ModelScenario", "ModelSuggestion", "PromptCatalog", "PromptPreset", "load_lora_catalog",
    "load_prompt_catalog", "lora_catalog_for", "prompt_catalog_for", "suggest_loras", "suggest_model",
]
