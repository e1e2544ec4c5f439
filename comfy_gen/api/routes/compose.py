"""Composition and categories: /compose, /compose/preview, /categories[/{id}].

Everything here runs at the caller's tier: categories above it are left out of
listings and search and are never inferred; an explicit @tag above it is a 403
with the violations (the seed's contract).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from comfy_gen.api.schemas import ComposeBody, PreviewBody
from comfy_gen.api.security import Caller, caller, header_tier
from comfy_gen.categories import TYPES, UnknownCategory

router = APIRouter(tags=["compose"])


def _ctx(request: Request) -> Any:
    return request.app.state.ctx


@router.post("/compose", summary="Compose categories from text with @tags into a recipe")
def compose(body: ComposeBody, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    from comfy_gen.categories import compose as compose_text

    tier = who.tier_for(header_tier(request), body.policy_tier)
    comp = compose_text(body.input, registry=_ctx(request).registry(), max_categories=body.max_categories,
                        min_confidence=body.min_confidence, tier=tier, dry_run=body.dry_run)
    data = comp.to_dict()
    data["categories_used"] = list(comp.recipe["categories"])
    data["policy_tier"] = tier
    return data


@router.post("/compose/preview", summary="Which categories the text selects, without composing")
def compose_preview(body: PreviewBody, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    from comfy_gen.categories import preview

    tier = who.tier_for(header_tier(request), body.policy_tier)
    data = preview(body.input, registry=_ctx(request).registry(), max_categories=body.max_categories,
                   min_confidence=body.min_confidence, tier=tier)
    # The seed's field names, next to the engine's.
    data["tags_found"] = [c["id"] for c in data["explicit_categories"]]
    data["categories_inferred"] = [{"id": c["id"], "confidence": c["confidence"], "type": c["type"]}
                                   for c in data["inferred_categories"]]
    data["policy_tier"] = tier
    return data


@router.get("/categories", summary="List or search the categories visible at the caller's tier")
def list_categories(request: Request, who: Caller = Depends(caller),
                    type: str | None = Query(None, description=f"One of {', '.join(TYPES)}"),  # noqa: A002
                    policy_tier: str | None = Query(None, description="Can only lower the caller's tier"),
                    search: str | None = Query(None, max_length=200),
                    limit: int = Query(100, ge=1, le=500), offset: int = Query(0, ge=0)) -> dict[str, Any]:
    tier = who.tier_for(header_tier(request), policy_tier)
    registry = _ctx(request).registry()
    cats = registry.search(search, tier=tier) if search else registry.list(tier=tier)
    if type is not None:
        registry.list(type=type)  # an unknown type is a 422 naming the known ones
        cats = [c for c in cats if c.type == type]
    page = cats[offset:offset + limit]
    return {"categories": [c.summary() for c in page], "total": len(cats), "limit": limit, "offset": offset,
            "policy_tier": tier, "types": list(TYPES)}


@router.get("/categories/{category_id}", summary="One category in full (404 if unknown or above the tier)")
def get_category(category_id: str, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    tier = who.tier_for(header_tier(request))
    if len(category_id) > 100:
        raise UnknownCategory(category_id[:100])
    cat = _ctx(request).registry().get(category_id, tier=tier)
    return {"category": cat.to_dict()}
