"""Image validation: the Validator protocol, CLIP scoring, batching, best-of-N.

Importing this package is cheap: torch and transformers load on first use.

    from comfy_gen.validation import get_validator
    v = get_validator()                     # settings.clip_model, cached per process
    v.validate_image("out.png", "a red car", "blurry")["passed"]
    v.score_many(paths, prompts, negatives)  # batched; what the flow uses
"""

from __future__ import annotations

from comfy_gen.validation.base import (
    DEFAULT_POSITIVE_THRESHOLDS,
    FALLBACK_POSITIVE_THRESHOLD,
    ImageInput,
    Thresholds,
    ValidationResult,
    Validator,
    default_positive_threshold,
    evaluate_scores,
    get_validator_class,
    list_validators,
    register_validator,
    select_best,
)
from comfy_gen.validation.batching import BatchingScorer
from comfy_gen.validation.clip import (
    DEFAULT_MODEL,
    ImageValidator,
    chunk_token_ids,
    clear_validators,
    ensure_available,
    get_validator,
    validate_image,
)

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_POSITIVE_THRESHOLDS",
    "FALLBACK_POSITIVE_THRESHOLD",
    "BatchingScorer",
    "ImageInput",
    "ImageValidator",
    "Thresholds",
    "ValidationResult",
    "Validator",
    "chunk_token_ids",
    "clear_validators",
    "default_positive_threshold",
    "ensure_available",
    "evaluate_scores",
    "get_validator",
    "get_validator_class",
    "list_validators",
    "register_validator",
    "select_best",
    "validate_image",
]
