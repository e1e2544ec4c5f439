"""`--quality-score` and `--quality-threshold` on `comfy-gen generate` (and generate.py).

The original's mode precedence: with --quality-score and a threshold > 0 the
quality-refinement mode drives the attempts (--max-attempts, --retry-strategy)
while the composite is below the threshold, and the best attempt by composite
is kept. So the ``quality`` check goes first in the plan: attempts rank by it.
With --validate too, CLIP must pass as well. Threshold 0 scores without retrying.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Mapping

import click

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.service import GenerateRequest


def quality_options(fn: Any) -> Any:
    options = [
        click.option("--quality-score", is_flag=True, default=False,
                     help="Score the image's quality (BRISQUE, NIQE, LAION aesthetic, TOPIQ, CLIP; 0-10) and "
                          "re-render while it is below --quality-threshold (docs/validation.md#quality-score)."),
        click.option("--quality-threshold", type=float, default=None,
                     help="Minimum quality composite, 0-10 (default 7.0; 0 = score only). "
                          "Implies --quality-score."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def quality_mode(opts: Mapping[str, Any]) -> bool:
    """Whether the quality score drives the attempts (the original's quality-refinement mode)."""
    from comfy_gen.validation.quality_score import DEFAULT_QUALITY_THRESHOLD

    threshold = opts.get("quality_threshold")
    wanted = bool(opts.get("quality_score")) or threshold is not None
    return wanted and (DEFAULT_QUALITY_THRESHOLD if threshold is None else float(threshold)) > 0


def with_quality(request: "GenerateRequest", opts: Mapping[str, Any]) -> "GenerateRequest":
    """``request`` with the ``quality`` check first in its plan when the flags ask for it."""
    from comfy_gen.errors import UsageError
    from comfy_gen.validation.quality_score import DEFAULT_QUALITY_THRESHOLD

    threshold = opts.get("quality_threshold")
    if not opts.get("quality_score") and threshold is None:
        return request
    value = DEFAULT_QUALITY_THRESHOLD if threshold is None else float(threshold)
    if not 0 <= value <= 10:
        raise UsageError(f"--quality-threshold must be between 0 and 10 (got {threshold})")
    validation = request.validation
    others = [c for c in (validation.checks or (("clip",) if validation.enabled else ()))
              if (c if isinstance(c, str) else c.get("name", c.get("validator"))) != "quality"]
    checks = ({"name": "quality", "threshold": value}, *others)
    return dataclasses.replace(request, validation=dataclasses.replace(validation, enabled=True, checks=checks))
