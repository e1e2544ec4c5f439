"""The catalogs' values: LoRA entries, model scenarios, saved prompts (frozen)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from comfy_gen.errors import UsageError
from comfy_gen.params import LoraSpec


@dataclass(frozen=True)
class LoraEntry:
    """What one LoRA file is for. ``compatible_with`` empty means any model."""

    filename: str
    description: str = ""
    tags: tuple[str, ...] = ()
    use_cases: tuple[str, ...] = ()
    compatible_with: tuple[str, ...] = ()
    base_model: str | None = None
    recommended_strength: float | None = None
    category: str | None = None
    source: str | None = None

    def compatible(self, model: str) -> bool:
        """True when ``compatible_with`` is empty or one entry and ``model`` contain
        each other (case-insensitive substrings, either way round)."""
        if not self.compatible_with:
            return True
        model = model.lower()
        return any(c.lower() in model or (model and model in c.lower()) for c in self.compatible_with)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.filename, "description": self.description, "tags": list(self.tags),
                "use_cases": list(self.use_cases), "compatible_with": list(self.compatible_with),
                "base_model": self.base_model, "recommended_strength": self.recommended_strength,
                "category": self.category, "source": self.source}


@dataclass(frozen=True)
class ModelScenario:
    """A named scenario (``model_suggestions.NAME``): model, workflow and default LoRAs."""

    name: str
    model: str
    workflow: str | None = None
    description: str = ""
    default_loras: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    prompt_template: str | None = None
    negative_template: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model, "workflow": self.workflow,
                "description": self.description, "default_loras": list(self.default_loras),
                "keywords": list(self.keywords), "prompt_template": self.prompt_template,
                "negative_template": self.negative_template}


@dataclass(frozen=True)
class LoraCatalog:
    """The LoRA catalog file, loaded and checked (``load_lora_catalog``)."""

    loras: tuple[LoraEntry, ...] = ()
    model_suggestions: Mapping[str, ModelScenario] = field(default_factory=dict)
    agent_tips: tuple[str, ...] = ()
    source: str = ""

    def get(self, filename: str) -> LoraEntry | None:
        return next((entry for entry in self.loras if entry.filename == filename), None)

    def preset_loras(self, name: str) -> tuple[LoraSpec, ...]:
        """The LoRAs of ``--lora-preset NAME``: each default LoRA at its catalog
        ``recommended_strength`` (1.0 when unset); ``NAME:STRENGTH`` entries keep
        their own strength. UsageError (exit 2) for an unknown preset."""
        scenario = self.model_suggestions.get(name)
        if scenario is None:
            known = ", ".join(sorted(self.model_suggestions)) or "none"
            raise UsageError(f"Unknown LoRA preset {name!r} in {self.source}; available: {known}",
                             hint="List them with `comfy-gen generate --list-loras`.")
        specs = []
        for item in scenario.default_loras:
            name, strength = item, None
            head, sep, tail = item.rpartition(":")
            if sep:
                try:
                    name, strength = head, float(tail)
                except ValueError:
                    name = item  # a ':' inside the file name, not a strength
            if strength is None:
                entry = self.get(name)
                strength = entry.recommended_strength if entry and entry.recommended_strength is not None else 1.0
            specs.append(LoraSpec.parse(f"{name}:{strength}"))  # the same checks as --lora
        return tuple(specs)


@dataclass(frozen=True)
class PromptPreset:
    """One saved prompt (``saved_prompts.NAME``)."""

    name: str
    positive: str
    negative: str | None = None
    category: str | None = None
    subject: str | None = None
    tested_with: tuple[str, ...] = ()
    notes: str | None = None
    recommended_settings: Mapping[str, Any] = field(default_factory=dict)
    recommended_loras: tuple[str, ...] = ()

    def negative_for(self, negative: str | None) -> str | None:
        """The negative prompt to use: the preset's prepended to ``negative``
        (``"<preset>, <yours>"``), either alone when the other is empty."""
        parts = [p for p in (self.negative, negative) if p]
        return ", ".join(parts) if parts else negative

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "positive": self.positive, "negative": self.negative,
                "category": self.category, "subject": self.subject, "tested_with": list(self.tested_with),
                "notes": self.notes, "recommended_settings": dict(self.recommended_settings),
                "recommended_loras": list(self.recommended_loras)}


@dataclass(frozen=True)
class PromptCatalog:
    """The prompt catalog file, loaded and checked (``load_prompt_catalog``)."""

    saved_prompts: Mapping[str, PromptPreset] = field(default_factory=dict)
    source: str = ""

    def get(self, name: str) -> PromptPreset:
        """A saved prompt; UsageError (exit 2) naming the known ones."""
        preset = self.saved_prompts.get(name)
        if preset is None:
            known = ", ".join(sorted(self.saved_prompts)) or "none"
            raise UsageError(f"Unknown prompt preset {name!r} in {self.source}; available: {known}",
                             hint="List them with `comfy-gen generate --list-presets`.")
        return preset
