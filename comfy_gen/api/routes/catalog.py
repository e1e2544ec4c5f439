"""The generation catalog: gallery (/generations), favorites, extract-recipe.

Ids are catalog generation ids; the job id POST /generate returned works too
(``ApiContext.generation``). Generations composed from categories above the
caller's tier are left out of listings and are 404 to that caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.api.context import ApiContext

import json
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from comfy_gen.api.schemas import ExtractBody, FavoriteBody, RatingBody
from comfy_gen.api.security import Caller, caller, header_tier
from comfy_gen.errors import NotFound

router = APIRouter(tags=["catalog"])
VERDICTS = ("passed", "best_effort", "unvalidated", "failed", "error")


def _visible(ctx: ApiContext, data: dict[str, Any], tier: str) -> bool:
    from comfy_gen.categories import allows

    registry = ctx.registry()
    return all(allows(registry.get(c), tier) for c in data.get("categories") or [] if c in registry)


def _links(ctx: ApiContext, data: dict[str, Any]) -> dict[str, Any]:
    gid = data.get("generation_id")
    data = dict(data)
    for key in ("local_path", "sidecar_path"):
        if isinstance(data.get(key), str):
            data[key] = ctx.relative(data[key])   # the server's absolute paths stay on the server
    if isinstance(data.get("generation"), dict):
        data["generation"] = _links(ctx, data["generation"])
    if gid:
        data["image_url"] = f"/api/v1/images/{gid}"
        data["thumbnail_url"] = f"/api/v1/images/{gid}/thumbnail"
    return data


def _generation(ctx: ApiContext, generation_id: str, tier: str) -> Any:
    generation = ctx.generation(generation_id)
    if not _visible(ctx, generation.to_dict(), tier):
        raise NotFound(f"No generation {generation_id!r}", kind="generation", id=generation_id)
    return generation


@router.get("/generations", summary="Stored generations, newest first (the gallery)")
def list_generations(request: Request, who: Caller = Depends(caller), recipe: str | None = Query(None, max_length=100),
                     run_id: str | None = Query(None, max_length=100),
                     verdict: str | None = Query(None, pattern="^(" + "|".join(VERDICTS) + ")$"),
                     limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0)) -> dict[str, Any]:
    ctx = request.app.state.ctx
    tier = who.tier_for(header_tier(request))
    catalog = ctx.catalog()
    rows = catalog.list(recipe=recipe, run_id=run_id, verdict=verdict, limit=limit, offset=offset)
    items = [_links(ctx, g.to_dict()) for g in rows]
    shown = [g for g in items if _visible(ctx, g, tier)]
    return {"generations": shown, "total": catalog.count(recipe=recipe, run_id=run_id, verdict=verdict),
            "hidden": len(items) - len(shown), "limit": limit, "offset": offset}


@router.get("/generations/{generation_id}", summary="One stored generation")
def get_generation(generation_id: str, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    ctx = request.app.state.ctx
    return {"generation": _links(ctx, _generation(ctx, generation_id, who.tier_for(header_tier(request))).to_dict())}


@router.post("/favorites", status_code=201, summary="Mark a generation as a favorite (rating 1-5, feedback, tags)")
def add_favorite(body: FavoriteBody, request: Request, who: Caller = Depends(caller)) -> JSONResponse:
    ctx = request.app.state.ctx
    generation = _generation(ctx, body.generation_id, who.tier_for(header_tier(request)))
    favorite = ctx.catalog().set_favorite(generation.generation_id, rating=body.rating, feedback=body.feedback,
                                          tags=body.tags or None)
    return JSONResponse(_links(ctx, favorite.to_dict()), status_code=201)


@router.get("/favorites", summary="Favorites, best first")
def list_favorites(request: Request, who: Caller = Depends(caller), min_rating: int | None = Query(None, ge=1, le=5),
                   category: str | None = Query(None, max_length=100), limit: int = Query(50, ge=1, le=500),
                   offset: int = Query(0, ge=0)) -> dict[str, Any]:
    ctx = request.app.state.ctx
    tier = who.tier_for(header_tier(request))
    catalog = ctx.catalog()
    rows = catalog.favorites(min_rating=min_rating, category=category, limit=limit, offset=offset)
    items = [_links(ctx, f.to_dict()) for f in rows]
    shown = [f for f in items if _visible(ctx, f, tier)]
    return {"favorites": shown, "total": catalog.count_favorites(min_rating=min_rating, category=category),
            "hidden": len(items) - len(shown), "limit": limit, "offset": offset}


@router.put("/favorites/{generation_id}/rating", summary="Change a favorite's rating (and feedback)")
def rate_favorite(generation_id: str, body: RatingBody, request: Request,
                  who: Caller = Depends(caller)) -> dict[str, Any]:
    ctx = request.app.state.ctx
    generation = _generation(ctx, generation_id, who.tier_for(header_tier(request)))
    favorite = ctx.catalog().update_rating(generation.generation_id, body.rating, feedback=body.feedback)
    return _links(ctx, favorite.to_dict())


@router.delete("/favorites/{generation_id}", summary="Remove a favorite (the generation stays)")
def remove_favorite(generation_id: str, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    ctx = request.app.state.ctx
    generation = _generation(ctx, generation_id, who.tier_for(header_tier(request)))
    if not ctx.catalog().delete_favorite(generation.generation_id):
        raise NotFound(f"Generation {generation_id!r} is not a favorite", kind="favorite", id=generation_id)
    return {"message": "Favorite removed", "id": generation.generation_id}


@router.post("/favorites/{generation_id}/extract-recipe",
             summary="A reusable recipe from a favorite; save_as writes recipes/<name>.yaml")
def extract_recipe(generation_id: str, body: ExtractBody, request: Request,
                   who: Caller = Depends(caller)) -> dict[str, Any]:
    from comfy_gen.api import extract
    from comfy_gen.api.routes.images import generation_file

    ctx = request.app.state.ctx
    tier = who.tier_for(header_tier(request), body.policy_tier)
    generation = _generation(ctx, generation_id, tier)
    image = generation_file(ctx, generation.generation_id)
    sidecar = json.loads(ctx.output_file(image.with_name(image.name + ".json")).read_text(encoding="utf-8"))
    recipe, adaptations = extract.extract(
        sidecar, generation.to_dict(), generation_id=generation.generation_id, settings=ctx.settings,
        registry=ctx.registry(), tier=tier, target_categories=body.target_categories,
        preserve_loras=body.preserve_loras, preserve_settings=body.preserve_settings, name=body.save_as)
    saved = None
    if body.save_as:
        path = extract.save(recipe, ctx.settings)
        saved = {"name": recipe["name"], "file": path.name}
    return {"recipe": recipe, "adaptations": adaptations, "source_favorite": generation.generation_id, "saved": saved}
