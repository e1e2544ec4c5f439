"""The validator contract: protocol, results, thresholds, registry, best-of-N.

Scores are dicts so they travel through Prefect results and JSON sidecars
unchanged: ``positive_score``, ``negative_score`` (with a negative prompt),
``score_delta`` (positive - negative), or ``error`` when the image could not be
scored. A validator turns one score dict into a ``ValidationResult`` with
``evaluate``.

A new validator is one module: a ``BaseValidator`` subclass that implements
``score_many``, registered with ``@register_validator("name")``. Recipes name it
in ``validation.validator``; ``comfy_gen.validation.plan`` loads, runs and
judges it (the class hooks below are what the plan calls).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence, TypeVar, Union, runtime_checkable

from comfy_gen.errors import UsageError

if TYPE_CHECKING:
    from PIL.Image import Image

    from comfy_gen.config import Settings

log = logging.getLogger(__name__)

#: A path to an image file, or an already opened PIL image.
ImageInput = Union[str, Path, "Image"]

#: Default positive thresholds on the CLIPScore scale, 100 * max(cos, 0).
#: Why these numbers: with OpenAI CLIP, an image and a caption that matches it
#: score about 27-35 (ViT-B/32; Hessel et al. 2021, "CLIPScore", report mean
#: cosines near 0.3 on human captions; torchmetrics' CLIPScore gives ~30 for
#: text-to-image outputs), while unrelated captions score about 10-20. The
#: threshold sits between the two ranges, a little lower for the larger models
#: whose cosines run lower overall. These are starting points: calibrate on your
#: own images, and pass an explicit threshold, which always wins.
DEFAULT_POSITIVE_THRESHOLDS: dict[str, float] = {
    "openai/clip-vit-base-patch32": 22.0,
    "openai/clip-vit-base-patch16": 22.0,
    "openai/clip-vit-large-patch14": 20.0,
    "openai/clip-vit-large-patch14-336": 20.0,
    "laion/CLIP-ViT-H-14-laion2B-s32B-b79K": 20.0,
}
#: Used for model names not in the table (local folders named differently, tiny test models).
FALLBACK_POSITIVE_THRESHOLD = 20.0


def default_positive_threshold(model_name: str) -> float:
    """The default threshold for ``model_name`` (a hub id, or a folder named like one)."""
    if model_name in DEFAULT_POSITIVE_THRESHOLDS:
        return DEFAULT_POSITIVE_THRESHOLDS[model_name]
    # A local copy is usually a folder named after the hub repo: /models/clip-vit-base-patch32.
    tail = Path(str(model_name).rstrip("/\\")).name.lower()
    for known, value in DEFAULT_POSITIVE_THRESHOLDS.items():
        if known.split("/")[-1].lower() == tail:
            return value
    return FALLBACK_POSITIVE_THRESHOLD


@dataclass(frozen=True)
class Thresholds:
    """Pass rules: ``positive`` None = the validator's default; ``delta`` None = not checked."""

    positive: float | None = None
    delta: float | None = None

    @classmethod
    def coerce(cls, value: "Thresholds | Mapping[str, float | None] | None") -> "Thresholds":
        """Accept a Thresholds, a mapping (``positive``/``positive_threshold``, ``delta``/...), or None."""
        if value is None:
            return cls()
        if isinstance(value, Thresholds):
            return value
        positive = value.get("positive", value.get("positive_threshold"))
        delta = value.get("delta", value.get("delta_threshold"))
        return cls(positive=None if positive is None else float(positive),
                   delta=None if delta is None else float(delta))


@dataclass(frozen=True)
class ValidationResult:
    """The verdict on one image."""

    passed: bool
    reason: str
    scores: dict[str, Any] = field(default_factory=dict)
    validator: str = "clip"
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def positive_score(self) -> float | None:
        return self.scores.get("positive_score")

    def to_dict(self) -> dict[str, Any]:
        """The seed's result keys (passed, reason, positive_score, negative_score,
        score_delta, error) plus the validator name and the thresholds applied."""
        return {
            "passed": self.passed,
            "reason": self.reason,
            "positive_score": self.scores.get("positive_score"),
            "negative_score": self.scores.get("negative_score"),
            "score_delta": self.scores.get("score_delta"),
            "error": self.scores.get("error"),
            "validator": self.validator,
            "positive_threshold": self.thresholds.positive,
            "delta_threshold": self.thresholds.delta,
        }


@runtime_checkable
class Validator(Protocol):
    """What the flow and the CLI need from a validator."""

    name: str

    def score_many(
        self,
        images: Sequence[ImageInput],
        prompts: Sequence[str] | str,
        negatives: Sequence[str | None] | str | None = None,
    ) -> list[dict[str, Any]]:
        """One score dict per image (``error`` set for images that could not be scored)."""
        ...

    def evaluate(
        self, score: Mapping[str, Any], thresholds: Thresholds | Mapping[str, float | None] | None = None
    ) -> ValidationResult:
        """Apply pass rules to one score dict."""
        ...


def evaluate_scores(
    score: Mapping[str, Any], *, positive_threshold: float, delta_threshold: float | None = None,
    validator: str = "clip", label: str = "CLIP",
) -> ValidationResult:
    """The shared pass rule: no error, positive >= threshold, and delta >= its
    threshold when a delta exists. Never a silent pass on a scoring error."""
    thresholds = Thresholds(positive=positive_threshold, delta=delta_threshold)
    scores = dict(score)
    if scores.get("error"):
        return ValidationResult(False, f"{label} scoring failed: {scores['error']}", scores, validator, thresholds)
    positive = scores.get("positive_score")
    if positive is None:
        return ValidationResult(False, f"{label} scoring failed: no positive score", scores, validator, thresholds)
    if positive < positive_threshold:
        reason = f"Low positive {label} score: {positive:.2f} < {positive_threshold:.2f}"
        return ValidationResult(False, reason, scores, validator, thresholds)
    delta = scores.get("score_delta")
    if delta_threshold is not None and delta is not None and delta < delta_threshold:
        reason = f"Low {label} score delta: {delta:.2f} < {delta_threshold:.2f}"
        return ValidationResult(False, reason, scores, validator, thresholds)
    return ValidationResult(True, "Image passed validation", scores, validator, thresholds)


def warn_if_legacy_threshold(threshold: float | None) -> None:
    """The seed used a 0-1 scale (default 0.25); on the 0-100 scale that passes everything."""
    if threshold is not None and 0 < threshold <= 1.0:
        log.warning(
            "CLIP positive threshold %.3g looks like the old 0-1 scale; scores are now "
            "100 * max(cos, 0) (0-100), so it will pass almost any image", threshold,
        )


def score_rank_key(scores: Mapping[str, Any]) -> tuple[float, ...]:
    """Higher is better: scored before unscored, then positive score, then delta."""
    positive = scores.get("positive_score")
    if scores.get("error") or positive is None or (isinstance(positive, float) and math.isnan(positive)):
        return (0, -math.inf, -math.inf)
    delta = scores.get("score_delta")
    return (1, float(positive), -math.inf if delta is None else float(delta))


def select_best(results: Sequence[Mapping[str, Any] | ValidationResult]) -> int:
    """Index of the best of N scored images: highest positive score, ties broken by
    the higher delta; images with errors rank last. The first wins a full tie."""
    if not results:
        raise ValueError("select_best() needs at least one result")
    keys = [score_rank_key(r.to_dict() if isinstance(r, ValidationResult) else r) for r in results]
    best = 0
    for i in range(1, len(keys)):
        if keys[i] > keys[best]:
            best = i
    return best


class BaseValidator:
    """The class side of a validator, what ``ValidationPlan`` calls; subclass it,
    implement ``score_many`` and register the class.

    The hooks are class methods so that stored scores can be re-judged (a changed
    threshold) without loading a model. Defaults: ``load`` builds ``cls()``, scores
    pass on ``positive_score`` (and ``score_delta``) like CLIP, and attempts rank
    by ``score_rank_key``.
    """

    name: str = "validator"
    #: How reasons name the score ("Low positive CLIP score: ...").
    label: str = "validator"
    #: One line for ``comfy-gen validate --list-checks``.
    description: str = ""
    #: Re-judging a stored result that has no scores of this validator: False = it
    #: fails (the validator never saw the image); True = it passes as "not checked",
    #: for checks turned on by default after images were stored (technical).
    missing_scores_pass: bool = False
    #: Whether scoring reads the prompt (``comfy-gen validate`` fails such a check for
    #: an image without one, instead of scoring it against an empty text).
    needs_prompt: bool = True

    @classmethod
    def load(cls, settings: "Settings", options: Mapping[str, Any] | None = None) -> "Validator":
        """A ready instance (ValidatorUnavailable when it cannot be loaded). Loading
        is once per prepared plan: cache models here when they are expensive (CLIP
        does); state that must not outlive a run (a batch's seen images) belongs on
        the instance. ``options`` are the check's, as ``parse_options`` returned them."""
        return cls()

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """Check a check's options (recipe ``validation.checks[i]``, CLI flags) and
        return them normalised; UsageError naming the option for a bad one. The
        default accepts none."""
        if options:
            raise UsageError(f"validator {cls.name!r} takes no options (got: {', '.join(sorted(options))})")
        return {}

    @classmethod
    def default_positive_threshold(cls, settings: "Settings") -> float:
        """The threshold used when a check gives none (no model is loaded)."""
        return FALLBACK_POSITIVE_THRESHOLD

    @classmethod
    def judge_scores(cls, score: Mapping[str, Any], thresholds: Thresholds,
                     options: Mapping[str, Any] | None = None) -> ValidationResult:
        """Pass rule on one score dict; ``thresholds.positive`` is already resolved,
        ``options`` are the check's (so stored scores re-judge by today's options)."""
        positive = FALLBACK_POSITIVE_THRESHOLD if thresholds.positive is None else thresholds.positive
        return evaluate_scores(score, positive_threshold=positive, delta_threshold=thresholds.delta,
                               validator=cls.name, label=cls.label)

    @classmethod
    def rank_key(cls, scores: Mapping[str, Any]) -> tuple[float, ...]:
        """Orders attempts of one item that all pass or all fail (higher is better)."""
        return score_rank_key(scores)

    def score_many(
        self,
        images: Sequence[ImageInput],
        prompts: Sequence[str] | str,
        negatives: Sequence[str | None] | str | None = None,
    ) -> list[dict[str, Any]]:
        """One score dict per image; what every validator implements."""
        raise NotImplementedError(f"{type(self).__name__} must implement score_many")

    def evaluate(
        self, score: Mapping[str, Any], thresholds: Thresholds | Mapping[str, float | None] | None = None
    ) -> ValidationResult:
        """``judge_scores`` with ``thresholds`` as given (positive None = the fallback)."""
        return self.judge_scores(score, Thresholds.coerce(thresholds))


# --- registry ------------------------------------------------------------------

_V = TypeVar("_V", bound=type[BaseValidator])
_VALIDATORS: dict[str, type[BaseValidator]] = {}


def register_validator(name: str) -> Callable[[_V], _V]:
    """Class decorator: make a validator available as ``name`` (later ones replace earlier)."""

    def decorator(cls: _V) -> _V:
        _VALIDATORS[name] = cls
        return cls

    return decorator


def unregister_validator(name: str) -> None:
    """Forget ``name`` (tests, plugins that unload); unknown names are ignored."""
    _VALIDATORS.pop(name, None)


def _load_builtins() -> None:
    # Importing the module registers "clip"; it is cheap (torch is imported on first use).
    import comfy_gen.validation.clip  # noqa: F401
    import comfy_gen.validation.technical  # noqa: F401  (numpy and PIL on first use)
    import comfy_gen.validation.quality  # noqa: F401
    import comfy_gen.validation.content  # noqa: F401  ("content"; BLIP loads on first use)
    import comfy_gen.validation.people  # noqa: F401  ("person"; the detector loads on first use)
    import comfy_gen.validation.pose  # noqa: F401  ("pose")


def list_validators() -> list[str]:
    """Registered validator names, sorted."""
    _load_builtins()
    return sorted(_VALIDATORS)


def get_validator_class(name: str) -> type[BaseValidator]:
    """The validator class registered as ``name`` (UsageError listing known names)."""
    _load_builtins()
    try:
        return _VALIDATORS[name]
    except KeyError:
        raise UsageError(
            f"Unknown validator {name!r}; known validators: {', '.join(sorted(_VALIDATORS))}"
        ) from None
