"""Recipes and runs: GET /recipes[/{name}], POST /recipes/{name}/runs, GET /runs[/{id}].

Recipe names are single names in the recipes folder (``recipes/<name>.yaml``);
nothing else can be named from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.api.context import ApiContext

import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from comfy_gen.api import runs_view
from comfy_gen.api.schemas import RunBody
from comfy_gen.api.security import Caller, caller
from comfy_gen.errors import ComfyGenError, NotFound, PathNotAllowed

router = APIRouter(tags=["runs"])

RECIPE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")


def recipe_path(ctx: ApiContext, name: str) -> Path:
    """``recipes/<name>.yaml`` (or .yml), confined to the recipes folder; NotFound otherwise."""
    from comfy_gen.paths import confine

    if not RECIPE_NAME.match(name):
        raise NotFound(f"No recipe {name!r}", kind="recipe", id=name)
    folder = Path(ctx.settings.recipes_dir)
    for suffix in (".yaml", ".yml"):
        try:
            path = confine(folder / f"{name}{suffix}", [folder])
        except PathNotAllowed:
            continue
        if path.is_file():
            return path
    raise NotFound(f"No recipe {name!r} in the recipes folder", kind="recipe", id=name)


@router.get("/recipes", summary="The recipes in the recipes folder")
def list_recipes(request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    from comfy_gen.recipes import load_recipe

    ctx = request.app.state.ctx
    folder = Path(ctx.settings.recipes_dir)
    recipes = []
    paths = sorted(p for s in ("*.yaml", "*.yml") for p in folder.glob(s)) if folder.is_dir() else []
    for path in paths:
        if not RECIPE_NAME.match(path.stem):
            continue
        entry: dict[str, Any] = {"name": path.stem, "file": path.name}
        try:
            recipe = load_recipe(path, settings=ctx.settings)
            entry.update(description=recipe.description, workflow=recipe.workflow, nightly=recipe.nightly,
                         categories=list(recipe.categories), valid=True)
        except ComfyGenError as exc:
            # Named by file name: the server's folders stay on the server.
            detail = exc.to_dict()
            entry.update(valid=False, error=exc.message.replace(str(path), path.name),
                         problems=[str(p).replace(str(path), path.name) for p in detail.get("problems", [])])
        recipes.append(entry)
    return {"recipes": recipes, "total": len(recipes)}


@router.get("/recipes/{name}", summary="A recipe: its settings and how many items it expands to")
def get_recipe(name: str, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    from comfy_gen.runs import plan_run

    ctx = request.app.state.ctx
    path = recipe_path(ctx, name)
    plan = plan_run(path, settings=ctx.settings, confine=True, migrate=False)
    data = plan.recipe.to_dict()
    data["path"] = path.name
    data["item_count"] = len(plan.items)
    return {"recipe": data, "yaml": path.read_text(encoding="utf-8")}


@router.post("/recipes/{name}/runs", status_code=202,
             summary="Start a run: the render-recipe/on-demand deployment if Prefect has it, else in-process")
def start_run(name: str, request: Request, body: RunBody | None = None,
              who: Caller = Depends(caller)) -> JSONResponse:
    ctx = request.app.state.ctx
    body = body or RunBody()
    launched = ctx.launcher.start(recipe_path(ctx, name), force=body.force, max_items=body.max_items,
                                  upload=body.upload)
    data = launched.to_dict()
    data["links"] = {"self": f"/api/v1/runs/{launched.flow_run_id}", "page": f"/#/runs/{launched.flow_run_id}",
                     "prefect": launched.prefect_url}
    return JSONResponse(data, status_code=202)


@router.get("/runs", summary="Recent recipe runs (run records, and runs this server started)")
def list_runs(request: Request, who: Caller = Depends(caller), recipe: str | None = Query(None, max_length=100),
              limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0)) -> dict[str, Any]:
    runs = runs_view.list_runs(request.app.state.ctx, recipe=recipe)
    return {"runs": runs[offset:offset + limit], "total": len(runs), "limit": limit, "offset": offset}


@router.get("/runs/{run_id}", summary="One run: status, counts, contact sheet, items")
def get_run(run_id: str, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    if len(run_id) > 100:
        raise NotFound("No such run", kind="run")
    return runs_view.get_run(request.app.state.ctx, run_id)
