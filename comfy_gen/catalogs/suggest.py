"""Model and LoRA suggestions, scored as the original ComfyGen scored them.

``suggest_model(task)``: the catalog scenario named ``task`` when there is one,
else a fixed table (portrait/landscape/anime and anything unknown: SD 1.5;
video/text-to-video: Wan 2.2 T2V; image-to-video: Wan 2.2 I2V).

``suggest_loras(prompt, model, n)``: LoRAs whose ``compatible_with`` rules out
``model`` are skipped; the rest score +2 per tag and +3 per use case found in
the prompt (case-insensitive substrings), +5 for an ``acceleration`` tag when
the model is a Wan model; those scoring above zero, best first (catalog order
breaks ties), at most ``n``. Pure functions of their arguments and the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from comfy_gen.catalogs.model import LoraCatalog
from comfy_gen.errors import UsageError

TAG_SCORE = 2
USE_CASE_SCORE = 3
ACCELERATION_SCORE = 5

_SD15 = ("v1-5-pruned-emaonly.safetensors", "sd15-txt2img")
_WAN_T2V = ("wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", "wan22-t2v-vhs")
#: No Wan image-to-video workflow ships; LTX-Video animates a still image (workflows/ltxv-i2v.json).
_LTXV_I2V = ("ltx-video-2b-v0.9.5.safetensors", "ltxv-i2v")

#: task -> (model, workflow, alternatives, reason): the original's table.
MODEL_TABLE: dict[str, tuple[tuple[str, str], tuple[str, ...], str]] = {
    "portrait": (_SD15, ("sd_xl_base_1.0.safetensors",), "SD 1.5 renders portraits well at 512x768"),
    "landscape": (_SD15, ("sd_xl_base_1.0.safetensors",), "SD 1.5 is fast and reliable for landscapes"),
    "anime": (_SD15, ("sd_xl_base_1.0.safetensors",), "SD 1.5 fine-tunes cover most illustration styles"),
    "video": (_WAN_T2V, ("wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors",), "Wan 2.2 text-to-video"),
    "text-to-video": (_WAN_T2V, ("wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors",), "Wan 2.2 text-to-video"),
    "image-to-video": (_LTXV_I2V, ("wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors",), "LTX-Video image-to-video"),
}
DEFAULT_TASK = (_SD15, ("sd_xl_base_1.0.safetensors", "flux1-dev-fp8.safetensors"),
                "SD 1.5 is the general-purpose default")


@dataclass(frozen=True)
class ModelSuggestion:
    """The model (and workflow, default LoRAs) for a task; ``source`` says where it came from."""

    task: str
    recommended: str
    workflow: str | None
    reason: str
    source: str  # "catalog" | "table"
    alternatives: tuple[str, ...] = ()
    default_loras: tuple[str, ...] = ()
    scenario: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "recommended": self.recommended, "workflow": self.workflow,
                "reason": self.reason, "source": self.source, "alternatives": list(self.alternatives),
                "default_loras": list(self.default_loras), "scenario": self.scenario}


@dataclass(frozen=True)
class LoraSuggestion:
    """One suggested LoRA with its score and why."""

    name: str
    suggested_strength: float
    score: int
    matched_reasons: tuple[str, ...] = field(default_factory=tuple)
    description: str = ""

    @property
    def reason(self) -> str:
        return "; ".join(self.matched_reasons)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "suggested_strength": self.suggested_strength, "score": self.score,
                "reason": self.reason, "matched_reasons": list(self.matched_reasons),
                "description": self.description}


def _catalog(catalog: LoraCatalog | None) -> LoraCatalog:
    if catalog is not None:
        return catalog
    from comfy_gen.catalogs.loader import load_lora_catalog

    return load_lora_catalog()


def suggest_model(task: str, catalog: LoraCatalog | None = None) -> ModelSuggestion:
    """The model for ``task``: a catalog scenario of that name (``text-to-video``
    also finds ``text_to_video``), else the fixed table, else SD 1.5."""
    catalog = _catalog(catalog)
    key = (task or "").strip()
    folded = key.lower().replace(" ", "_").replace("-", "_")
    scenario = catalog.model_suggestions.get(key) or next(
        (s for name, s in catalog.model_suggestions.items() if name.lower() == folded), None)
    if scenario is not None:
        return ModelSuggestion(task=task, recommended=scenario.model, workflow=scenario.workflow,
                               reason=scenario.description or f"catalog scenario {scenario.name!r}",
                               source="catalog", default_loras=scenario.default_loras,
                               scenario=scenario.to_dict())
    (model, workflow), alternatives, reason = MODEL_TABLE.get(folded.replace("_", "-"), DEFAULT_TASK)
    return ModelSuggestion(task=task, recommended=model, workflow=workflow, reason=reason, source="table",
                           alternatives=alternatives)


def suggest_loras(prompt: str, model: str, n: int = 3, catalog: LoraCatalog | None = None) -> list[LoraSuggestion]:
    """Up to ``n`` catalog LoRAs for ``prompt`` on ``model``, best first (rules above)."""
    if n < 0:
        raise UsageError(f"n must be >= 0 (got {n})")
    catalog = _catalog(catalog)
    text, model_l = (prompt or "").lower(), (model or "").lower()
    scored: list[LoraSuggestion] = []
    for entry in catalog.loras:
        if not entry.compatible(model_l):
            continue
        score, reasons = 0, []
        for tag in entry.tags:
            if tag.lower() in text:
                score += TAG_SCORE
                reasons.append(f"tag {tag!r} in prompt")
        for use in entry.use_cases:
            if use.lower() in text:
                score += USE_CASE_SCORE
                reasons.append(f"use case {use!r} in prompt")
        if "wan" in model_l and any(t.lower() == "acceleration" for t in entry.tags):
            score += ACCELERATION_SCORE
            reasons.append("acceleration LoRA for a Wan model")
        if score > 0:
            strength = entry.recommended_strength if entry.recommended_strength is not None else 1.0
            scored.append(LoraSuggestion(entry.filename, strength, score, tuple(reasons), entry.description))
    scored.sort(key=lambda s: -s.score)  # stable: catalog order breaks ties
    return scored[:n]
