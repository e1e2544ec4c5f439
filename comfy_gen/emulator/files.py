"""GET /view and POST /upload/{image,mask}, with ComfyUI's rules (server.py).

View: ``type`` defaults to output; ``..`` or an absolute name is 400, an unknown
type 400, a missing file 404 (captures/104-108, 211-212). Upload: dedupe by
name and content hash, rename to ``"x (1).png"``, overwrite on request, reject
subfolder traversal with 400 and an unknown type with 500; no content check
(captures/200-214).
"""

from __future__ import annotations

import hashlib
import io
import json
import mimetypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from PIL import Image, UnidentifiedImageError

INTERNAL_ERROR = "500 Internal Server Error\n\nServer got itself in trouble"


@dataclass(frozen=True)
class Dirs:
    output: Path
    input: Path
    temp: Path

    def by_type(self, kind: str) -> Path | None:
        return {"output": self.output, "input": self.input, "temp": self.temp}.get(kind)


def split_annotation(name: str) -> tuple[str, str | None]:
    """``"x.png [input]"`` -> ("x.png", "input"), as folder_paths.annotated_filepath."""
    for kind in ("output", "input", "temp"):
        suffix = f" [{kind}]"
        if name.endswith(suffix):
            return name[: -len(suffix)], kind
    return name, None


def internal_error() -> web.Response:
    return web.Response(status=500, text=INTERNAL_ERROR)


def view(query: Any, dirs: Dirs) -> web.StreamResponse:
    if "filename" not in query:
        return web.Response(status=404)
    filename, kind = split_annotation(query["filename"])
    if not filename or filename[0] == "/" or ".." in filename:
        return web.Response(status=400)
    folder = dirs.by_type(kind or query.get("type", "output"))
    if folder is None:
        return web.Response(status=400)
    root = str(folder.resolve())
    if "subfolder" in query:
        full = os.path.abspath(os.path.join(root, query["subfolder"]))
        if os.path.commonpath((full, root)) != root:
            return web.Response(status=403)
        root = full
    filename = os.path.basename(filename)
    path = Path(root) / filename
    if not path.is_file():
        return web.Response(status=404)
    disposition = {"Content-Disposition": f'filename="{filename}"'}
    channel = query.get("channel", "")
    try:
        if "preview" in query:
            return _preview(path, query["preview"], channel, disposition)
        if channel in ("rgb", "a"):
            return _channel(path, channel, disposition)
    except (UnidentifiedImageError, OSError):
        return internal_error()  # ComfyUI raises from Image.open here
    content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    if content_type in {"text/html", "application/xhtml+xml", "text/javascript", "text/css"}:
        content_type = "application/octet-stream"
    # FileResponse adds Etag, Last-Modified and range support, as ComfyUI's does.
    return web.FileResponse(path, headers={**disposition, "Content-Type": content_type})


def _preview(path: Path, spec: str, channel: str, headers: dict[str, str]) -> web.Response:
    parts = spec.split(";")
    fmt = parts[0] if parts[0] in ("webp", "jpeg") and "a" not in channel else "webp"
    quality = int(parts[-1]) if parts[-1].isdigit() else 90
    with Image.open(path) as img:
        out = img.convert("RGB") if fmt == "jpeg" or channel == "rgb" else img.copy()
    buf = io.BytesIO()
    out.save(buf, format=fmt.upper(), quality=quality)
    return web.Response(body=buf.getvalue(), content_type=f"image/{fmt}", headers=headers)


def _channel(path: Path, channel: str, headers: dict[str, str]) -> web.Response:
    with Image.open(path) as img:
        if channel == "rgb":
            out = img.convert("RGB")
        else:
            alpha = img.getchannel("A") if img.mode == "RGBA" else Image.new("L", img.size, 255)
            out = Image.new("RGBA", alpha.size)
            out.putalpha(alpha)
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return web.Response(body=buf.getvalue(), content_type="image/png", headers=headers)


async def upload(request: web.Request, dirs: Dirs, *, mask: bool = False) -> web.Response:
    post = await request.post()
    kind = post.get("type") or "input"
    folder = dirs.by_type(str(kind))
    if folder is None:
        return internal_error()  # ComfyUI hits an UnboundLocalError (captures/209)
    image = post.get("image")
    if not isinstance(image, web.FileField) or not image.filename:
        return web.Response(status=400)
    data = image.file.read()
    subfolder = str(post.get("subfolder", ""))
    root = str(folder.resolve())
    target_dir = os.path.join(root, os.path.normpath(subfolder))
    filename = image.filename
    path = os.path.abspath(os.path.join(target_dir, filename))
    if os.path.commonpath((root, path)) != root:
        return web.Response(status=400)
    os.makedirs(target_dir, exist_ok=True)
    overwrite = post.get("overwrite") in ("true", "1")
    duplicate = False
    if not overwrite:
        stem, ext = os.path.splitext(filename)
        i = 1
        while os.path.exists(path):
            if _same_content(path, data):  # same name and bytes: reuse (ComfyUI #3465)
                duplicate = True
                break
            filename = f"{stem} ({i}){ext}"
            path = os.path.join(target_dir, filename)
            i += 1
    if not duplicate:
        if mask:
            data = _apply_mask(data, post.get("original_ref"), dirs)
        Path(path).write_bytes(data)
    return web.json_response({"name": filename, "subfolder": subfolder, "type": kind})


def _same_content(path: str, data: bytes) -> bool:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest()


def _apply_mask(mask_bytes: bytes, original_ref: Any, dirs: Dirs) -> bytes:
    """Copy the mask's alpha onto the original image, as /upload/mask does."""
    try:
        ref = json.loads(str(original_ref))
        name, kind = split_annotation(ref["filename"])
        folder = dirs.by_type(kind or ref.get("type", "output"))
        if folder is None or ".." in name or name.startswith("/"):
            return mask_bytes
        original = folder / ref.get("subfolder", "") / name
        with Image.open(original) as base, Image.open(io.BytesIO(mask_bytes)) as overlay:
            out = base.convert("RGBA")
            out.putalpha(overlay.convert("RGBA").getchannel("A"))
        buf = io.BytesIO()
        out.save(buf, format="PNG")
        return buf.getvalue()
    except (ValueError, KeyError, TypeError, OSError, UnidentifiedImageError):
        return mask_bytes  # no content validation: keep what was sent
