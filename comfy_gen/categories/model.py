"""Frozen value objects for categories, built from already-validated file data.

``Category.from_dict`` trusts its input: ``loader.py`` checks every file against
``schema.json`` (plus semantic checks) before calling it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TYPES: tuple[str, ...] = ("subject", "setting", "modifier", "style")
TYPE_FOLDERS: dict[str, str] = {t: t + "s" for t in TYPES}
DEFAULT_PRIORITY = 50
DEFAULT_LORA_STRENGTH = 0.8


@dataclass(frozen=True)
class Range:
    """A ``{min, max, default}`` block; any part may be missing."""

    min: float | None = None
    max: float | None = None
    default: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Range | None":
        if not data:
            return None
        return cls(min=data.get("min"), max=data.get("max"), default=data.get("default"))

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in (("min", self.min), ("max", self.max), ("default", self.default)) if v is not None}


@dataclass(frozen=True)
class LoraRef:
    """A LoRA a category asks for."""

    filename: str
    strength: float = DEFAULT_LORA_STRENGTH
    trigger_words: tuple[str, ...] = ()
    condition: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LoraRef":
        return cls(filename=data["filename"], strength=float(data.get("strength", DEFAULT_LORA_STRENGTH)),
                   trigger_words=tuple(data.get("trigger_words", ())), condition=data.get("condition"))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"filename": self.filename, "strength": self.strength,
                                "trigger_words": list(self.trigger_words)}
        if self.condition:
            data["condition"] = self.condition
        return data


@dataclass(frozen=True)
class CategorySettings:
    """Sampler settings a category asks for (None = no opinion)."""

    steps: Range | None = None
    cfg: Range | None = None
    width: int | None = None
    height: int | None = None
    aspect_ratio: str | None = None
    sampler: str | None = None
    scheduler: str | None = None
    denoise: float | None = None

    @property
    def has_size(self) -> bool:
        return self.width is not None or self.aspect_ratio is not None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.steps:
            data["steps"] = self.steps.to_dict()
        if self.cfg:
            data["cfg"] = self.cfg.to_dict()
        size = {k: v for k, v in (("width", self.width), ("height", self.height),
                                  ("aspect_ratio", self.aspect_ratio)) if v is not None}
        if size:
            data["size"] = size
        for name in ("sampler", "scheduler", "denoise"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        return data


@dataclass(frozen=True)
class Category:
    """One validated category. ``source`` is the file it came from (not part of equality)."""

    id: str
    type: str
    display_name: str
    schema_version: str = "1.0.0"
    description: str = ""
    icon: str = ""
    policy_tier: str = "general"
    primary: tuple[str, ...] = ()
    secondary: tuple[str, ...] = ()
    specific: tuple[str, ...] = ()
    positive_required: tuple[str, ...] = ()
    positive_optional: tuple[str, ...] = ()
    negative_required: tuple[str, ...] = ()
    negative_optional: tuple[str, ...] = ()
    loras_required: tuple[LoraRef, ...] = ()
    loras_recommended: tuple[LoraRef, ...] = ()
    loras_avoid: tuple[str, ...] = ()
    settings: CategorySettings = field(default_factory=CategorySettings)
    preferred_workflows: tuple[str, ...] = ()
    required_capabilities: tuple[str, ...] = ()
    excluded_workflows: tuple[str, ...] = ()
    priority: int = DEFAULT_PRIORITY
    conflicts_with: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    enhances: tuple[str, ...] = ()
    max_per_type: int | None = None
    source: Path | None = field(default=None, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: Path | None = None) -> "Category":
        """Build from a schema-valid mapping (the file's root object)."""
        kw = data.get("keywords", {})
        prompts = data.get("prompts", {})
        pos = prompts.get("positive_fragments", {})
        neg = prompts.get("negative_fragments", {})
        loras = data.get("loras", {})
        st = data.get("settings", {})
        size = st.get("size", {})
        wf = data.get("workflows") or {}
        comp = data.get("composition", {})
        return cls(
            id=data["id"], type=data["type"], display_name=data["display_name"],
            schema_version=data.get("schema_version", "1.0.0"),
            description=data.get("description", ""), icon=data.get("icon", ""),
            policy_tier=data.get("policy_tier", "general"),
            primary=tuple(kw.get("primary", ())), secondary=tuple(kw.get("secondary", ())),
            specific=tuple(kw.get("specific", ())),
            positive_required=tuple(pos.get("required", ())), positive_optional=tuple(pos.get("optional", ())),
            negative_required=tuple(neg.get("required", ())), negative_optional=tuple(neg.get("optional", ())),
            loras_required=tuple(LoraRef.from_dict(x) for x in loras.get("required", ())),
            loras_recommended=tuple(LoraRef.from_dict(x) for x in loras.get("recommended", ())),
            loras_avoid=tuple(loras.get("avoid", ())),
            settings=CategorySettings(
                steps=Range.from_dict(st.get("steps")), cfg=Range.from_dict(st.get("cfg")),
                width=size.get("width"), height=size.get("height"), aspect_ratio=size.get("aspect_ratio"),
                sampler=st.get("sampler"), scheduler=st.get("scheduler"), denoise=st.get("denoise"),
            ),
            preferred_workflows=tuple(wf.get("preferred", ())),
            required_capabilities=tuple(wf.get("required_capabilities", ())),
            excluded_workflows=tuple(wf.get("excluded", ())),
            priority=int(comp.get("priority", DEFAULT_PRIORITY)),
            conflicts_with=tuple(comp.get("conflicts_with", ())), requires=tuple(comp.get("requires", ())),
            enhances=tuple(comp.get("enhances", ())), max_per_type=comp.get("max_per_type"),
            source=source,
        )

    def keyword_weights(self) -> dict[str, float]:
        """Normalised keyword -> weight; a keyword listed twice (or spelt "low-poly" and
        "low poly") counts once, at its strongest tier."""
        from comfy_gen.categories.inference import KEYWORD_WEIGHTS, normalize

        weights: dict[str, float] = {}
        for tier, words in (("secondary", self.secondary), ("specific", self.specific), ("primary", self.primary)):
            for word in words:
                key = normalize(word)
                weights[key] = max(weights.get(key, 0.0), KEYWORD_WEIGHTS[tier])
        return weights

    def summary(self) -> dict[str, Any]:
        """The short form used by listings and previews."""
        return {"id": self.id, "type": self.type, "display_name": self.display_name,
                "description": self.description, "icon": self.icon, "policy_tier": self.policy_tier}

    def to_dict(self) -> dict[str, Any]:
        """The full category in file shape (what `categories show --json` and the API return)."""
        data: dict[str, Any] = {
            "schema_version": self.schema_version, **self.summary(),
            "keywords": {"primary": list(self.primary), "secondary": list(self.secondary),
                         "specific": list(self.specific)},
            "prompts": {
                "positive_fragments": {"required": list(self.positive_required),
                                       "optional": list(self.positive_optional)},
                "negative_fragments": {"required": list(self.negative_required),
                                       "optional": list(self.negative_optional)},
            },
            "loras": {"required": [x.to_dict() for x in self.loras_required],
                      "recommended": [x.to_dict() for x in self.loras_recommended],
                      "avoid": list(self.loras_avoid)},
            "settings": self.settings.to_dict(),
            "workflows": {"preferred": list(self.preferred_workflows),
                          "required_capabilities": list(self.required_capabilities),
                          "excluded": list(self.excluded_workflows)},
            "composition": {"priority": self.priority, "conflicts_with": list(self.conflicts_with),
                            "requires": list(self.requires), "enhances": list(self.enhances)},
        }
        if self.max_per_type is not None:
            data["composition"]["max_per_type"] = self.max_per_type
        return data
