"""Where generations meet the enhancer: set it up before rendering, apply it once.

The service (``comfy-gen generate``, the API, MCP) and the recipe batch call
these; both enhance once per image, before anything is queued, and render the
enhanced prompt through every attempt.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from comfy_gen.enhance.options import EnhanceOptions, Refiner

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.config import Settings
    from comfy_gen.enhance.core import Enhanced, Enhancer
    from comfy_gen.params import GenerationParams

#: Cached recipe enhancements live here, under the state folder.
CACHE_FOLDER = "enhance"


def prepare_enhancer(options: EnhanceOptions, settings: "Settings", *, cached: bool = False) -> "Enhancer | None":
    """The probed enhancer when ``options`` asks for one (EnhancerUnavailable: exit 2), else None.
    ``cached``: enhancements are kept under ``<state_dir>/enhance`` and reused (recipes)."""
    if not options.enabled:
        return None
    from comfy_gen.enhance.core import get_enhancer
    from comfy_gen.enhance.styles import check_style

    check_style(options.style)
    enhancer = get_enhancer(settings)
    return enhancer.with_cache(Path(settings.state_dir) / CACHE_FOLDER) if cached else enhancer


def enhance_params(enhancer: "Enhancer | None", options: EnhanceOptions,
                   params: "GenerationParams") -> tuple["GenerationParams", "Enhanced | None"]:
    """``params`` with the enhanced prompt (unchanged when off, empty, or the enhancer failed)."""
    if enhancer is None or not params.prompt:
        return params, None
    result = enhancer.enhance(params.prompt, style=options.style)
    return params.replace(prompt=result.prompt), result


def refiner_for(enhancer: "Enhancer | None", enhanced: "Enhanced | None") -> Refiner | None:
    """The ``prompt_enhance`` strategy's hook for this generation (None: boosters only)."""
    if enhancer is None or enhanced is None or not enhanced.changed:
        return None
    return Refiner(enhancer, original=enhanced.original, first=enhanced.prompt, style=enhanced.style)


def job_key_part(options: EnhanceOptions, settings: "Settings | None") -> dict[str, Any]:
    """What an enhanced recipe item's job key adds to its graph: the style, backend and model
    (a changed model re-renders; the endpoint URL is placement, not identity)."""
    from comfy_gen.enhance.styles import check_style

    part: dict[str, Any] = {"enhance": check_style(options.style)}
    if settings is not None:
        part.update(backend=settings.enhance_backend, model=settings.enhance_model)
    return part


def input_record(enhanced: "Enhanced | None") -> dict[str, Any]:
    """What the metadata's ``input`` block adds: the original prompt and how it was enhanced."""
    if enhanced is None:
        return {}
    return {"original_prompt": enhanced.original, "enhancement": enhanced.record()}
