"""The ``quality`` validator: the original's composite quality score (0-10).

No-reference metrics (BRISQUE, NIQE, TOPIQ through pyiqa; LAION aesthetic on a
CLIP, ``quality_metrics``) plus CLIP prompt adherence from the validation CLIP
(``settings.clip_model``, the model the ``clip`` check uses, loaded once), combined
by the original's formulas (``quality_score``). Pass rule: composite >= threshold
(default 7.0, ``--quality-threshold``). Scores are ``quality_*`` keys; attempts
rank by the composite.

A metric that cannot load is reported in ``quality_missing`` and left out of the
composite (re-weighted over what was measured). Only when nothing at all loads is
the validator unavailable (preflight fails before rendering, unless the plan
allows skipping).

Options of a check (``validation.checks: [{name: quality, ...}]``):
``metrics`` (a subset of brisque, niqe, laion_aes, topiq_nr; default all) and
``prompt_adherence`` (default true; false scores without the prompt).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from comfy_gen.errors import UsageError, ValidatorUnavailable, contextual_hint
from comfy_gen.validation.base import BaseValidator, ImageInput, Thresholds, ValidationResult, register_validator
from comfy_gen.validation.quality_score import (
    CLIP,
    DEFAULT_QUALITY_THRESHOLD,
    NR_METRICS,
    compose,
    to_scores,
)

if TYPE_CHECKING:
    from PIL.Image import Image

    from comfy_gen.config import Settings
    from comfy_gen.validation.clip import ImageValidator
    from comfy_gen.validation.quality_metrics import Metric

log = logging.getLogger(__name__)


def unavailable_hint() -> str:
    return contextual_hint(
        cli="Install the [quality] extra (pyiqa) or point COMFY_GEN_QUALITY_WEIGHTS_DIR / "
            "COMFY_GEN_QUALITY_AESTHETIC_HEAD / COMFY_GEN_CLIP_MODEL at local weights, or drop --quality-score.",
        deployment="Install the [quality] extra where the worker runs, set COMFY_GEN_QUALITY_WEIGHTS_DIR / "
                   "COMFY_GEN_QUALITY_AESTHETIC_HEAD / COMFY_GEN_CLIP_MODEL in its environment, or set "
                   "validation.allow_skip: true in the recipe.")


@register_validator("quality")
class QualityValidator(BaseValidator):
    """Scores images with every metric that loaded; see the module docstring."""

    name = "quality"
    label = "quality"

    def __init__(self, metrics: Mapping[str, "Metric"], missing: Mapping[str, str],
                 clip: "ImageValidator | None", *, prompt_adherence: bool = True,
                 requested: Sequence[str] = NR_METRICS) -> None:
        self.requested = tuple(requested)
        self.metrics = dict(metrics)
        self.missing = dict(missing)  # name -> why it did not load
        self.clip = clip
        self.prompt_adherence = prompt_adherence
        #: Printed by the faces when the plan is prepared (ValidationPlan.prepare).
        self.load_warnings = [f"quality metric {name} is missing, left out of the composite: {why}"
                              for name, why in self.missing.items()]

    def __repr__(self) -> str:
        return f"QualityValidator(metrics={sorted(self.metrics)}, missing={sorted(self.missing)})"

    # --- the plan's hooks ---------------------------------------------------------

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(options) - {"metrics", "prompt_adherence"}
        if unknown:
            raise UsageError(f"unknown option(s) {', '.join(sorted(unknown))} "
                             "(quality takes: metrics, prompt_adherence)")
        out: dict[str, Any] = {}
        if "metrics" in options:
            metrics = options["metrics"]
            if isinstance(metrics, str):
                metrics = [m.strip() for m in metrics.split(",") if m.strip()]
            if not isinstance(metrics, (list, tuple)) or not metrics or \
                    any(m not in NR_METRICS for m in metrics):
                raise UsageError(f"metrics: expected a non-empty list of {', '.join(NR_METRICS)}, got {metrics!r}")
            out["metrics"] = [m for m in NR_METRICS if m in metrics]
        if "prompt_adherence" in options:
            if not isinstance(options["prompt_adherence"], bool):
                raise UsageError(f"prompt_adherence: expected true or false, got {options['prompt_adherence']!r}")
            out["prompt_adherence"] = options["prompt_adherence"]
        return out

    @classmethod
    def load(cls, settings: "Settings", options: Mapping[str, Any] | None = None) -> "QualityValidator":
        """Every metric that loads (cached per process); ValidatorUnavailable when none does."""
        from comfy_gen.validation.quality_metrics import load_metrics

        opts = dict(options or {})
        names = opts.get("metrics") or [m.strip() for m in settings.quality_metrics.split(",") if m.strip()]
        metrics, missing = load_metrics(names, settings)
        clip = None
        adherence = bool(opts.get("prompt_adherence", True))
        if adherence:
            from comfy_gen.validation.clip import get_validator

            try:
                clip = get_validator(settings.clip_model)
            except ValidatorUnavailable as exc:
                missing[CLIP] = exc.message
        for name, why in missing.items():
            log.warning("Quality metric %s is missing (left out of the composite): %s", name, why)
        if not metrics and clip is None:
            detail = "; ".join(f"{k}: {v}" for k, v in missing.items())
            raise ValidatorUnavailable(f"No quality metric could be loaded ({detail})", hint=unavailable_hint())
        return cls(metrics, missing, clip, prompt_adherence=adherence, requested=names)

    @classmethod
    def default_positive_threshold(cls, settings: "Settings") -> float:
        return DEFAULT_QUALITY_THRESHOLD

    @classmethod
    def judge_scores(cls, score: Mapping[str, Any], thresholds: Thresholds,
                     options: Mapping[str, Any] | None = None) -> ValidationResult:
        """Pass iff composite >= threshold; a scoring error or no composite fails."""
        threshold = DEFAULT_QUALITY_THRESHOLD if thresholds.positive is None else thresholds.positive
        applied = Thresholds(threshold, None)
        scores = dict(score)
        if scores.get("error"):
            return ValidationResult(False, f"Quality scoring failed: {scores['error']}", scores, cls.name, applied)
        composite = scores.get("quality_composite")
        if composite is None:
            return ValidationResult(False, "Quality scoring failed: no composite score", scores, cls.name, applied)
        missing = scores.get("quality_missing") or []
        note = f" (missing: {', '.join(missing)})" if missing else ""
        grade = scores.get("quality_grade")
        if composite < threshold:
            return ValidationResult(False, f"Low quality score: {composite:.2f} < {threshold:.2f} "
                                           f"(grade {grade}){note}", scores, cls.name, applied)
        return ValidationResult(True, f"Quality {composite:.2f} (grade {grade}){note}", scores, cls.name, applied)

    @classmethod
    def rank_key(cls, scores: Mapping[str, Any]) -> tuple[float, ...]:
        """Scored before unscored, then the higher composite."""
        composite = scores.get("quality_composite")
        if scores.get("error") or composite is None or math.isnan(float(composite)):
            return (0, -math.inf)
        return (1, float(composite))

    # --- scoring --------------------------------------------------------------------

    def score_many(
        self,
        images: Sequence[ImageInput],
        prompts: Sequence[str] | str,
        negatives: Sequence[str | None] | str | None = None,
    ) -> list[dict[str, Any]]:
        """One ``quality_*`` dict per image; each metric sees the readable images as a batch."""
        from comfy_gen.validation.clip import _broadcast, _open_image

        n = len(images)
        texts = [p or "" for p in _broadcast(prompts, n, "prompts")]
        results: list[dict[str, Any]] = [{} for _ in range(n)]
        opened: list[tuple[int, Image]] = []
        for i, image in enumerate(images):
            try:
                opened.append((i, _open_image(image)))
            except (OSError, ValueError) as exc:
                results[i] = {"error": f"Cannot read image {image}: {exc}"}
        if not opened:
            return results
        pics = [img for _, img in opened]
        raw: list[dict[str, float | None]] = [{} for _ in opened]
        failed = dict(self.missing)
        for name, metric in self.metrics.items():
            try:
                values = metric(pics)
            except RuntimeError as exc:  # e.g. out of memory: this metric is missing for these images
                log.warning("Quality metric %s failed: %s", name, exc)
                failed[name] = f"failed: {exc}"
                continue
            for row, value in zip(raw, values):
                row[name] = value if math.isfinite(value) else None
        if self.clip is not None:
            clip_scores = self.clip.score_many(pics, [texts[i] for i, _ in opened])
            for row, cs in zip(raw, clip_scores):
                # positive_score is 100 * max(cos, 0); below 0.15 the adherence is 0 either way.
                row[CLIP] = None if cs.get("positive_score") is None else float(cs["positive_score"]) / 100.0
        for (i, _), row in zip(opened, raw):
            with_prompt = self.prompt_adherence and bool(texts[i].strip())
            scores = to_scores(compose(row, with_prompt=with_prompt, metrics=self.requested))
            if any(k in failed for k in scores["quality_missing"]):
                scores["quality_missing_reasons"] = {k: failed[k] for k in scores["quality_missing"] if k in failed}
            results[i] = scores
        return results
