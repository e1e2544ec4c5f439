"""Image and history tools: list_images, get_image_info, delete_image, get_history.

Images live in the server's output folder (local) or, when object storage is
configured, its bucket. A name from a client is confined: a local name must
resolve inside the output folder (``comfy_gen.paths.confine``, symlinks
resolved), a bucket key passes ``storage.check_key`` and only our bucket is
touched. History is read from the sidecars next to kept images.
"""

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Iterator, Literal

from pydantic import Field

from comfy_gen.errors import UsageError
from comfy_gen.mcp.state import blocking

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.mcp.server import App

Json = dict[str, Any]
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".mp4", ".webm"})
Source = Annotated[Literal["local", "bucket"] | None, Field(
    description="local: the output folder; bucket: object storage; null: the bucket when storage is "
                "configured, else local.")]
ImageName = Annotated[str, Field(description="An image path relative to the output folder (as list_images "
                                             "returns it), or a bucket key.", min_length=1, max_length=1024)]


log = logging.getLogger(__name__)


def register(app: "App") -> None:
    mcp = app.mcp

    @mcp.tool()
    async def list_images(
        limit: Annotated[int, Field(ge=1, le=1000)] = 20,
        prefix: Annotated[str, Field(description="Only names starting with this.", max_length=1024)] = "",
        sort: Annotated[Literal["newest", "oldest", "name"], Field(description="Order.")] = "newest",
        source: Source = None,
    ) -> Json:
        """Generated images: images [{name, size, last_modified, url?, sidecar}], count, total, source."""
        return await blocking(lambda: _list(app, limit, prefix, sort, _source(app, source)))

    @mcp.tool()
    async def get_image_info(image_name: ImageName, source: Source = None) -> Json:
        """One image: name, size, last_modified, url or path, and its generation_params (prompt, seed,
        workflow, ... from the embedded metadata or sidecar; null when it carries none)."""
        return await blocking(lambda: _info(app, image_name, _source(app, source)))

    @mcp.tool()
    async def delete_image(image_name: ImageName, source: Source = None) -> Json:
        """Delete an image and its sidecar from the output folder or our bucket (nothing else).
        Returns deleted (names) and message."""
        return await blocking(lambda: _delete(app, image_name, _source(app, source)))

    @mcp.tool()
    async def get_history(
        limit: Annotated[int, Field(ge=1, le=1000)] = 10,
    ) -> Json:
        """Recent generations, newest first, from the generation catalog (the sidecars when the
        catalog cannot be opened): history [{generation_id, prompt_id, name, created, status,
        workflow, parameters, url}], count, source ("catalog" | "sidecars")."""
        return await blocking(lambda: _history(app, limit))


def _source(app: Any, source: str | None) -> str:
    if source == "bucket" and not app.settings.storage_configured:
        raise UsageError("No object storage is configured (COMFY_GEN_MINIO_ENDPOINT); use source=local")
    return source or ("bucket" if app.settings.storage_configured else "local")


def _root(app: Any) -> Path:
    return Path(app.settings.output_dir).expanduser().resolve()


def _local_images(root: Path) -> Iterator[Path]:
    if root.is_dir():
        for path in root.rglob("*"):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and ".comfy-gen" not in path.parts:
                yield path


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat()


def _local_entry(root: Path, path: Path) -> Json:
    stat = path.stat()
    sidecar = path.with_name(path.name + ".json")
    return {"name": path.relative_to(root).as_posix(), "size": stat.st_size, "last_modified": _when(stat.st_mtime),
            "path": str(path), "sidecar": sidecar.relative_to(root).as_posix() if sidecar.is_file() else None}


def _list(app: Any, limit: int, prefix: str, sort: str, source: str) -> Json:
    if source == "bucket":
        from comfy_gen.storage import get_storage

        storage = get_storage(app.settings)
        objects = [o for o in storage.list(prefix) if Path(o.key).suffix.lower() in IMAGE_SUFFIXES]
        rows = [{"name": o.key, "size": o.size, "etag": o.etag, "url": storage.url_for(o.key),
                 "last_modified": o.last_modified.isoformat() if o.last_modified else ""} for o in objects]
    else:
        root = _root(app)
        rows = [_local_entry(root, p) for p in _local_images(root)]
        rows = [r for r in rows if str(r["name"]).startswith(prefix)]
    key = "name" if sort == "name" else "last_modified"
    rows.sort(key=lambda r: r[key] or "", reverse=sort == "newest")
    return {"images": rows[:limit], "count": min(limit, len(rows)), "total": len(rows), "source": source}


def _bucket(app: Any) -> Any:
    """The configured S3 storage (``_source`` made sure there is one)."""
    from comfy_gen.storage import get_storage

    return get_storage(app.settings)


def _local_path(app: Any, name: str) -> Path:
    from comfy_gen.paths import confine

    root = _root(app)
    path = confine(name, [root], base=root)
    if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
        raise UsageError(f"No image {name!r} in the output folder", hint="list_images shows the names.")
    return path


def _info(app: Any, name: str, source: str) -> Json:
    from comfy_gen.errors import MetadataNotFound
    from comfy_gen.metadata import read_metadata

    if source == "bucket":
        from comfy_gen.storage.base import check_key

        storage = _bucket(app)
        info = storage.stat(check_key(name))
        if info is None:
            raise UsageError(f"No object {name!r} in {storage.where}", hint="list_images shows the keys.")
        return {"name": name, "size": info.size, "url": storage.url_for(name),
                "last_modified": info.last_modified.isoformat() if info.last_modified else None,
                "generation_params": None}
    path = _local_path(app, name)
    try:
        meta: Json | None = read_metadata(path)
    except MetadataNotFound:
        meta = None
    return {**_local_entry(_root(app), path), "generation_params": _summary(meta) if meta else None,
            "metadata": meta}


def _delete(app: Any, name: str, source: str) -> Json:
    if source == "bucket":
        from comfy_gen.storage.admin import delete_image as delete_object

        storage = _bucket(app)
        deleted = delete_object(storage, name)
        where = storage.where
    else:
        root = _root(app)
        path = _local_path(app, name)
        deleted = [path.relative_to(root).as_posix()]
        path.unlink()
        sidecar = path.with_name(path.name + ".json")
        if sidecar.is_file():
            sidecar.unlink()
            deleted.append(sidecar.relative_to(root).as_posix())
        where = str(root)
    return {"deleted": deleted, "message": f"Deleted {', '.join(deleted)} from {where}"}


def _summary(meta: Json) -> Json:
    """The parameters an agent needs, from a comfy-gen metadata document (or its sidecar shape)."""
    params = meta.get("parameters") or (meta.get("comfy_gen") or {}).get("params") or {}
    inp = meta.get("input") or {}
    return {"prompt": inp.get("prompt", params.get("prompt")),
            "negative_prompt": inp.get("negative_prompt", params.get("negative_prompt")),
            "workflow": (meta.get("workflow") or {}).get("name") if isinstance(meta.get("workflow"), dict)
            else meta.get("workflow"),
            **{k: params.get(k) for k in ("seed", "steps", "cfg", "sampler", "scheduler", "resolution", "model",
                                          "loras") if k in params}}


def _history(app: Any, limit: int) -> Json:
    from comfy_gen.catalog import Catalog
    from comfy_gen.errors import CatalogError

    root = _root(app)
    try:
        catalog = Catalog.from_settings(app.settings)
    except CatalogError as exc:
        log.warning("Generation catalog unavailable (%s); reading history from the sidecars", exc)
        return {**_sidecar_history(root, limit), "source": "sidecars"}
    try:
        rows = [{"generation_id": g.generation_id, "prompt_id": g.prompt_id, "name": _name(root, g.local_path),
                 "created": g.created_at.isoformat(), "status": g.verdict, "workflow": g.workflow,
                 "parameters": dict(g.params), "url": g.object_url} for g in catalog.list(limit=limit)]
    finally:
        catalog.close()
    return {"history": rows, "count": len(rows), "source": "catalog"}


def _name(root: Path, local_path: str) -> str:
    path = Path(local_path)
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name


def _sidecar_history(root: Path, limit: int) -> Json:
    sidecars = [p for p in root.rglob("*.json") if p.is_file() and Path(p.stem).suffix.lower() in IMAGE_SUFFIXES]
    sidecars.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    rows = []
    for sidecar in sidecars:
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a sidecar being written or damaged: not history
        if not isinstance(meta, dict) or "generation_id" not in meta:
            continue
        refinement = meta.get("refinement") or {}
        storage = meta.get("storage") or {}
        rows.append({"generation_id": meta.get("generation_id"), "prompt_id": (meta.get("comfyui") or {}).get("prompt_id"),
                     "name": sidecar.with_name(sidecar.stem).relative_to(root).as_posix(),
                     "created": meta.get("timestamp"), "status": refinement.get("final_status"),
                     "workflow": (meta.get("workflow") or {}).get("name"),
                     "parameters": _summary(meta), "url": storage.get("url")})
        if len(rows) >= limit:
            break
    return {"history": rows, "count": len(rows)}
