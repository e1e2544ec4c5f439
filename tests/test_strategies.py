"""Refinement strategies: the seed's exact numbers, the registry, prompt adjustment, best attempt."""

from __future__ import annotations

import random

import pytest

from comfy_gen import strategies
from comfy_gen.errors import UsageError
from comfy_gen.params import GenerationParams
from comfy_gen.strategies import (
    STRATEGY_SEED_MAX,
    adjust_prompt_for_retry,
    get_retry_params,
    get_strategy,
    list_strategies,
    next_params,
    pluralize,
    register_strategy,
)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)


# --- progressive -------------------------------------------------------------------


def test_progressive_seed_example(rng):
    # The seed's documented example, attempt 2 of progressive from 30 / 7.0 / 42.
    params = get_retry_params(attempt=2, strategy="progressive", base_steps=30, base_cfg=7.0, base_seed=42,
                              base_prompt="a sunset", base_negative="blurry", rng=rng)
    assert params["steps"] == 50 and params["cfg"] == 7.5
    assert params["positive_prompt"] == "a sunset" and params["negative_prompt"] == "blurry"
    assert params["seed"] != 42 and 0 <= params["seed"] <= STRATEGY_SEED_MAX


@pytest.mark.parametrize(
    ("attempt", "steps", "cfg"),
    [(1, 30, 7.0), (2, 50, 7.5), (3, 80, 8.0), (4, 80, 8.0), (9, 80, 8.0)],
    ids=["a1", "a2", "a3", "a4-capped", "a9-capped"],
)
def test_progressive_defaults(attempt, steps, cfg, rng):
    params = get_retry_params(attempt, "progressive", rng=rng)
    assert (params["steps"], params["cfg"]) == (steps, cfg)


def test_progressive_scales_the_given_base(rng):
    assert [get_retry_params(a, "progressive", base_steps=4, base_cfg=1.0, rng=rng)["steps"] for a in (1, 2, 3)] \
        == [4, 6, 10]
    assert get_retry_params(3, "progressive", base_cfg=19.5, rng=rng)["cfg"] == 20.0  # capped at 20


def test_progressive_seeds(rng):
    assert get_retry_params(1, "progressive", base_seed=42, rng=rng)["seed"] == 42
    seeds = [get_retry_params(a, "progressive", base_seed=42, rng=rng)["seed"] for a in (2, 3, 3)]
    assert len(set(seeds)) == 3 and 42 not in seeds  # fresh every retry, even for the same attempt
    first = get_retry_params(1, "progressive", base_seed=None, rng=rng)["seed"]
    assert 0 <= first <= STRATEGY_SEED_MAX


# --- seed_search ------------------------------------------------------------------


@pytest.mark.parametrize(("attempt", "seed"), [(1, 42), (2, 1042), (3, 5042), (4, 5042)])
def test_seed_search_offsets(attempt, seed):
    params = get_retry_params(attempt, "seed_search", base_steps=25, base_cfg=6.0, base_seed=42,
                              base_prompt="a lake", base_negative="blurry")
    assert params == {"steps": 25, "cfg": 6.0, "seed": seed, "positive_prompt": "a lake", "negative_prompt": "blurry"}


def test_seed_search_caps_at_2_31():
    assert get_retry_params(3, "seed_search", base_seed=STRATEGY_SEED_MAX - 10)["seed"] == STRATEGY_SEED_MAX
    assert STRATEGY_SEED_MAX == 2**31 - 1


# --- prompt_enhance -----------------------------------------------------------------


def test_prompt_enhance_exact_prompts(rng):
    p = [get_retry_params(a, "prompt_enhance", base_seed=7, base_prompt="a sunset", rng=rng) for a in (1, 2, 3, 4)]
    assert p[0]["positive_prompt"] == "a sunset" and p[0]["seed"] == 7
    assert p[1]["positive_prompt"] == "a sunset, highly detailed, sharp focus"
    # Attempt 3 starts again from the base prompt: boosters are not cumulative.
    assert p[2]["positive_prompt"] == "a sunset, masterpiece, best quality, 8K, ultra detailed"
    assert p[3]["positive_prompt"] == p[2]["positive_prompt"]
    assert all(x["steps"] == 30 and x["cfg"] == 7.0 for x in p)
    assert len({x["seed"] for x in p[1:]} | {7}) == 4  # fresh seed per retry


def test_prompt_enhance_skips_terms_already_present(rng):
    params = get_retry_params(2, "prompt_enhance", base_prompt="a lake, Sharp Focus", rng=rng)
    assert params["positive_prompt"] == "a lake, Sharp Focus, highly detailed"
    both = get_retry_params(2, "prompt_enhance", base_prompt="highly detailed, sharp focus", rng=rng)
    assert both["positive_prompt"] == "highly detailed, sharp focus"
    empty = get_retry_params(2, "prompt_enhance", base_prompt="", rng=rng)
    assert empty["positive_prompt"] == "highly detailed, sharp focus"


# --- registry -----------------------------------------------------------------------


def test_builtin_strategies_listed():
    assert {"progressive", "seed_search", "prompt_enhance", "validation_retry"} <= set(list_strategies())


def test_unknown_strategy_lists_known_ones():
    with pytest.raises(UsageError, match="Unknown refinement strategy 'fastest'.*progressive.*seed_search"):
        get_retry_params(2, "fastest")
    with pytest.raises(UsageError):
        get_strategy("fastest")


def test_attempt_must_be_positive():
    with pytest.raises(UsageError, match="attempt must be >= 1"):
        get_retry_params(0, "progressive")


def test_user_strategy_plugs_in_without_touching_callers(monkeypatch, rng):
    monkeypatch.setattr(strategies, "_STRATEGIES", dict(strategies._STRATEGIES))

    @register_strategy("cfg_sweep")
    def cfg_sweep(attempt, base, rng):
        return {**base, "cfg": base["cfg"] + attempt - 1, "seed": base["seed"] if base["seed"] is not None else 1}

    assert get_strategy("cfg_sweep") is cfg_sweep
    assert get_retry_params(3, "cfg_sweep", base_cfg=4.0, base_seed=9)["cfg"] == 6.0
    nxt = next_params("cfg_sweep", 2, GenerationParams(prompt="a tree", cfg=3.0, seed=5), rng=rng)
    assert (nxt.cfg, nxt.seed, nxt.prompt) == (4.0, 5, "a tree")


# --- next_params: the workflow's own values as the base ------------------------------


def test_next_params_uses_workflow_values(rng):
    base = GenerationParams(prompt="a red car", negative_prompt="blurry", steps=4, cfg=1.0, seed=99, width=832)
    second = next_params("progressive", 2, base, rng=rng)
    assert (second.steps, second.cfg) == (6, 1.5)  # a 4-step workflow stays a few-step workflow
    assert second.seed != 99 and second.width == 832 and second.prompt == "a red car"
    assert next_params("progressive", 1, base, rng=rng) == base


def test_next_params_keeps_unknown_values_unset(rng):
    base = GenerationParams(seed=5)
    nxt = next_params("seed_search", 2, base, rng=rng)
    assert nxt.seed == 1005
    # seed_search changes neither steps nor cfg: the workflow keeps its own.
    assert nxt.steps is None and nxt.cfg is None and nxt.prompt is None and nxt.negative_prompt is None
    prog = next_params("progressive", 2, GenerationParams(), rng=rng)
    assert (prog.steps, prog.cfg) == (50, 7.5)  # only here do the seed's defaults apply
    assert isinstance(prog.seed, int)


def test_next_params_random_base_seed(rng):
    nxt = next_params("prompt_enhance", 1, GenerationParams(prompt="a house", seed=-1), rng=rng)
    assert 0 <= nxt.seed <= STRATEGY_SEED_MAX


# --- adjust_prompt_for_retry ----------------------------------------------------------


def test_adjust_prompt_seed_car_example():
    positive, negative = adjust_prompt_for_retry("(Porsche 911:2.0) single car, driving", "multiple cars, duplicate", 2)
    assert positive == "(Porsche 911:2.0) (single car:1.3), driving"
    assert negative == "multiple cars, duplicate, cloned, ghosting, mirrored, two cars, extra car"


@pytest.mark.parametrize(("attempt", "weight"), [(2, "1.3"), (3, "1.6"), (4, "1.9"), (5, "2.2")])
def test_adjust_prompt_weight_grows(attempt, weight):
    positive, negative = adjust_prompt_for_retry("one car on a road", "", attempt)
    assert positive == f"(single car:{weight}) on a road"
    assert negative == "multiple cars, duplicate, cloned, ghosting, mirrored, two cars, extra car"


def test_adjust_prompt_first_attempt_unchanged():
    assert adjust_prompt_for_retry("single car", "blurry", 1) == ("single car", "blurry")


def test_adjust_prompt_reweights_an_already_adjusted_prompt():
    positive, negative = adjust_prompt_for_retry("(single car:1.3), night", "multiple cars, duplicate, cloned, "
                                                 "ghosting, mirrored, two cars, extra car", 3)
    assert positive == "(single car:1.6), night"
    assert negative == "multiple cars, duplicate, cloned, ghosting, mirrored, two cars, extra car"


@pytest.mark.parametrize(
    ("prompt", "adjusted", "terms"),
    [
        pytest.param("a single dog in a park", "a (single dog:1.3) in a park",
                     "multiple dogs, duplicate, cloned, ghosting, mirrored, two dogs, extra dog", id="dog"),
        pytest.param("one bus at night", "(single bus:1.3) at night",
                     "multiple buses, duplicate, cloned, ghosting, mirrored, two buses, extra bus", id="bus"),
        pytest.param("Single person portrait", "(single person:1.3) portrait",
                     "multiple people, duplicate, cloned, ghosting, mirrored, two people, extra person", id="person"),
        pytest.param("one of the best lakes", "one of the best lakes",
                     "duplicate, cloned, ghosting, mirrored", id="not-a-subject"),
        pytest.param("a mountain lake", "a mountain lake", "duplicate, cloned, ghosting, mirrored", id="no-subject"),
        pytest.param("someone single-handedly", "someone single-handedly",
                     "duplicate, cloned, ghosting, mirrored", id="inside-words"),
    ],
)
def test_adjust_prompt_generalises_the_subject(prompt, adjusted, terms):
    positive, negative = adjust_prompt_for_retry(prompt, "", 2)
    assert positive == adjusted
    assert negative == terms


def test_adjust_prompt_appends_only_missing_negatives():
    _, negative = adjust_prompt_for_retry("single car", "blurry, Duplicate, Two Cars", 2)
    assert negative == "blurry, Duplicate, Two Cars, multiple cars, cloned, ghosting, mirrored, extra car"


@pytest.mark.parametrize(("noun", "plural"), [("car", "cars"), ("box", "boxes"), ("city", "cities"),
                                              ("day", "days"), ("woman", "women"), ("Man", "Men")])
def test_pluralize(noun, plural):
    assert pluralize(noun) == plural


def test_validation_retry_strategy_uses_adjust_prompt(rng):
    params = get_retry_params(2, "validation_retry", base_seed=11, base_prompt="single car", base_negative="", rng=rng)
    assert params["positive_prompt"] == "(single car:1.3)" and params["seed"] == 11
