"""Categories: YAML files + schema, the registry, @tag parsing, keyword inference,
the composition engine and the content policy. Pure library (no server).

Usage::

    registry = get_registry(settings)
    comp = compose("a red @car at @night", registry=registry,
                   tier=effective_tier(settings.policy_tier, requested))
    comp.recipe, comp.explanation, comp.recipe_hash, comp.to_params()
"""

from __future__ import annotations

from comfy_gen.categories.compose import (
    ENHANCES_BOOST,
    HASH_PREFIX,
    Composition,
    compose,
    compose_ids,
    preview,
    resolve_tag,
    select,
)
from comfy_gen.categories.inference import KEYWORD_WEIGHTS, TagMention, confidence, infer, parse_tags
from comfy_gen.categories.loader import CategoryProblem, load_file, schema
from comfy_gen.categories.model import TYPES, Category, CategorySettings, LoraRef, Range
from comfy_gen.categories.policy import TIERS, allows, check_policy, effective_tier, filter_allowed, tier_level
from comfy_gen.categories.registry import (
    LIBRARY_DIR,
    CategoryRegistry,
    UnknownCategory,
    clear_registry_cache,
    get_registry,
    load_registry,
    search_roots,
)
from comfy_gen.categories.workflows import DEFAULT_WORKFLOW, WORKFLOW_CAPABILITIES, choose_workflow

__all__ = [
    "DEFAULT_WORKFLOW", "ENHANCES_BOOST", "HASH_PREFIX", "KEYWORD_WEIGHTS", "LIBRARY_DIR", "TIERS", "TYPES",
    "WORKFLOW_CAPABILITIES", "Category", "CategoryProblem", "CategoryRegistry", "CategorySettings",
    "Composition", "LoraRef", "Range", "TagMention", "UnknownCategory", "allows", "check_policy",
    "choose_workflow", "clear_registry_cache", "compose", "compose_ids", "confidence", "effective_tier",
    "filter_allowed", "get_registry", "infer", "load_file", "load_registry", "parse_tags", "preview",
    "resolve_tag", "schema", "search_roots", "select", "tier_level",
]
