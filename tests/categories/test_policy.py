"""Policy tiers: the server decides; requests can only lower the tier."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfy_gen.categories import (
    TIERS,
    CategoryRegistry,
    UnknownCategory,
    check_policy,
    compose,
    compose_ids,
    effective_tier,
    filter_allowed,
    load_registry,
    preview,
)
from comfy_gen.config import Settings
from comfy_gen.errors import PolicyViolation, UsageError
from tests.categories.conftest import make_category, write_categories


@pytest.mark.parametrize(("server", "requested", "expected"), [
    ("general", None, "general"), ("general", "mature", "general"), ("general", "explicit", "general"),
    ("mature", "explicit", "mature"), ("mature", "general", "general"), ("explicit", "mature", "mature"),
    ("explicit", None, "explicit"),
])
def test_effective_tier_can_only_lower(server: str, requested: str | None, expected: str) -> None:
    assert effective_tier(server, requested) == expected


def test_unknown_tier_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="Unknown policy tier 'adult'"):
        effective_tier("general", "adult")
    with pytest.raises(UsageError):
        effective_tier("superuser")
    assert TIERS == ("general", "mature", "explicit")


@pytest.fixture
def user_registry(tmp_path: Path) -> tuple[Settings, Path]:
    """A user folder with a mature-tier (neutral) test category beside the shipped library."""
    folder = write_categories(tmp_path / "user", [
        make_category("grim_scene", "setting", policy_tier="mature",
                      keywords={"primary": ["grim", "gloomy"]}),
        make_category("restricted_style", "style", policy_tier="explicit", keywords={"primary": ["restricted"]}),
    ])
    return Settings(categories_paths=[folder]), folder


def test_check_policy_lists_every_violation(user_registry) -> None:
    reg = load_registry(user_registry[0])
    cats = [reg.get("night"), reg.get("grim_scene"), reg.get("restricted_style")]
    with pytest.raises(PolicyViolation) as info:
        check_policy(cats, "general")
    exc = info.value
    assert [v["id"] for v in exc.violations] == ["grim_scene", "restricted_style"]
    assert exc.violations[0]["message"] == ('Category "grim_scene" requires policy_tier=mature '
                                            "but the effective tier is general")
    assert exc.to_dict()["violations"] == exc.violations
    check_policy(cats, "explicit")
    with pytest.raises(PolicyViolation) as info:
        check_policy(cats, "mature")
    assert [v["id"] for v in info.value.violations] == ["restricted_style"]


def test_listings_hide_categories_above_the_tier(user_registry) -> None:
    reg = load_registry(user_registry[0])
    general_ids = {c.id for c in reg.list(tier="general")}
    assert "grim_scene" not in general_ids and "night" in general_ids
    assert "grim_scene" in {c.id for c in reg.list(tier="mature")}
    assert reg.search("grim", tier="general") == []
    assert [c.id for c in reg.search("grim", tier="mature")] == ["grim_scene"]
    with pytest.raises(UnknownCategory):
        reg.get("grim_scene", tier="general")
    assert "grim_scene" not in reg.suggest("grim_scen", tier="general")
    assert [c.id for c in filter_allowed(reg, "mature")] == [c.id for c in reg if c.id != "restricted_style"]


def test_general_server_blocks_explicit_tag_and_never_infers_it(user_registry) -> None:
    reg = load_registry(user_registry[0])
    tier = effective_tier("general", "explicit")   # a request cannot raise the tier
    with pytest.raises(PolicyViolation, match='Category "grim_scene" requires policy_tier=mature'):
        compose("@grim_scene a city street", registry=reg, tier=tier)
    with pytest.raises(PolicyViolation):
        compose_ids(["grim_scene"], registry=reg, tier=tier)
    comp = compose("a grim gloomy city street", registry=reg, tier=tier)
    assert "grim_scene" not in comp.recipe["categories"] and comp.explanation["tier"] == "general"
    # a keyword @tag does not resolve to a hidden category either
    assert compose("@gloomy city", registry=reg, tier=tier).explanation["unmatched_tags"][0]["tag"] == "gloomy"
    assert preview("@grim_scene city", registry=reg, tier=tier)["policy_violations"] == ["grim_scene"]


def test_mature_server_allows_it(user_registry) -> None:
    reg = load_registry(user_registry[0])
    comp = compose("a grim gloomy city street", registry=reg, tier=effective_tier("mature"))
    assert "grim_scene" in comp.recipe["categories"]
    assert "policy" in {s["phase"] for s in comp.explanation["steps"]}


def test_compose_default_tier_is_general(shipped: CategoryRegistry, user_registry) -> None:
    reg = load_registry(user_registry[0])
    with pytest.raises(PolicyViolation):
        compose("@restricted_style a lake", registry=reg)
