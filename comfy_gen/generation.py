"""One generation with validation and refinement: the attempt loop.

``run_attempts`` renders attempt 1, judges it with the prepared validation plan
(one ``Verdict`` per validator), and while it fails asks the refinement strategy
for the next parameters, up to ``max_attempts``. The best attempt is kept, not
the last one; every attempt's parameters and verdicts are returned for the metadata.

Used by ``comfy-gen generate`` and by the flow's per-item task: both render
through ``comfy_gen.pipeline.render``.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Sequence

from comfy_gen.errors import ComfyGenError, is_transient
from comfy_gen.params import GenerationParams, resolve_seed
from comfy_gen.pipeline import (RenderResult, StageRunner, deterministic_prompt_id, direct_stage, remove_files,
                                 render)

from comfy_gen.validation.plan import PreparedPlan, Verdict, merge_scores, overall, rank_key

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.comfyui import ComfyUIClient

log = logging.getLogger(__name__)


@dataclass
class Attempt:
    """One rendered attempt and its verdicts (none when it was not validated).

    ``scores``, ``passed`` and ``reason`` are read from the verdicts, in the flat
    shape sidecars and results carry: None when not validated.
    """

    number: int
    params: GenerationParams
    prompt_id: str
    files: list[Path]
    elapsed: float
    verdicts: list[Verdict] = field(default_factory=list)
    cached: bool = False

    @property
    def scores(self) -> dict[str, Any] | None:
        return merge_scores(self.verdicts) if self.verdicts else None

    @property
    def passed(self) -> bool | None:
        return overall(self.verdicts)[0] if self.verdicts else None

    @property
    def reason(self) -> str | None:
        return overall(self.verdicts)[1] if self.verdicts else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.number, "prompt_id": self.prompt_id,
            "params": self.params.to_dict(), "files": [str(f) for f in self.files],
            "elapsed_seconds": round(self.elapsed, 3), "scores": self.scores,
            "passed": self.passed, "reason": self.reason,
            "verdicts": [v.to_dict() for v in self.verdicts],
        }


@dataclass
class Outcome:
    """All attempts of one generation and the one that was kept."""

    attempts: list[Attempt] = field(default_factory=list)
    best: Attempt | None = None
    status: str = "failed"   # passed | best_effort | unvalidated | failed
    strategy: str | None = None
    max_attempts: int = 1
    validation_skipped: bool = False
    errors: list[str] = field(default_factory=list)   # later attempts that failed to render

    @property
    def passed(self) -> bool:
        return self.status in ("passed", "unvalidated")

    def refinement(self) -> dict[str, Any]:
        return {
            "attempt": self.best.number if self.best else None,
            "attempts_made": len(self.attempts), "max_attempts": self.max_attempts,
            "strategy": self.strategy, "final_status": self.status,
            "attempts": [a.to_dict() for a in self.attempts], "errors": list(self.errors),
        }


def best_of(attempts: Sequence[Attempt]) -> Attempt | None:
    """Passing attempts first; among them the best by the validators' rank keys
    (CLIP: highest positive score, then delta, as ``select_best``; the earliest
    wins a tie); without scores, the last attempt."""
    if not attempts:
        return None
    pool = [a for a in attempts if a.passed] or list(attempts)
    scored = [a for a in pool if a.scores]
    if not scored:
        return pool[-1]
    best = scored[0]
    for attempt in scored[1:]:
        if rank_key(attempt.verdicts) > rank_key(best.verdicts):
            best = attempt
    return best


def final_status(attempts: Sequence[Attempt], best: Attempt | None, *, validated: bool) -> str:
    """``passed``, ``best_effort`` (scored, none passed), ``unvalidated`` or ``failed``."""
    if not attempts or best is None:
        return "failed"
    if not validated:
        return "unvalidated"
    if best.passed:
        return "passed"
    if best.scores and not best.scores.get("error"):
        return "best_effort"
    return "failed"


def run_attempts(
    client: "ComfyUIClient",
    workflow: dict[str, Any],
    params: GenerationParams,
    *,
    dest_dir: Path,
    name: str,
    validation: PreparedPlan | None = None,
    strategy: str = "progressive",
    max_attempts: int = 1,
    validation_prompt: str | None = None,
    job_key: str | None = None,
    on_event: Callable[[Any], None] | None = None,
    on_submitted: Callable[[str], None] | None = None,
    on_attempt: Callable[[Attempt], None] | None = None,
    gate: ContextManager[Any] | None = None,
    timeout: float | None = None,
    rng: random.Random | None = None,
    keep_all: bool = False,
    stage: StageRunner = direct_stage,
) -> Outcome:
    """Render until an attempt passes ``validation`` or ``max_attempts`` is reached.

    ``job_key`` makes prompt ids deterministic (so a re-run adopts a job an
    earlier run queued). Without an active ``validation`` (None, disabled or
    skipped) exactly one attempt is made and the outcome is ``unvalidated``.
    Files of attempts that were not kept are deleted unless ``keep_all``.
    ``stage`` runs each step (compose, queue, await, validate, refine; see
    ``comfy_gen.pipeline.StageRunner``).
    """
    from comfy_gen.strategies import next_params
    from comfy_gen.workflow import get_params

    rng = rng or random.Random()
    base = _merge(get_params(workflow), params)
    # The caller's seed, never the one baked into the file (None/-1 = random), so
    # repeated runs never silently reuse the workflow's seed.
    base = base.replace(seed=resolve_seed(params.seed, rng))
    plan = validation if validation is not None and validation.active else None
    limit = max(1, max_attempts if plan is not None else 1)
    outcome = Outcome(strategy=strategy if limit > 1 else None, max_attempts=limit,
                      validation_skipped=validation is not None and validation.skipped)
    check_prompt = validation_prompt if validation_prompt is not None else (base.prompt or "")

    current = base
    for number in range(1, limit + 1):
        if number > 1:
            current = stage("refine", lambda: next_params(strategy, number, base, rng=rng))
            current = current.replace(seed=resolve_seed(current.seed, rng))
        pid = deterministic_prompt_id(job_key, f"a{number}") if job_key else None
        try:
            result: RenderResult = render(
                client, workflow, current, dest_dir=dest_dir, name=f"{name}_a{number}",
                prompt_id=pid, adopt=job_key is not None, on_event=on_event,
                on_submitted=on_submitted, timeout=timeout, gate=gate, stage=stage,
            )
        except ComfyGenError as exc:
            if not outcome.attempts or is_transient(exc):
                # The whole item will be retried: drop what the earlier attempts left.
                remove_files([f for a in outcome.attempts for f in a.files])
                raise
            # A later attempt failed on the server: keep what the earlier ones produced.
            log.warning("Attempt %d of %s failed (%s); keeping the best earlier attempt", number, name, exc)
            outcome.errors.append(f"attempt {number}: {exc}")
            break
        attempt = Attempt(number=number, params=current, prompt_id=result.prompt_id,
                          files=result.files, elapsed=result.elapsed, cached=result.cached)
        if plan is not None and result.files:
            image, negative = result.files[0], current.negative_prompt or None
            attempt.verdicts = stage("validate", lambda: plan.judge(image, check_prompt, negative))
        outcome.attempts.append(attempt)
        if on_attempt:
            on_attempt(attempt)
        if plan is None or attempt.passed:
            break
        log.info("Attempt %d of %s failed validation: %s", number, name, attempt.reason)

    outcome.best = best_of(outcome.attempts)
    outcome.status = final_status(outcome.attempts, outcome.best, validated=plan is not None)
    if not keep_all:
        remove_files([f for a in outcome.attempts if a is not outcome.best for f in a.files])
    return outcome


def _merge(base: GenerationParams, override: GenerationParams) -> GenerationParams:
    """``override``'s set values on top of the workflow's own values."""
    changes = {k: v for k, v in override.to_dict().items() if v not in (None, [], {})}
    changes.pop("loras", None)
    changes.pop("extra", None)
    merged = base.replace(**changes)
    # LoRAs and extra inputs are additions, not replacements of the graph's own.
    return merged.replace(loras=override.loras, extra=override.extra)
