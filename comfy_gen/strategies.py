"""Refinement strategies: what to change when an attempt fails validation.

A strategy is a pure function ``fn(attempt, base, rng) -> dict`` registered with
``@register_strategy("name")``. ``base`` holds ``steps``, ``cfg``, ``seed`` (may be
None), ``positive_prompt`` and ``negative_prompt``; the result has the same keys,
with an int seed. Attempts are 1-based (1 = the first render). The built-in
strategies reproduce the seed's ``get_retry_params`` exactly; a user adds one by
registering a function, without touching the CLI or the flow.

The seed defaulted to 30 steps / cfg 7.0 even for a 4-step workflow; callers here
pass the workflow's own values through ``next_params`` (the defaults apply only
when no base value is known).
"""

from __future__ import annotations

import random
import re
from typing import Any, Callable, Mapping, Sequence

from comfy_gen.errors import UsageError
from comfy_gen.params import GenerationParams

DEFAULT_STEPS = 30
DEFAULT_CFG = 7.0
CFG_MAX = 20.0
#: The seed drew retry seeds from [0, 2^31-1] and capped seed_search there.
STRATEGY_SEED_MAX = 2**31 - 1

StrategyFn = Callable[[int, dict[str, Any], random.Random], dict[str, Any]]
_STRATEGIES: dict[str, StrategyFn] = {}


def register_strategy(name: str) -> Callable[[StrategyFn], StrategyFn]:
    """Decorator: register ``fn(attempt, base, rng) -> dict`` as strategy ``name``."""

    def decorator(fn: StrategyFn) -> StrategyFn:
        _STRATEGIES[name] = fn
        return fn

    return decorator


def list_strategies() -> list[str]:
    return sorted(_STRATEGIES)


def get_strategy(name: str) -> StrategyFn:
    """The registered strategy (UsageError listing the known ones)."""
    try:
        return _STRATEGIES[name]
    except KeyError:
        raise UsageError(
            f"Unknown refinement strategy {name!r}; known strategies: {', '.join(list_strategies())}"
        ) from None


def _index(attempt: int) -> int:
    # Attempt 1 -> 0, 2 -> 1, 3+ -> 2: attempts past 3 repeat attempt 3's parameters.
    return min(attempt - 1, 2)


def _fresh_seed(rng: random.Random) -> int:
    return rng.randint(0, STRATEGY_SEED_MAX)


def _first_seed(base: Mapping[str, Any], rng: random.Random) -> int:
    return base["seed"] if base.get("seed") is not None else _fresh_seed(rng)


def _append_terms(prompt: str, terms: Sequence[str]) -> str:
    """``prompt, t1, t2`` with terms already present (case-insensitive) skipped."""
    missing = [t for t in terms if t.lower() not in prompt.lower()]
    if not missing:
        return prompt
    head = prompt.rstrip().rstrip(",").rstrip()
    return ", ".join([head, *missing]) if head else ", ".join(missing)


@register_strategy("progressive")
def progressive(attempt: int, base: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """More steps and slightly higher cfg each retry (x1 / x1.67 / x2.67, +0 / +0.5 / +1.0), new seed."""
    i = _index(attempt)
    return {
        **base,
        "steps": int(base["steps"] * (1.0, 1.67, 2.67)[i]),
        "cfg": min(CFG_MAX, base["cfg"] + (0.0, 0.5, 1.0)[i]),
        "seed": _first_seed(base, rng) if attempt == 1 else _fresh_seed(rng),
    }


@register_strategy("seed_search")
def seed_search(attempt: int, base: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Same settings, seed base + 0 / 1000 / 5000 (capped at 2^31-1)."""
    seed = _first_seed(base, rng)
    return {**base, "seed": min(STRATEGY_SEED_MAX, seed + (0, 1000, 5000)[_index(attempt)])}


PROMPT_BOOSTERS: tuple[tuple[str, ...], ...] = (
    (),
    ("highly detailed", "sharp focus"),
    ("masterpiece", "best quality", "8K", "ultra detailed"),
)


@register_strategy("prompt_enhance")
def prompt_enhance(attempt: int, base: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Quality boosters appended to the *base* prompt (not cumulative), new seed each retry.

    When the generation uses the prompt enhancer (--enhance-prompt, a recipe's
    ``enhance``), retries ask it for a more detailed variant of the original
    prompt instead; the boosters remain the fallback when it fails."""
    from comfy_gen.enhance.options import current_refiner

    refiner = current_refiner() if attempt > 1 else None
    variant = refiner.variant(base["positive_prompt"], attempt) if refiner is not None else None
    terms = PROMPT_BOOSTERS[_index(attempt)]
    return {
        **base,
        "positive_prompt": variant or _append_terms(base["positive_prompt"], terms),
        "seed": _first_seed(base, rng) if attempt == 1 else _fresh_seed(rng),
    }


@register_strategy("validation_retry")
def validation_retry(attempt: int, base: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The seed's validation retry: ``adjust_prompt_for_retry`` on the prompts, seed kept."""
    positive, negative = adjust_prompt_for_retry(base["positive_prompt"], base["negative_prompt"], attempt)
    return {**base, "positive_prompt": positive, "negative_prompt": negative, "seed": _first_seed(base, rng)}


def get_retry_params(
    attempt: int,
    strategy: str,
    base_steps: int | None = None,
    base_cfg: float | None = None,
    base_seed: int | None = None,
    base_prompt: str = "",
    base_negative: str = "",
    *,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """The seed's function: ``steps``, ``cfg``, ``seed``, ``positive_prompt``,
    ``negative_prompt`` for ``attempt`` (1-based) of ``strategy``."""
    if attempt < 1:
        raise UsageError(f"attempt must be >= 1 (got {attempt})")
    fn = get_strategy(strategy)
    base = {
        "steps": DEFAULT_STEPS if base_steps is None else int(base_steps),
        "cfg": DEFAULT_CFG if base_cfg is None else float(base_cfg),
        "seed": None if base_seed is None or base_seed < 0 else int(base_seed),
        "positive_prompt": base_prompt or "",
        "negative_prompt": base_negative or "",
    }
    out = fn(attempt, dict(base), rng or random.SystemRandom())
    out["seed"] = int(out["seed"]) if out.get("seed") is not None else _fresh_seed(rng or random.SystemRandom())
    return out


def next_params(strategy: str, attempt: int, base: GenerationParams, *,
                rng: random.Random | None = None) -> GenerationParams:
    """``base`` (the item's params, filled with the workflow's own values) adjusted for
    ``attempt``. Values the strategy leaves alone stay None when they were None, so the
    workflow keeps its own; the seed is always concrete."""
    out = get_retry_params(attempt, strategy, base.steps, base.cfg, base.seed,
                           base.prompt or "", base.negative_prompt or "", rng=rng)
    steps: int | None = out["steps"]
    cfg: float | None = out["cfg"]
    if base.steps is None and steps == DEFAULT_STEPS:
        steps = None
    if base.cfg is None and cfg == DEFAULT_CFG:
        cfg = None
    prompt = out["positive_prompt"] if (out["positive_prompt"] or base.prompt is not None) else None
    negative = out["negative_prompt"] if (out["negative_prompt"] or base.negative_prompt is not None) else None
    return base.replace(steps=steps, cfg=cfg, seed=out["seed"], prompt=prompt, negative_prompt=negative)


# --- the seed's prompt adjustment for validation retries ---------------------------

_RETRY_NEGATIVES = ("multiple {plural}", "duplicate", "cloned", "ghosting", "mirrored", "two {plural}", "extra {noun}")
_GENERIC_NEGATIVES = ("duplicate", "cloned", "ghosting", "mirrored")
_IRREGULAR = {"person": "people", "man": "men", "woman": "women", "child": "children", "mouse": "mice",
              "foot": "feet", "tooth": "teeth", "goose": "geese", "sheep": "sheep", "fish": "fish", "deer": "deer"}
# Words after "one" that are not a subject ("one of the", "one more").
_NOT_NOUNS = {"of", "the", "a", "an", "and", "or", "more", "another", "other", "by", "at", "in", "on", "to",
              "with", "day", "time", "side", "point", "way", "hand"}
# "(?<![\w(])": not inside a word, and not the start of an already weighted "(single X:w)".
_SUBJECT = re.compile(r"(?<![\w(])(single|one)\s+([A-Za-z][A-Za-z-]*)\b", re.IGNORECASE)
_WEIGHTED = re.compile(r"\(\s*(?:single|one)\s+([A-Za-z][A-Za-z-]*)\s*:\s*[\d.]+\s*\)", re.IGNORECASE)


def pluralize(noun: str) -> str:
    """A small English plural: car -> cars, bus -> buses, city -> cities, person -> people."""
    lower = noun.lower()
    if lower in _IRREGULAR:
        plural = _IRREGULAR[lower]
        return plural.capitalize() if noun[:1].isupper() else plural
    if re.search(r"(s|x|z|ch|sh)$", lower):
        return noun + "es"
    if re.search(r"[^aeiou]y$", lower):
        return noun[:-1] + "ies"
    return noun + "s"


def _weight(attempt: int) -> str:
    return f"{round(1.0 + 0.3 * (attempt - 1), 2):g}"


def adjust_prompt_for_retry(positive: str, negative: str, attempt: int) -> tuple[str, str]:
    """The seed's validation retry on attempt k >= 2: ``single X`` / ``one X`` become
    ``(single X:1+0.3*(k-1))`` and the negative gains the missing ones of
    ``multiple Xs, duplicate, cloned, ghosting, mirrored, two Xs, extra X``
    (``duplicate, cloned, ghosting, mirrored`` when no subject is found).
    Attempt 1 returns the prompts unchanged."""
    if attempt < 2:
        return positive, negative
    weight = _weight(attempt)
    nouns: list[str] = []

    def reweight_existing(match: re.Match[str]) -> str:
        noun = match.group(1)
        nouns.append(noun)
        return f"(single {noun}:{weight})"

    def weight_plain(match: re.Match[str]) -> str:
        noun = match.group(2)
        if noun.lower() in _NOT_NOUNS:
            return match.group(0)
        nouns.append(noun)
        return f"(single {noun}:{weight})"

    # Already-weighted phrases (a caller passing an adjusted prompt back) get the new
    # weight instead of a second pair of parentheses.
    adjusted = _SUBJECT.sub(weight_plain, _WEIGHTED.sub(reweight_existing, positive))

    terms: list[str] = []
    for noun in dict.fromkeys(n.lower() for n in nouns):
        terms += [t.format(noun=noun, plural=pluralize(noun)) for t in _RETRY_NEGATIVES]
    terms = list(dict.fromkeys(terms or _GENERIC_NEGATIVES))
    return adjusted, _append_terms(negative or "", terms)
