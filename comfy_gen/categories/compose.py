"""From free text with @tags (or a list of ids) to a ``Composition``.

Route order: parse @tags -> resolve them (id, then keyword) -> infer categories
from the remaining text -> select (explicit first, then inferred by confidence,
with ``enhances`` boosts, up to max_categories) -> policy check -> engine.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from comfy_gen.categories import engine
from comfy_gen.categories.engine import Entry, Trace
from comfy_gen.categories.inference import Inferred, infer, normalize, parse_tags
from comfy_gen.categories.model import Category
from comfy_gen.categories.policy import allows, check_policy, filter_allowed, tier_level
from comfy_gen.categories.registry import CategoryRegistry, get_registry
from comfy_gen.categories.workflows import choose_workflow
from comfy_gen.errors import CompositionError, UsageError
from comfy_gen.params import GenerationParams, LoraSpec

HASH_PREFIX = "sha256:"
#: Ranking bonus for an inferred candidate that an already-selected category enhances.
ENHANCES_BOOST = 0.1


@dataclass
class Composition:
    """A resolved recipe plus the explanation of how it was reached."""

    recipe: dict[str, Any]
    explanation: dict[str, Any]
    categories: tuple[Category, ...] = ()
    dry_run: bool = True

    @property
    def workflow(self) -> str:
        return str(self.recipe["workflow"])

    @property
    def recipe_hash(self) -> str:
        """Stable hash over the resolved recipe content, e.g. ``sha256:<16 hex>``."""
        blob = json.dumps(self.recipe, sort_keys=True, separators=(",", ":"))
        return HASH_PREFIX + hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_params(self) -> GenerationParams:
        """The recipe as GenerationParams (None keeps the workflow's own value)."""
        r = self.recipe
        return GenerationParams(
            prompt=r["positive_prompt"] or None, negative_prompt=r["negative_prompt"] or None,
            steps=r["steps"], cfg=r["cfg"], sampler=r["sampler"], scheduler=r["scheduler"],
            denoise=r["denoise"], width=r["width"], height=r["height"], checkpoint=r["checkpoint"],
            loras=tuple(LoraSpec(name=x["filename"], strength_model=x["strength"]) for x in r["loras"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "explanation": self.explanation, "recipe_hash": self.recipe_hash,
                "dry_run": self.dry_run}


@dataclass
class Selection:
    """The outcome of parsing + inference, before policy and composition."""

    explicit: list[dict[str, Any]] = field(default_factory=list)   # {tag, id, weight, matched_by}
    unmatched: list[dict[str, Any]] = field(default_factory=list)  # {tag, suggestions}
    inferred: list[Inferred] = field(default_factory=list)         # chosen, in selection order
    entries: list[Entry] = field(default_factory=list)
    remaining: str = ""
    trace: Trace = field(default_factory=Trace)
    suggestions: list[str] = field(default_factory=list)


def resolve_tag(tag: str, registry: CategoryRegistry, tier: str) -> tuple[Category | None, str]:
    """Exact id first (any tier: the policy check reports it), then a keyword of a visible category."""
    key = tag.replace("-", "_")
    if key in registry:
        return registry.get(key), "id"
    phrase = normalize(tag.replace("_", " "))
    hits = [(-w, -c.priority, c.id, c) for c in filter_allowed(registry, tier)
            for kw, w in c.keyword_weights().items() if normalize(kw) == phrase]
    return (min(hits, key=lambda t: t[:3])[3], "keyword") if hits else (None, "")


def select(text: str, registry: CategoryRegistry, *, tier: str, max_categories: int = 3,
           min_confidence: float = 0.3) -> Selection:
    """Explicit @tags first (never truncated), then inferred categories up to max_categories."""
    if not 1 <= max_categories <= 20:
        raise UsageError(f"max_categories must be 1..20 (got {max_categories})")
    if not 0.0 <= min_confidence <= 1.0:
        raise UsageError(f"min_confidence must be 0..1 (got {min_confidence})")
    sel = Selection()
    parsed = parse_tags(text)
    sel.remaining = parsed.remaining
    trace = sel.trace
    for mention in parsed.tags:
        if mention.clamped:
            trace.warn("parsing", f"weight in {mention.raw} clamped to {mention.weight}", mention.tag)
        cat, how = resolve_tag(mention.tag, registry, tier)
        if cat is None:
            sugg = registry.suggest(mention.tag, tier=tier)
            sel.unmatched.append({"tag": mention.tag, "suggestions": sugg})
            trace.step("parsing", "unmatched_tag", f"@{mention.tag}" + (f" (did you mean {', '.join(sugg)}?)"
                                                                         if sugg else ""), "user")
            continue
        if any(e.category.id == cat.id for e in sel.entries):
            trace.warn("parsing", f"@{mention.tag} selects {cat.id!r} again; keeping the first mention", cat.id)
            continue
        sel.explicit.append({"tag": mention.tag, "id": cat.id, "weight": mention.weight, "matched_by": how})
        sel.entries.append(Entry(cat, mention.weight, "explicit"))
        trace.step("parsing", "explicit_tag", f"@{mention.tag} -> {cat.id} (by {how}, weight {mention.weight})",
                   cat.id)
    if sel.unmatched:
        tags = ", ".join("@" + u["tag"] for u in sel.unmatched)
        trace.warnings.append(f"Unknown tags ignored: {tags}")
        for u in sel.unmatched:
            if u["suggestions"]:
                sel.suggestions.append(f"@{u['tag']}: did you mean {', '.join('@' + s for s in u['suggestions'])}?")
        sel.suggestions.append("Run `comfy-gen categories list` (or GET /api/v1/categories) to see every id.")
    pool = infer(sel.remaining, filter_allowed(registry, tier), min_confidence=min_confidence,
                 exclude=[e.category.id for e in sel.entries])
    while pool and len(sel.entries) < max_categories:
        chosen = [e.category for e in sel.entries]
        boosted = {x for c in chosen for x in c.enhances}
        best = max(pool, key=lambda i: (i.confidence + (ENHANCES_BOOST if i.id in boosted else 0.0),
                                        registry.get(i.id).priority, -pool.index(i)))
        pool.remove(best)
        cat = registry.get(best.id)
        why = engine.compatible(cat, chosen)
        if why:
            trace.step("classification", "skip_inferred", f"{best.id} ({best.confidence}): {why}", best.id)
            continue
        bonus = " + enhances boost" if best.id in boosted else ""
        sel.inferred.append(best)
        sel.entries.append(Entry(cat, 1.0, "inferred"))
        trace.step("classification", "infer_category",
                   f"{best.id} confidence {best.confidence}{bonus} (matched: {', '.join(best.matched)})", best.id)
    for left in pool:
        trace.step("classification", "skip_inferred", f"{left.id} ({left.confidence}): max_categories reached",
                   left.id)
    return sel


def compose(text: str, *, registry: CategoryRegistry | None = None, max_categories: int = 3,
            min_confidence: float = 0.3, tier: str = "general", dry_run: bool = True,
            capabilities: Mapping[str, frozenset[str]] | None = None) -> Composition:
    """Compose free text with @tags at the (already effective) policy ``tier``.

    Raises CompositionError (nothing matched, conflicts...), PolicyViolation, UsageError.
    """
    registry = registry if registry is not None else get_registry()
    tier_level(tier)
    sel = select(text, registry, tier=tier, max_categories=max_categories, min_confidence=min_confidence)
    if not sel.entries:
        raise CompositionError("No categories matched the input",
                               hint="Use @tags (see `comfy-gen categories list`) or lower min_confidence.")
    return _finish(sel, tier=tier, dry_run=dry_run, capabilities=capabilities)


def compose_ids(ids: Sequence[str], *, registry: CategoryRegistry | None = None, tier: str = "general",
                user_text: str = "", weights: Mapping[str, float] | None = None, dry_run: bool = True,
                capabilities: Mapping[str, frozenset[str]] | None = None) -> Composition:
    """Compose categories given by id (recipes); no inference. UnknownCategory for a bad id."""
    registry = registry if registry is not None else get_registry()
    tier_level(tier)
    if not ids:
        raise CompositionError("No categories given")
    weights = dict(weights or {})
    sel = Selection(remaining=" ".join(user_text.split()))
    for cid in ids:
        cat = registry.get(cid)
        if any(e.category.id == cat.id for e in sel.entries):
            sel.trace.warn("parsing", f"category {cat.id!r} listed twice; keeping the first", cat.id)
            continue
        weight = float(weights.get(cid, 1.0))
        if not 0.0 <= weight <= 2.0:
            raise UsageError(f"weight for {cid!r} must be 0..2 (got {weight})")
        sel.explicit.append({"tag": cid, "id": cat.id, "weight": weight, "matched_by": "id"})
        sel.entries.append(Entry(cat, weight, "recipe"))
        sel.trace.step("parsing", "explicit_tag", f"{cat.id} (by id, weight {weight})", cat.id)
    return _finish(sel, tier=tier, dry_run=dry_run, capabilities=capabilities)


def _finish(sel: Selection, *, tier: str, dry_run: bool,
            capabilities: Mapping[str, frozenset[str]] | None) -> Composition:
    trace = sel.trace
    cats = [e.category for e in sel.entries]
    check_policy(cats, tier)
    trace.step("policy", "check_policy", f"{len(cats)} categor{'y' if len(cats) == 1 else 'ies'} allowed at "
                                         f"tier {tier}")
    engine.check_selection(cats)
    trace.step("validation", "check_selection", "no conflicts, requirements met, max_per_type respected")
    order = engine.by_priority(sel.entries)
    choice = choose_workflow([e.category for e in order], capabilities=capabilities)
    for rejected in choice.rejected:
        trace.step("workflow", "skip_workflow", rejected)
    trace.step("workflow", "select_workflow",
               f"{choice.workflow}" + (f" (requires {', '.join(choice.required)})" if choice.required else ""),
               choice.source)
    loras = engine.merge_loras(order, workflow=choice.workflow, user_text=sel.remaining, trace=trace)
    triggers = [w for lora in loras for w in lora["trigger_words"]]
    positive, negative = engine.merge_prompts(order, user_text=sel.remaining, trigger_words=triggers, trace=trace)
    settings = engine.resolve_settings(order, trace)
    recipe: dict[str, Any] = {
        "positive_prompt": positive, "negative_prompt": negative, "loras": loras, **settings,
        "workflow": choice.workflow, "checkpoint": None, "categories": [c.id for c in cats],
    }
    n_exp = sum(1 for e in sel.entries if e.origin != "inferred")
    summary = (f"Using {n_exp} explicit categor{'y' if n_exp == 1 else 'ies'}. "
               f"{len(sel.inferred)} inferred from keywords. Composed recipe with {len(loras)} "
               f"LoRA{'' if len(loras) == 1 else 's'}. Workflow: {choice.workflow}.")
    explanation = {
        "summary": summary, "tier": tier, "explicit_tags": sel.explicit,
        "inferred_categories": [{"id": i.id, "confidence": i.confidence, "matched": list(i.matched)}
                                for i in sel.inferred],
        "unmatched_tags": sel.unmatched, "remaining_prompt": sel.remaining,
        "final_categories": [c.id for c in cats], "steps": trace.steps, "warnings": trace.warnings,
        "suggestions": sel.suggestions,
    }
    return Composition(recipe=recipe, explanation=explanation, categories=tuple(cats), dry_run=dry_run)


def preview(text: str, *, registry: CategoryRegistry | None = None, max_categories: int = 3,
            min_confidence: float = 0.3, tier: str = "general") -> dict[str, Any]:
    """What would be selected, without composing (the API's /compose/preview)."""
    registry = registry if registry is not None else get_registry()
    tier_level(tier)
    sel = select(text, registry, tier=tier, max_categories=max_categories, min_confidence=min_confidence)
    weights = {x["id"]: x["weight"] for x in sel.explicit}
    explicit = [{**e.category.summary(), "weight": weights[e.category.id]} for e in sel.entries
                if e.origin == "explicit"]
    blocked = [e.category.id for e in sel.entries if e.origin == "explicit" and not allows(e.category, tier)]
    inferred = [{**registry.get(i.id).summary(), "confidence": i.confidence, "matched": list(i.matched)}
                for i in sel.inferred]
    for item in explicit + inferred:
        item.pop("description", None)
        item.pop("icon", None)
    return {"explicit_categories": explicit, "inferred_categories": inferred,
            "unmatched_tags": sel.unmatched, "remaining_prompt": sel.remaining,
            "total_categories": len(sel.entries), "policy_violations": blocked,
            "warnings": sel.trace.warnings}
