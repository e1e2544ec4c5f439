"""Request bodies: sizes, ranges and enum values checked before any handler runs (422)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Tier = Literal["general", "mature", "explicit"]
#: Names that arrive over HTTP (workflows, samplers, categories, recipes): one path segment, no tricks.
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"
MAX_TEXT = 4000


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComposeBody(Body):
    input: str = Field(..., min_length=1, max_length=MAX_TEXT, description="Text with optional @tags")
    dry_run: bool = Field(False, description="Only return the recipe")
    max_categories: int = Field(3, ge=1, le=10)
    min_confidence: float = Field(0.3, ge=0.0, le=1.0)
    policy_tier: Tier | None = Field(None, description="Can only lower the caller's tier")


class PreviewBody(Body):
    input: str = Field(..., max_length=MAX_TEXT)
    max_categories: int = Field(3, ge=1, le=10)
    min_confidence: float = Field(0.3, ge=0.0, le=1.0)
    policy_tier: Tier | None = None


class LoraBody(Body):
    name: str = Field(..., min_length=1, max_length=200, pattern=r"^[^\x00/\\][^\x00]*$")
    strength: float = Field(1.0, ge=0.0, le=2.0)


class ValidationBody(Body):
    enabled: bool = False
    positive_threshold: float | None = Field(None, ge=0.0, le=100.0)
    delta_threshold: float | None = Field(None, ge=-100.0, le=100.0)
    checks: list[str | dict[str, Any]] | None = Field(
        None, max_length=16, description="Validators to run (implies enabled): names or {name, threshold, "
                                         "...options}; see docs/validation.md")
    technical: bool = Field(True, description="The model-free technical checks join any validation")


class EnhanceBody(Body):
    enabled: bool = Field(False, description="Rewrite the prompt with the server's prompt enhancer first")
    style: str | None = Field(None, pattern=NAME, description="photographic, cinematic, illustration or minimal "
                                                             "(implies enabled)")


class GenerateBody(Body):
    prompt: str | None = Field(None, max_length=MAX_TEXT, description="Prompt; @tags compose categories")
    negative_prompt: str | None = Field(None, max_length=MAX_TEXT)
    workflow: str | None = Field(None, pattern=NAME, description="A workflow name in the workflows folder")
    categories: list[str] = Field(default_factory=list, max_length=10,
                                  description="Category ids composed with the prompt")
    width: int | None = Field(None, ge=64, le=4096)
    height: int | None = Field(None, ge=64, le=4096)
    steps: int | None = Field(None, ge=1, le=150)
    cfg: float | None = Field(None, ge=0.0, le=30.0)
    seed: int | None = Field(None, ge=-1, le=2**32 - 1, description="-1 or none: random")
    sampler: str | None = Field(None, pattern=NAME)
    scheduler: str | None = Field(None, pattern=NAME)
    denoise: float | None = Field(None, ge=0.0, le=1.0)
    checkpoint: str | None = Field(None, max_length=200, pattern=r"^[^\x00/\\][^\x00]*$")
    loras: list[LoraBody] = Field(default_factory=list, max_length=10)
    input_image: str | None = Field(None, max_length=1000,
                                    description="An image in the output folder (relative path), or an http(s) "
                                                "URL when COMFY_GEN_API_ALLOW_URL_FETCH is on")
    validation: ValidationBody = Field(default_factory=ValidationBody)
    enhance: EnhanceBody = Field(default_factory=EnhanceBody)
    max_attempts: int = Field(1, ge=1, le=5)
    retry_strategy: str = Field("progressive", pattern=NAME)
    upload: bool = Field(False, description="Upload to object storage when configured")
    policy_tier: Tier | None = None


class FavoriteBody(Body):
    generation_id: str = Field(..., min_length=1, max_length=200)
    rating: int | None = Field(None, ge=1, le=5)
    feedback: str | None = Field(None, max_length=2000)
    tags: list[str] = Field(default_factory=list, max_length=20)


class RatingBody(Body):
    rating: int = Field(..., ge=1, le=5)
    feedback: str | None = Field(None, max_length=2000)


class ExtractBody(Body):
    target_categories: list[str] = Field(default_factory=list, max_length=10)
    preserve_loras: bool = True
    preserve_settings: bool = True
    save_as: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$",
                                description="Save as recipes/<save_as>.yaml (never overwrites)")
    policy_tier: Tier | None = None


class RunBody(Body):
    force: bool = False
    max_items: int | None = Field(None, ge=1, le=10000)
    upload: bool | None = None
