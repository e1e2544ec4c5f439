"""Generation jobs: POST /generate, GET/DELETE /generate/{id}, GET /generate/{id}/events (SSE).

A body becomes a ``GenerateRequest(paths="confined")`` here (prompt, @tags and
categories composed at the caller's tier, explicit values over the composed
ones) and runs in the jobs manager (comfy_gen.jobs), behind the GPU bound the
service shares with the flow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.api.context import ApiContext

import asyncio
import json
from typing import Any, AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from comfy_gen.api.schemas import GenerateBody
from comfy_gen.api.security import Caller, caller, header_tier
from comfy_gen.errors import ComfyUIUnavailable, UsageError
from comfy_gen.jobs import TERMINAL, new_job_id

router = APIRouter(tags=["generate"])

#: The workflow for a plain prompt (no workflow named, no categories composed).
DEFAULT_WORKFLOW = "sd15-txt2img"
#: A comment line this often keeps proxies from closing an idle event stream.
KEEPALIVE_SECONDS = 15.0


def _ctx(request: Request) -> Any:
    return request.app.state.ctx


def build_request(body: GenerateBody, ctx: ApiContext, tier: str) -> tuple[Any, dict[str, Any]]:
    """The service request for a body, and what the job remembers about it (meta)."""
    from comfy_gen.categories import compose
    from comfy_gen.params import GenerationParams, LoraSpec
    from comfy_gen.service import GenerateRequest, InputImage, Organization, ValidationOptions

    text = (body.prompt or "").strip()
    meta: dict[str, Any] = {"policy_tier": tier, "prompt": text, "categories": [], "recipe_hash": None}
    composition = None
    if body.categories or "@" in text:
        registry = ctx.registry()
        unknown = [c for c in body.categories if c.lower().replace("-", "_") not in registry]
        if unknown:
            raise UsageError(f"Unknown categories: {', '.join(unknown)}",
                             hint="GET /api/v1/categories lists the ids visible to you.")
        tagged = " ".join([text, *(f"@{c}" for c in body.categories)]).strip()
        composition = compose(tagged, registry=registry, tier=tier, dry_run=False)
        meta.update(categories=list(composition.recipe["categories"]), recipe_hash=composition.recipe_hash,
                    explanation=composition.explanation["summary"])
    params = composition.to_params() if composition is not None else GenerationParams(prompt=text or None)
    explicit = {k: getattr(body, k) for k in ("negative_prompt", "width", "height", "steps", "cfg", "seed",
                                               "sampler", "scheduler", "denoise", "checkpoint")
                if getattr(body, k) is not None}
    if body.loras:
        explicit["loras"] = tuple(LoraSpec(name=x.name, strength_model=x.strength) for x in body.loras)
    params = params.replace(**explicit)
    workflow = body.workflow or (composition.workflow if composition is not None else DEFAULT_WORKFLOW)
    input_image = None
    if body.input_image:
        ref = body.input_image.strip()
        if "://" in ref:
            if not ref.lower().startswith(("http://", "https://")):
                raise UsageError(f"input_image: only http(s) URLs or paths in the output folder are accepted")
            if not ctx.settings.api_allow_url_fetch:
                raise UsageError("input_image: this server does not fetch URLs for clients",
                                 hint="Upload the image into the output folder, or set "
                                      "COMFY_GEN_API_ALLOW_URL_FETCH=true on the server.")
        input_image = InputImage(ref=ref)
    request = GenerateRequest(
        workflow=workflow, params=params, input_image=input_image,
        validation=_validation(body),
        enhance=_enhance(body),
        retry_strategy=body.retry_strategy, max_attempts=body.max_attempts, upload=body.upload,
        organization=Organization(project="api"), paths="confined",
        # The job id is the catalog id: one id to poll, fetch the image and mark a favorite.
        generation_id=new_job_id(), recipe_hash=meta["recipe_hash"], categories=tuple(meta["categories"]))
    meta["workflow"] = workflow
    return request, meta


def _validation(body: GenerateBody) -> Any:
    """The body's validation options; ``validation.checks`` checked now (400 naming the field)."""
    from comfy_gen.service import ValidationOptions
    from comfy_gen.validation.plan import checked_specs

    v = body.validation
    checks = checked_specs(v.checks, field="validation.checks")
    return ValidationOptions(enabled=v.enabled or bool(checks), positive_threshold=v.positive_threshold,
                             delta_threshold=v.delta_threshold, checks=checks, technical=v.technical)
def _enhance(body: GenerateBody) -> Any:
    """The body's ``enhance`` (a style implies enabled; an unknown style is a 400 naming the known ones)."""
    from comfy_gen.enhance import EnhanceOptions, check_style

    style = body.enhance.style
    if not (body.enhance.enabled or style):
        return EnhanceOptions()
    return EnhanceOptions(enabled=True, style=check_style(style) if style else None)


def job_view(ctx: ApiContext, snap: dict[str, Any]) -> dict[str, Any]:
    """A job as clients see it: paths relative to the output folder, image links, the kept attempt's scores."""
    result = snap.get("result")
    view: dict[str, Any] = {
        "generation_id": snap["id"], "status": snap["status"], "progress": snap["progress"],
        "version": snap["version"], "created_at": snap["created_at"], "started_at": snap["started_at"],
        "finished_at": snap["finished_at"], "error": snap["error"],
        "categories": snap["meta"].get("categories", []), "recipe_hash": snap["meta"].get("recipe_hash"),
        "workflow": snap["meta"].get("workflow"), "policy_tier": snap["meta"].get("policy_tier"),
        "output_url": None, "image_url": None, "scores": None, "result": None,
    }
    if result:
        shown = dict(result)
        shown["file"] = ctx.relative(result.get("file"))
        shown["sidecar"] = ctx.relative(result.get("sidecar"))
        view["result"] = shown
        best = result.get("best_attempt")
        attempt = next((a for a in result.get("attempts", []) if a.get("attempt") == best), None)
        view["scores"] = attempt.get("scores") if attempt else None
        image = f"/api/v1/images/{snap['id']}"
        view["image_url"] = image
        view["thumbnail_url"] = image + "/thumbnail"
        view["output_url"] = result.get("url") or image
    return view


@router.post("/generate", status_code=202, summary="Queue a generation; returns its generation_id")
def start_generation(body: GenerateBody, request: Request, who: Caller = Depends(caller)) -> JSONResponse:
    from comfy_gen.comfyui import ComfyUIClient

    ctx = _ctx(request)
    tier = who.tier_for(header_tier(request), body.policy_tier)
    if not body.prompt and not body.categories:
        raise UsageError("prompt (or categories) is required")
    gen_request, meta = build_request(body, ctx, tier)
    with ComfyUIClient.from_settings(ctx.settings) as client:
        if not client.is_available():
            raise ComfyUIUnavailable(f"ComfyUI is not reachable at {client.base_url}", url=client.base_url,
                                     hint="Start it, or point COMFY_GEN_COMFYUI_URL at it.")
    job = ctx.jobs.submit(gen_request, meta=meta)
    view = job_view(ctx, job.snapshot())
    view["links"] = {"self": f"/api/v1/generate/{job.id}", "events": f"/api/v1/generate/{job.id}/events"}
    return JSONResponse(view, status_code=202, headers={"Location": f"/api/v1/generate/{job.id}"})


@router.get("/generate/{generation_id}", summary="Status, progress, output URL, scores or error of a generation")
def get_generation_job(generation_id: str, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    ctx = _ctx(request)
    return job_view(ctx, ctx.jobs.get(generation_id).snapshot())


@router.delete("/generate/{generation_id}", summary="Cancel a queued or running generation (ours only)")
def cancel_generation(generation_id: str, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    ctx = _ctx(request)
    return job_view(ctx, ctx.jobs.cancel(generation_id).snapshot())


@router.get("/generate/{generation_id}/events", summary="Progress as Server-Sent Events (open any time)",
            response_class=StreamingResponse)
async def generation_events(generation_id: str, request: Request,
                            who: Caller = Depends(caller)) -> StreamingResponse:
    ctx = _ctx(request)
    job = ctx.jobs.get(generation_id)
    return StreamingResponse(_events(ctx, job, request), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _events(ctx: ApiContext, job: Any, request: Request) -> AsyncIterator[str]:
    """Every change of the job as an SSE message (``progress``, then one ``done``); ids are versions."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    # Job listeners run on the worker thread: hand each snapshot to this loop.
    unlisten = job.listen(lambda snap: loop.call_soon_threadsafe(queue.put_nowait, snap))
    try:
        while True:
            try:
                snap = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_SECONDS)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    return
                yield ": keep-alive\n\n"
                continue
            done = snap["status"] in TERMINAL
            data = json.dumps(job_view(ctx, snap), separators=(",", ":"))
            yield f"event: {'done' if done else 'progress'}\nid: {snap['version']}\ndata: {data}\n\n"
            if done:
                return
    finally:
        unlisten()
