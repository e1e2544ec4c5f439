"""Content-policy tiers: general < mature < explicit.

The effective tier comes from the server (``Settings.policy_tier``) or the
caller's identity; a request may only lower it, so a client can never raise
its own tier by asking.
"""

from __future__ import annotations

import logging
from typing import Iterable, TypeVar

from comfy_gen.categories.model import Category
from comfy_gen.errors import PolicyViolation, UsageError

log = logging.getLogger(__name__)

TIERS: tuple[str, ...] = ("general", "mature", "explicit")
_LEVEL = {name: i for i, name in enumerate(TIERS)}

C = TypeVar("C", bound=Category)


def tier_level(tier: str) -> int:
    """0 for general, 1 mature, 2 explicit; UsageError for anything else."""
    try:
        return _LEVEL[tier]
    except (KeyError, TypeError):
        raise UsageError(f"Unknown policy tier {tier!r}; expected one of {', '.join(TIERS)}") from None


def effective_tier(server_tier: str, requested: str | None = None) -> str:
    """The tier a request runs at: the lower of the server's and the requested one."""
    server_level = tier_level(server_tier)
    if requested is None:
        return server_tier
    requested_level = tier_level(requested)
    if requested_level > server_level:
        log.info("policy: request asked for tier %r above the server tier %r; using %r",
                    requested, server_tier, server_tier)
        return server_tier
    return requested


def allows(category: Category, tier: str) -> bool:
    """True when ``category`` may be used at ``tier``."""
    return tier_level(category.policy_tier) <= tier_level(tier)


def filter_allowed(categories: Iterable[C], tier: str) -> list[C]:
    """Only the categories usable at ``tier`` (listings hide the others)."""
    tier_level(tier)
    return [c for c in categories if allows(c, tier)]


def check_policy(categories: Iterable[Category], tier: str) -> None:
    """Raise PolicyViolation listing every category above ``tier``."""
    tier_level(tier)
    violations = []
    for cat in categories:
        if allows(cat, tier):
            continue
        message = (f'Category "{cat.id}" requires policy_tier={cat.policy_tier} '
                   f"but the effective tier is {tier}")
        violations.append({"id": cat.id, "policy_tier": cat.policy_tier, "effective_tier": tier,
                           "message": message})
    if violations:
        ids = ", ".join(v["id"] for v in violations)
        log.warning("policy: denied categories %s at tier %s", ids, tier)
        raise PolicyViolation("; ".join(v["message"] for v in violations), violations)
    log.info("policy: allowed at tier %s", tier)
