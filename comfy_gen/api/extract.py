"""A reusable recipe from a stored generation (POST /favorites/{id}/extract-recipe).

The source is the image's sidecar (the source of truth): its workflow, resolved
parameters and seed become a one-item recipe; ``target_categories`` swaps the
categories, taking out what the old ones put into the prompt and the LoRAs.
Every change is listed in ``adaptations``. A saved recipe goes to
``<recipes>/<name>.yaml``, never over an existing file, and is checked with
the same loader as ``comfy-gen recipe validate``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from comfy_gen.config import Settings
from comfy_gen.errors import UsageError

SETTINGS_KEYS = ("steps", "cfg", "sampler", "scheduler", "width", "height", "denoise")


def categories_of(sidecar: dict[str, Any], generation: dict[str, Any]) -> list[str]:
    """The categories a generation was composed from (the catalog row, else the sidecar)."""
    found = generation.get("categories") or (sidecar.get("comfy_gen") or {}).get("categories") or []
    return [str(c) for c in found]


def recipe_name(wanted: str | None, generation_id: str) -> str:
    if wanted:
        return wanted.lower()
    slug = re.sub(r"[^a-z0-9]+", "-", generation_id.lower()).strip("-")[:40] or "generation"
    return f"favorite-{slug}"


def extract(sidecar: dict[str, Any], generation: dict[str, Any], *, generation_id: str, settings: Settings,
            registry: Any, tier: str, target_categories: Sequence[str] = (), preserve_loras: bool = True,
            preserve_settings: bool = True, name: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """The recipe document and the adaptations made."""
    from comfy_gen.categories import check_policy

    info = sidecar.get("comfy_gen") or {}
    params: dict[str, Any] = dict(info.get("params") or {})
    workflow = str(info.get("workflow") or generation.get("workflow") or "")
    if not workflow:
        raise UsageError(f"Generation {generation_id!r} does not record its workflow; cannot extract a recipe")
    workflow = Path(workflow).name
    if not workflow.endswith(".json"):
        workflow += ".json"
    adaptations: list[str] = []
    old = categories_of(sidecar, generation)
    new = list(dict.fromkeys(c.lower().replace("-", "_") for c in target_categories)) if target_categories else old
    unknown = [c for c in new if c not in registry]
    if unknown:
        raise UsageError(f"Unknown categories: {', '.join(unknown)}")
    check_policy([registry.get(c) for c in new], tier)   # PolicyViolation (403) above the caller's tier

    prompt = str(params.get("prompt") or "")
    negative = params.get("negative_prompt")
    loras = [x for x in params.get("loras") or [] if isinstance(x, dict)]
    dropped = [c for c in old if c not in new]
    if dropped:
        fragments = {f.strip().lower() for c in dropped if c in registry
                     for f in (*registry.get(c).positive_required, *registry.get(c).positive_optional)}
        kept = [p for p in (part.strip() for part in prompt.split(",")) if p and p.lower() not in fragments]
        if len(kept) != len([p for p in prompt.split(",") if p.strip()]):
            adaptations.append(f"Removed the prompt fragments of {', '.join(dropped)}")
        prompt = ", ".join(kept)
        old_loras = {ref.filename for c in dropped if c in registry
                     for ref in (*registry.get(c).loras_required, *registry.get(c).loras_recommended)}
        keep_loras = [x for x in loras if x.get("name") not in old_loras]
        if len(keep_loras) != len(loras):
            adaptations.append(f"Dropped the LoRAs of {', '.join(dropped)}: "
                               + ", ".join(str(x.get("name")) for x in loras if x not in keep_loras))
        loras = keep_loras
    if new != old:
        added = [c for c in new if c not in old]
        if added:
            adaptations.append(f"Added categories {', '.join(added)} (their fragments, LoRAs and settings apply)")
    if not prompt:
        raise UsageError(f"Generation {generation_id!r} leaves no prompt to reuse")

    defaults: dict[str, Any] = {}
    if negative:
        defaults["negative_prompt"] = str(negative)
    if params.get("checkpoint"):
        defaults["checkpoint"] = str(params["checkpoint"])
    if preserve_loras and loras:
        defaults["loras"] = [{"name": str(x["name"]), "strength": float(x.get("strength_model", 1.0))}
                             for x in loras]
    elif loras:
        adaptations.append("LoRAs left out (preserve_loras is false)")
    if preserve_settings:
        defaults.update({k: params[k] for k in SETTINGS_KEYS if params.get(k) is not None})
    else:
        adaptations.append("Sampler settings and size left to the workflow and categories (preserve_settings "
                           "is false)")
    seed = params.get("seed")
    recipe: dict[str, Any] = {
        "name": recipe_name(name, generation_id),
        "description": f"Extracted from generation {generation_id}",
        "workflow": workflow,
    }
    if defaults:
        recipe["defaults"] = defaults
    recipe["prompts"] = [prompt]
    if new:
        recipe["categories"] = new
    if isinstance(seed, int) and seed >= 0 and preserve_settings:
        recipe["seeds"] = [seed]
    return recipe, adaptations


def save(recipe: dict[str, Any], settings: Settings) -> Path:
    """Write ``<recipes>/<name>.yaml`` (UsageError if it exists) and check it as `recipe validate` does."""
    import yaml

    from comfy_gen.errors import ComfyGenError
    from comfy_gen.paths import confine
    from comfy_gen.recipes import load_recipe

    folder = Path(settings.recipes_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = confine(folder / f"{recipe['name']}.yaml", [folder])
    text = "# Extracted by comfy-gen from a stored generation.\n" + yaml.safe_dump(recipe, sort_keys=False)
    try:
        with open(path, "x", encoding="utf-8") as fh:   # never over an existing recipe
            fh.write(text)
    except FileExistsError:
        raise UsageError(f"A recipe named {recipe['name']!r} already exists", hint="Choose another save_as name.") \
            from None
    try:
        load_recipe(path, settings=settings, allowed_dirs=[folder])
    except ComfyGenError:
        path.unlink(missing_ok=True)
        raise
    return path
