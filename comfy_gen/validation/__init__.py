"""Image validation: the validation plan, the validator registry, CLIP, batching.

Importing this package is cheap: torch and transformers load on first use.

    from comfy_gen.validation import ValidationPlan
    plan = ValidationPlan.from_options(validate=True, positive_threshold=25)
    with plan.prepare(settings) as prepared:          # loads "clip" once
        verdicts = prepared.judge("out.png", "a red car", "blurry")

    from comfy_gen.validation import get_validator    # the seed's CLIP API
    get_validator().validate_image("out.png", "a red car", "blurry")["passed"]
"""

from __future__ import annotations

from comfy_gen.validation.base import (
    DEFAULT_POSITIVE_THRESHOLDS,
    BaseValidator,
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
    score_rank_key,
    select_best,
    unregister_validator,
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
from comfy_gen.validation.plan import (
    DEFAULT_VALIDATOR,
    Check,
    PreparedPlan,
    ValidationPlan,
    Verdict,
    merge_scores,
    overall,
    rank_key,
    validation_block,
)

__all__ = [
    "BaseValidator",
    "BatchingScorer",
    "Check",
    "DEFAULT_MODEL",
    "DEFAULT_POSITIVE_THRESHOLDS",
    "DEFAULT_VALIDATOR",
    "FALLBACK_POSITIVE_THRESHOLD",
    "ImageInput",
    "ImageValidator",
    "PreparedPlan",
    "Thresholds",
    "ValidationPlan",
    "ValidationResult",
    "Validator",
    "Verdict",
    "chunk_token_ids",
    "clear_validators",
    "default_positive_threshold",
    "ensure_available",
    "evaluate_scores",
    "get_validator",
    "get_validator_class",
    "list_validators",
    "merge_scores",
    "overall",
    "rank_key",
    "register_validator",
    "score_rank_key",
    "select_best",
    "unregister_validator",
    "validate_image",
    "validation_block",
]
