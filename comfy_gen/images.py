"""Input-image preparation: fetch (URL or confined local path), resize and crop.

Crop modes for ``preprocess_image(..., resize=(w, h), crop=...)``:

- ``cover``: scale to cover the target, then centre-crop the overflow.
- ``contain``: scale to fit inside the target, pad with black (letterbox).
- ``center``: centre-crop to the target aspect ratio at source resolution, then
  resize. Same framing as ``cover``; the original's "center" was a plain resize
  that distorted the aspect ratio, which this fixes.
- ``None``: plain resize to the target (aspect ratio not kept).

Resampling is LANCZOS; the output keeps the source format; EXIF orientation is
applied first so phone photos are not sideways.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlparse

from comfy_gen.errors import UsageError
from comfy_gen.inputfile import InputFileError, read_bounded
from comfy_gen.paths import PathTrust, user_path

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

CropMode = Literal["cover", "contain", "center"]
CROP_MODES = ("cover", "contain", "center")
MAX_SIDE = 16384
#: Downloads larger than this are refused (a decompression-bomb guard for URLs).
MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024
_FORMAT_EXT = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tiff"}
_SUFFIX = re.compile(r"^\.[a-z0-9]{1,5}$")
_SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` -> ``(w, h)``; UsageError for anything else."""
    match = _SIZE.match(text or "")
    if not match:
        raise UsageError(f"Invalid size {text!r}: use WIDTHxHEIGHT, e.g. 512x768")
    w, h = int(match.group(1)), int(match.group(2))
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
        raise UsageError(f"Invalid size {text!r}: each side must be 1..{MAX_SIDE}")
    return w, h


def _open(path: Path, label: str | None = None) -> PILImage:
    """Open and decode an input image; UsageError for anything that is not a sane image.

    Pillow only *warns* between MAX_IMAGE_PIXELS and twice that; for input images
    the warning is an error too: a small file that decodes to gigabytes is a
    decompression bomb, not a photo to resize. ``label`` names the image in
    errors (the user's path or URL rather than our working copy).
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    name = label or str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            if image.width > MAX_SIDE or image.height > MAX_SIDE:  # before decoding anything
                size = f"{image.width}x{image.height}"
                image.close()
                raise UsageError(f"Input image {name} is {size}: each side may be at most {MAX_SIDE} pixels")
            image.load()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise UsageError(f"Input image {name} is too large to decode: {_pixels(exc)}",
                         hint=f"Input images may have at most {Image.MAX_IMAGE_PIXELS} pixels; "
                              "scale it down first.") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        # SyntaxError and ValueError: some Pillow plugins raise them for corrupt headers.
        # Pillow's own text names our working copy, not the user's file.
        reason = "unknown or damaged image format" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise UsageError(f"{name} is not a readable image: {reason}") from exc
    return image


def _pixels(exc: BaseException) -> str:
    """Pillow's message says how many pixels the image has; keep it short."""
    text = str(exc)
    match = re.search(r"\((\d+) pixels\)", text)
    return f"{match.group(1)} pixels (possible decompression bomb)" if match else text


def preprocess_image(src: str | Path, dest: str | Path | None = None, *,
                     resize: tuple[int, int] | None = None, crop: CropMode | None = None) -> Path:
    """Write a resized/cropped copy of ``src`` to ``dest`` and return ``dest``.

    ``dest`` None: a new temporary file with the source suffix (the caller owns it).
    The source is only overwritten when ``dest == src``. Without ``resize`` the
    file is copied unchanged. UsageError for a bad mode, size or unreadable image.
    """
    from PIL import Image, ImageOps

    src = Path(src)
    if crop is not None and crop not in CROP_MODES:
        raise UsageError(f"Unknown crop mode {crop!r}; use one of {', '.join(CROP_MODES)}")
    if crop is not None and resize is None:
        raise UsageError(f"Crop mode {crop!r} needs a target size (resize=WxH)")
    if resize is not None and not all(isinstance(v, int) and 1 <= v <= MAX_SIDE for v in resize):
        raise UsageError(f"Invalid target size {resize!r}")
    if dest is None:
        fd, name = tempfile.mkstemp(prefix="comfy-gen-", suffix=src.suffix or ".png")
        os.close(fd)
        dest = name
    dest = Path(dest)
    image = _open(src)
    fmt = image.format
    if resize is None:
        if dest.resolve() != src.resolve():
            shutil.copyfile(src, dest)
        return dest

    image = ImageOps.exif_transpose(image)
    if image.mode in ("P", "1", "I;16", "CMYK"):
        # Palette/bit modes would resize with NEAREST; CMYK would pad with white.
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    size = (int(resize[0]), int(resize[1]))
    lanczos = Image.Resampling.LANCZOS
    if crop == "cover":
        out = ImageOps.fit(image, size, method=lanczos, centering=(0.5, 0.5))
    elif crop == "contain":
        fill = (0, 0, 0, 255) if image.mode in ("RGBA", "LA") else 0 if image.mode == "L" else (0, 0, 0)
        out = ImageOps.pad(image, size, method=lanczos, color=fill, centering=(0.5, 0.5))
    elif crop == "center":
        out = _center_crop(image, size[0] / size[1]).resize(size, lanczos)
    else:
        out = image.resize(size, lanczos)
    if fmt == "JPEG" and out.mode not in ("RGB", "L", "CMYK"):
        out = out.convert("RGB")
    save_kwargs = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    out.save(dest, format=fmt, **save_kwargs)
    return dest


def _center_crop(image: PILImage, aspect: float) -> PILImage:
    """The largest centred box of ``aspect`` (w/h) inside ``image``."""
    w, h = image.size
    if w / h > aspect:
        new_w = max(1, round(h * aspect))
        left = (w - new_w) // 2
        return image.crop((left, 0, left + new_w, h))
    new_h = max(1, round(w / aspect))
    top = (h - new_h) // 2
    return image.crop((0, top, w, top + new_h))


def is_url(ref: str) -> bool:
    return urlparse(str(ref)).scheme in ("http", "https")


def fetch_input_image(url_or_path: str | Path, dest_dir: str | Path, *,
                      allowed_dirs: Iterable[str | Path] | None, base: str | Path | None = None,
                      timeout: float = 30, max_bytes: int = MAX_DOWNLOAD_BYTES) -> Path:
    """Copy a local image or download an http(s) URL into ``dest_dir`` as
    ``input_<8 hex><ext>``; returns the new file.

    A local path is confined to ``allowed_dirs`` (relative to ``base``, default
    the current directory); ``allowed_dirs=None`` means the path is trusted, the
    local CLI user's own (comfy_gen.paths). PathNotAllowed for a confined path
    outside them; UsageError for a missing file, a failed or oversized
    download, or content that is not an image.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    ref = str(url_or_path)
    if is_url(ref):
        suffix = Path(urlparse(ref).path).suffix.lower()
        suffix = suffix if _SUFFIX.match(suffix) else ".png"
        dest = dest_dir / f"input_{uuid.uuid4().hex[:8]}{suffix}"
        _download(ref, dest, timeout=timeout, max_bytes=max_bytes)
    else:
        if "://" in ref:
            raise UsageError(f"Unsupported image location {ref!r}: use an http(s) URL or a local path")
        trust: PathTrust = "trusted" if allowed_dirs is None else "confined"
        src = user_path(ref, trust=trust, allowed=allowed_dirs or (), base=base or Path.cwd())
        if not os.path.lexists(src):
            raise UsageError(f"Input image {ref!r} does not exist")
        try:
            # Bounded and non-blocking: a FIFO, a device or a symlink loop is an error, not a hang.
            data = read_bounded(src, cap=max_bytes)
        except InputFileError as exc:
            raise UsageError(f"Input image {ref!r}: {exc.message}") from exc
        suffix = src.suffix.lower() if _SUFFIX.match(src.suffix.lower()) else ".png"
        dest = dest_dir / f"input_{uuid.uuid4().hex[:8]}{suffix}"
        dest.write_bytes(data)
    try:
        image = _open(dest, label=ref)
    except UsageError:
        dest.unlink(missing_ok=True)
        raise
    fmt = image.format
    image.close()
    # A URL like /render?id=3 has no usable suffix: name the file by its real format.
    ext = _FORMAT_EXT.get(str(fmt))
    if ext and dest.suffix not in _FORMAT_EXT.values() and dest.suffix != ".jpeg":
        dest = dest.rename(dest.with_suffix(ext))
    return dest


def _download(url: str, dest: Path, *, timeout: float, max_bytes: int) -> None:
    import httpx

    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            if response.status_code >= 400:
                raise UsageError(f"Downloading {url} failed: HTTP {response.status_code}")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise UsageError(f"Image at {url} is too large ({declared} bytes > {max_bytes})")
            size = 0
            with dest.open("wb") as fh:
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise UsageError(f"Image at {url} is larger than {max_bytes} bytes")
                    fh.write(chunk)
    except httpx.HTTPError as exc:
        dest.unlink(missing_ok=True)
        raise UsageError(f"Downloading {url} failed: {exc}") from exc
    except UsageError:
        dest.unlink(missing_ok=True)
        raise
