"""Bridge from recipe ``categories`` to the categories engine (comfy_gen.categories).

Entries are category ids (``landscape``) or @tags (``@golden_hour``, resolved by
id, then by keyword, like free-text @tags), each optionally weighted
(``@night:1.5``). The engine is imported lazily: it is only needed by recipes
that use categories.

Precedence when merging a composition into an item (documented in docs/recipes.md):
item/matrix values > categories > recipe defaults. The prompt is the engine's
(item prompt + category fragments); negatives are joined (recipe first); LoRAs
are the recipe's plus the categories' ones not already named.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from comfy_gen.config import Settings
from comfy_gen.errors import ConfigError
from comfy_gen.params import GenerationParams, LoraSpec

CategorySet = tuple[str, ...]


def effective_recipe_tier(settings: Settings, requested: str | None) -> str:
    """The server's tier, lowered (never raised) by the recipe's policy_tier."""
    from comfy_gen.categories import effective_tier

    return str(effective_tier(settings.policy_tier, requested))


def get_registry_for(settings: Settings, registry: Any = None) -> Any:
    if registry is not None:
        return registry
    from comfy_gen.categories import get_registry

    return get_registry(settings)


def resolve_entries(entries: Sequence[str], *, registry: Any, tier: str) -> tuple[list[str], dict[str, float]]:
    """Recipe entries -> (category ids, weights). ConfigError for an unknown @tag or id."""
    from comfy_gen.categories import parse_tags, resolve_tag

    ids: list[str] = []
    weights: dict[str, float] = {}
    for entry in entries:
        name, weight = entry, 1.0
        if entry.startswith("@"):
            mentions = parse_tags(entry).tags
            if len(mentions) != 1:
                raise ConfigError(f"Invalid category tag {entry!r}")
            cat, _how = resolve_tag(mentions[0].tag, registry, tier)
            if cat is None:
                suggestions = registry.suggest(mentions[0].tag, tier=tier)
                hint = f" (did you mean: {', '.join('@' + s for s in suggestions)}?)" if suggestions else ""
                raise ConfigError(f"unknown category tag {entry!r}{hint}")
            name, weight = cat.id, mentions[0].weight
        else:
            if ":" in entry:
                name, _, raw_weight = entry.rpartition(":")
                try:
                    weight = float(raw_weight)
                except ValueError:
                    raise ConfigError(f"invalid category weight in {entry!r}") from None
            if name not in registry:
                suggestions = registry.suggest(name, tier=tier)
                hint = f" (did you mean: {', '.join(suggestions)}?)" if suggestions else ""
                raise ConfigError(f"unknown category {name!r}{hint}")
        if name not in weights:
            ids.append(name)
        weights[name] = weight
    return ids, weights


def check_categories(sets: list[tuple[list[Any], CategorySet]], out: Any, *, settings: Settings,
                     registry: Any, requested_tier: str | None) -> None:
    """Compose each distinct category set once (dry run) and report problems at its line."""
    try:
        tier = effective_recipe_tier(settings, requested_tier)
        registry = get_registry_for(settings, registry)
    except ImportError as exc:  # engine missing from this install
        out.add(sets[0][0], f"the categories engine is not available ({exc})")
        return
    except ConfigError as exc:
        out.add(sets[0][0], exc.message)
        return
    seen: set[CategorySet] = set()
    for path, entries in sets:
        if entries in seen or not entries:
            continue
        seen.add(entries)
        try:
            compose_set(entries, registry=registry, tier=tier, user_text="")
        except ConfigError as exc:  # UnknownCategory, CompositionError, PolicyViolation...
            out.add(path, exc.message)


def compose_set(entries: Sequence[str], *, registry: Any, tier: str, user_text: str) -> Any:
    """Composition for one set of recipe entries (raises the engine's errors)."""
    from comfy_gen.categories import compose_ids

    ids, weights = resolve_entries(entries, registry=registry, tier=tier)
    return compose_ids(ids, registry=registry, tier=tier, user_text=user_text, weights=weights)


def merge_params(base: GenerationParams, composed: GenerationParams | None,
                 explicit: dict[str, Any]) -> GenerationParams:
    """defaults (``base``) < categories (``composed``) < item/matrix values (``explicit``)."""
    values = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    if composed is not None:
        for f in dataclasses.fields(composed):
            value = getattr(composed, f.name)
            if f.name in ("prompt", "negative_prompt", "loras", "extra", "seed"):
                continue
            if value is not None:
                values[f.name] = value
    for name, value in explicit.items():
        if name not in ("prompt", "negative_prompt", "loras"):
            values[name] = value
    loras: tuple[LoraSpec, ...] = explicit.get("loras", base.loras)
    negative = explicit.get("negative_prompt", base.negative_prompt)
    prompt = explicit.get("prompt")
    if composed is not None:
        named = {lora.name for lora in loras}
        loras = loras + tuple(LoraSpec(lo.name, lo.strength_model, lo.clip_strength)
                              for lo in composed.loras if lo.name not in named)
        negative = join_prompts(negative, composed.negative_prompt)
        prompt = composed.prompt or prompt
    values.update(prompt=prompt, negative_prompt=negative or None, loras=loras)
    return GenerationParams(**values)


def join_prompts(*parts: str | None) -> str:
    """Comma-join prompt fragments in order, dropping repeats (case-insensitive)."""
    kept: dict[str, str] = {}
    for part in parts:
        for fragment in (part or "").split(","):
            text = fragment.strip()
            if text and text.lower() not in kept:
                kept[text.lower()] = text
    return ", ".join(kept.values())
