"""Stored images, thumbnails and sidecars, from the output folder only.

``/images/{generation_id}``: a catalog id, or the job id POST /generate
returned. ``/images/files/{path}``: a file by its path relative to the output
folder (what run pages and Prefect artifacts link to, comfy_gen.runrecord).
Anything that resolves outside the output folder (``..``, symlinks) is a 404.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.api.context import ApiContext

import hashlib
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse

from comfy_gen.api.security import Caller, caller
from comfy_gen.errors import NotFound

router = APIRouter(tags=["images"])

SERVED_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".json"}
IMAGE_SUFFIXES = SERVED_SUFFIXES - {".json"}


def generation_file(ctx: ApiContext, generation_id: str) -> Path:
    """The image of a job or catalog generation, confined to the output folder."""
    job = ctx.jobs.find(generation_id)
    if job is not None and job.result is not None and job.result.file is not None:
        return ctx.output_file(job.result.file)
    path = ctx.generation(generation_id).local_path
    if not path:
        raise NotFound(f"Generation {generation_id!r} has no local image", kind="image", id=generation_id)
    return ctx.output_file(path)


def _served(ctx: ApiContext, path: Path) -> Path:
    if path.suffix.lower() not in SERVED_SUFFIXES:
        raise NotFound("No such file in the output folder", kind="file")
    return path


def thumbnail(ctx: ApiContext, source: Path, size: int) -> Path:
    """A cached PNG thumbnail (longest side ``size``) under the state folder."""
    from PIL import Image

    stat = source.stat()
    key = hashlib.sha256(f"{source}|{stat.st_mtime_ns}|{stat.st_size}|{size}".encode()).hexdigest()[:32]
    target = Path(ctx.settings.state_dir) / "thumbnails" / f"{key}.png"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(source) as image:
            image.thumbnail((size, size))
            tmp = target.with_suffix(".tmp")
            image.save(tmp, format="PNG")
        tmp.replace(target)
    return target


@router.get("/images/files/{path:path}", summary="A stored image or sidecar by its path in the output folder")
def output_file(path: str, request: Request, who: Caller = Depends(caller),
                size: int | None = Query(None, ge=16, le=1024, description="Thumbnail size")) -> FileResponse:
    ctx = request.app.state.ctx
    found = _served(ctx, ctx.output_file(path))
    if size is not None and found.suffix.lower() in IMAGE_SUFFIXES:
        return FileResponse(thumbnail(ctx, found, size), media_type="image/png")
    return FileResponse(found)


@router.get("/images/{generation_id}", summary="The stored image of a generation")
def generation_image(generation_id: str, request: Request, who: Caller = Depends(caller)) -> FileResponse:
    ctx = request.app.state.ctx
    return FileResponse(_served(ctx, generation_file(ctx, generation_id)))


@router.get("/images/{generation_id}/thumbnail", summary="A PNG thumbnail of a generation's image")
def generation_thumbnail(generation_id: str, request: Request, who: Caller = Depends(caller),
                         size: int = Query(256, ge=16, le=1024)) -> FileResponse:
    ctx = request.app.state.ctx
    return FileResponse(thumbnail(ctx, _served(ctx, generation_file(ctx, generation_id)), size),
                        media_type="image/png")


@router.get("/images/{generation_id}/sidecar", summary="The JSON sidecar (metadata) of a generation's image")
def generation_sidecar(generation_id: str, request: Request, who: Caller = Depends(caller)) -> FileResponse:
    ctx = request.app.state.ctx
    image = generation_file(ctx, generation_id)
    return FileResponse(ctx.output_file(image.with_name(image.name + ".json")), media_type="application/json")
