"""The original's quality composite, as pure functions (no model, no torch).

``utils/quality.py`` of the original scored an image with four no-reference
metrics and CLIP, mapped each onto 0-10 and combined them:

* technical = 0.7 * B + 0.3 * N, with B, N = 10 * (1 - clamp(raw, 0, 100) / 100)
  for BRISQUE and NIQE (lower raw is better);
* aesthetic = clamp(LAION aesthetic, 0, 10);
* detail = 10 * clamp(TOPIQ, 0, 1);
* prompt adherence = 10 * clamp((cos - 0.15) / 0.25, 0, 1), cos the CLIP cosine;
* composite = 0.30 T + 0.25 A + 0.25 P + 0.20 D, or 0.40 T + 0.35 A + 0.25 D
  without a prompt, rounded to 2 places; grade A >= 8, B >= 6.5, C >= 5, D >= 3, else F.

One deliberate difference: the original put 5.0 in place of a missing aesthetic
or detail score, a constant that looks like a measurement. Here a missing metric
is reported (``missing``) and the composite is re-weighted over the components
that were measured: each weight is divided by the sum of the present weights, so
the composite stays on 0-10. The same rule inside ``technical``: with only one of
BRISQUE / NIQE it is that one's normalised score. No component at all: no composite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

#: Metric names (pyiqa's, and ``clip`` for prompt adherence).
BRISQUE, NIQE, LAION_AES, TOPIQ_NR, CLIP = "brisque", "niqe", "laion_aes", "topiq_nr", "clip"
#: The no-reference metrics, in the original's order.
NR_METRICS: tuple[str, ...] = (BRISQUE, NIQE, LAION_AES, TOPIQ_NR)

WEIGHTS_WITH_PROMPT: dict[str, float] = {"technical": 0.30, "aesthetic": 0.25, "prompt_adherence": 0.25,
                                         "detail": 0.20}
WEIGHTS_WITHOUT_PROMPT: dict[str, float] = {"technical": 0.40, "aesthetic": 0.35, "detail": 0.25}
TECHNICAL_WEIGHTS: dict[str, float] = {BRISQUE: 0.7, NIQE: 0.3}
#: Lowest composite of each grade, best first.
GRADES: tuple[tuple[float, str], ...] = ((8.0, "A"), (6.5, "B"), (5.0, "C"), (3.0, "D"))
#: The original's --quality-threshold default (0-10).
DEFAULT_QUALITY_THRESHOLD = 7.0
#: CLIP cosine mapped to 0 and to 10 for prompt adherence.
ADHERENCE_LOW, ADHERENCE_SPAN = 0.15, 0.25


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def normalise_lower_better(raw: float) -> float:
    """BRISQUE / NIQE (0 best, ~100 worst) onto 0-10, higher better."""
    return 10.0 * (1.0 - _clamp(float(raw), 0.0, 100.0) / 100.0)


def normalise_aesthetic(raw: float) -> float:
    """LAION aesthetic (about 1-10) clamped to 0-10."""
    return _clamp(float(raw), 0.0, 10.0)


def normalise_detail(raw: float) -> float:
    """TOPIQ (0-1) onto 0-10."""
    return 10.0 * _clamp(float(raw), 0.0, 1.0)


def normalise_adherence(cosine: float) -> float:
    """CLIP cosine onto 0-10: 0.15 or less -> 0, 0.40 or more -> 10."""
    return 10.0 * _clamp((float(cosine) - ADHERENCE_LOW) / ADHERENCE_SPAN, 0.0, 1.0)


def grade(composite: float) -> str:
    """A >= 8, B >= 6.5, C >= 5, D >= 3, else F."""
    for floor, letter in GRADES:
        if composite >= floor:
            return letter
    return "F"


def _weighted(values: Mapping[str, float | None], weights: Mapping[str, float]) -> float | None:
    present = {k: w for k, w in weights.items() if values.get(k) is not None}
    total = sum(present.values())
    if not present or total <= 0:
        return None
    weighted = 0.0
    for key, weight in present.items():
        weighted += weight * float(values[key] or 0.0)
    return weighted / total


@dataclass(frozen=True)
class QualityScore:
    """Components (0-10, None when not measured), composite, grade and what was missing."""

    technical: float | None
    aesthetic: float | None
    prompt_adherence: float | None
    detail: float | None
    composite: float | None
    grade: str | None
    with_prompt: bool
    missing: tuple[str, ...] = ()
    raw: dict[str, float] = field(default_factory=dict)

    def weights(self) -> dict[str, float]:
        """The weights the composite used, re-weighted over the present components."""
        table = WEIGHTS_WITH_PROMPT if self.with_prompt else WEIGHTS_WITHOUT_PROMPT
        present = {k: w for k, w in table.items() if getattr(self, k) is not None}
        total = sum(present.values())
        return {k: round(w / total, 4) for k, w in present.items()} if total else {}


def compose(raw: Mapping[str, float | None], *, with_prompt: bool,
            metrics: Sequence[str] = NR_METRICS) -> QualityScore:
    """The composite of raw metric values (``brisque``, ``niqe``, ``laion_aes``,
    ``topiq_nr`` and ``clip``: the cosine). Of the ``metrics`` asked for, a value
    that is None or absent is missing; ``clip`` counts only ``with_prompt``."""
    wanted = tuple(m for m in NR_METRICS if m in metrics) + ((CLIP,) if with_prompt else ())
    have = {k: float(v) for k, v in raw.items() if k in wanted and v is not None}
    missing = tuple(k for k in wanted if k not in have)
    norm_tech = {k: normalise_lower_better(have[k]) for k in (BRISQUE, NIQE) if k in have}
    technical = _weighted(norm_tech, TECHNICAL_WEIGHTS)
    aesthetic = normalise_aesthetic(have[LAION_AES]) if LAION_AES in have else None
    detail = normalise_detail(have[TOPIQ_NR]) if TOPIQ_NR in have else None
    adherence = normalise_adherence(have[CLIP]) if with_prompt and CLIP in have else None
    components = {"technical": technical, "aesthetic": aesthetic, "prompt_adherence": adherence, "detail": detail}
    value = _weighted(components, WEIGHTS_WITH_PROMPT if with_prompt else WEIGHTS_WITHOUT_PROMPT)
    composite = None if value is None else round(value, 2)
    return QualityScore(
        technical=_round(technical), aesthetic=_round(aesthetic), prompt_adherence=_round(adherence),
        detail=_round(detail), composite=composite, grade=None if composite is None else grade(composite),
        with_prompt=with_prompt, missing=missing, raw=have)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def to_scores(score: QualityScore) -> dict[str, Any]:
    """The ``quality_*`` keys a verdict carries (flat, JSON-friendly)."""
    out: dict[str, Any] = {
        "quality_composite": score.composite, "quality_grade": score.grade,
        "quality_technical": score.technical, "quality_aesthetic": score.aesthetic,
        "quality_prompt_adherence": score.prompt_adherence, "quality_detail": score.detail,
        "quality_missing": list(score.missing), "quality_weights": score.weights(),
    }
    for name in NR_METRICS:
        out[f"quality_{name}"] = score.raw.get(name)
    if score.with_prompt:
        out["quality_clip_cosine"] = score.raw.get(CLIP)
    return out


def quality_block(scores: Mapping[str, Any]) -> dict[str, Any]:
    """The sidecar's ``quality`` section from a quality verdict's scores."""
    metrics = {name: scores.get(f"quality_{name}") for name in NR_METRICS}
    if "quality_clip_cosine" in scores:
        metrics["clip_cosine"] = scores.get("quality_clip_cosine")
    return {
        "composite_score": scores.get("quality_composite"), "grade": scores.get("quality_grade"),
        "technical": scores.get("quality_technical"), "aesthetic": scores.get("quality_aesthetic"),
        "prompt_adherence": scores.get("quality_prompt_adherence"), "detail": scores.get("quality_detail"),
        "metrics": metrics, "missing": list(scores.get("quality_missing") or []),
        "weights": dict(scores.get("quality_weights") or {}),
    }
