"""Deterministic, cheap stand-in images and ComfyUI's output-file naming.

An image is a function of (seed, prompt text, width, height, batch index): a
sky-to-ground gradient whose palette comes from the prompt, plus shapes placed by
the seed. It is drawn small and scaled up, so a 1024 px image costs milliseconds.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFilter
from PIL.PngImagePlugin import PngInfo

#: Palette hints: words in the prompt tint the picture, so prompts look different.
_WORD_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 40, 40), "orange": (235, 130, 30), "yellow": (240, 210, 60),
    "green": (60, 160, 70), "forest": (40, 110, 50), "blue": (50, 90, 210),
    "ocean": (30, 90, 160), "sea": (40, 110, 170), "sky": (120, 170, 235),
    "purple": (130, 60, 170), "pink": (230, 130, 170), "white": (235, 235, 235),
    "snow": (225, 230, 240), "black": (25, 25, 30), "night": (20, 25, 60),
    "sunset": (240, 110, 60), "gold": (210, 170, 60), "desert": (215, 180, 120),
    "watercolor": (170, 190, 220), "grey": (128, 128, 128), "brown": (120, 80, 40),
}
_DRAW_MAX = 256  # shapes are drawn at most this big, then resized


@dataclass(frozen=True)
class Picture:
    """One batch item on its way to a file: what to draw, and at what size."""

    width: int
    height: int
    seed: int = 0
    text: str = ""
    index: int = 0
    denoise: float = 1.0
    base: Image.Image | None = None  # the input image of an img2img job
    frame: int = 0                   # video frame: the shapes drift a little each frame
    alpha: Image.Image | None = None  # "L" mask of an RGBA result (JoinImageWithAlpha)
    black: bool = False              # faults.black_images_next: a VAE overflow's all-black image


def _palette(text: str) -> list[tuple[int, int, int]]:
    """Colours named in the prompt (in order, no repeats), padded from its hash."""
    words = [w.strip(".,;:!()").lower() for w in text.split()]
    colours: list[tuple[int, int, int]] = []
    for word in words:
        colour = _WORD_COLOURS.get(word)
        if colour is not None and colour not in colours:
            colours.append(colour)
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    for i in range(0, 9, 3):
        colours.append((digest[i], digest[i + 1], digest[i + 2]))
    return colours


def _luma(colour: tuple[int, int, int]) -> float:
    return 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]


def _contrasting(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> tuple[int, int, int]:
    """``bottom``, lightened or darkened when it is too close to ``top`` ("a black cat at
    night" would otherwise be a near-uniform dark field, which no real render is)."""
    gap = _luma(bottom) - _luma(top)
    if abs(gap) >= 48:
        return bottom
    shift = 96 if _luma(top) < 128 else -96
    return tuple(max(0, min(255, c + shift)) for c in bottom)  # type: ignore[return-value]


def render(picture: Picture) -> Image.Image:
    """Draw the picture (RGB) at its final size."""
    width, height = max(1, picture.width), max(1, picture.height)
    if picture.black:
        return Image.new("RGB", (width, height))
    scale = min(1.0, _DRAW_MAX / max(width, height))
    w, h = max(8, int(width * scale)), max(8, int(height * scale))
    colours = _palette(picture.text)
    top, bottom = colours[0], _contrasting(colours[0], colours[1])
    rng = random.Random(f"{picture.seed}|{picture.index}|{picture.text}")
    img = Image.new("RGB", (w, h))
    draw = ImageDraw.Draw(img)
    for y in range(h):
        t = y / max(1, h - 1)
        draw.line([(0, y), (w, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
    drift = picture.frame * max(1, w // 32)
    for _ in range(rng.randint(3, 7)):
        base = rng.choice(colours)  # shapes take the prompt's colours, jittered by the seed
        colour = tuple(max(0, min(255, c + rng.randint(-60, 60))) for c in base)
        x0, y0 = rng.randint(-w // 4, w) + drift, rng.randint(-h // 4, h)
        size = rng.randint(max(2, min(w, h) // 8), max(3, min(w, h) // 2))
        box = [x0, y0, x0 + size, y0 + size]
        if rng.random() < 0.5:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)
    # Soft edges, but not a heavy blur: the technical checks (comfy_gen.validation.technical)
    # must see an image-like picture, as a real render would be.
    img = img.filter(ImageFilter.GaussianBlur(radius=max(0.5, min(w, h) / 384)))
    if (w, h) != (width, height):
        img = img.resize((width, height), Image.Resampling.BICUBIC)
    if picture.base is not None:
        base_img = picture.base.convert("RGB").resize((width, height))
        img = Image.blend(base_img, img, max(0.0, min(1.0, picture.denoise)))
    return img


def render_rgba(picture: Picture) -> Image.Image:
    """``render``, with the picture's alpha mask (RGBA) when it has one."""
    img = render(picture)
    if picture.alpha is not None:
        img.putalpha(picture.alpha.convert("L").resize(img.size))
    return img


def png_bytes(img: Image.Image, text_chunks: dict[str, Any], compress_level: int = 4) -> bytes:
    """PNG with ComfyUI-style text chunks (each value JSON-encoded, as SaveImage does)."""
    info = PngInfo()
    for key, value in text_chunks.items():
        info.add_text(key, json.dumps(value))
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info, compress_level=compress_level)
    return buf.getvalue()


def preview_jpeg(picture: Picture, max_size: int = 512) -> bytes:
    """A latent preview as ComfyUI's latent2rgb sends it: JPEG scaled to max_size."""
    small = Picture(64, 64, picture.seed, picture.text, picture.index)
    img = render(small).resize((max_size, max_size), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


class SaveError(Exception):
    """A save failed the way ComfyUI's folder_paths reports it."""


def save_image_path(prefix: str, output_dir: Path, width: int, height: int) -> tuple[Path, str, int, str]:
    """folder_paths.get_save_image_path: (folder, file stem, next counter, subfolder)."""
    if "%" in prefix:
        prefix = _compute_vars(prefix, width, height)
    norm = os.path.normpath(prefix)
    subfolder = os.path.dirname(norm)
    stem = os.path.basename(norm)
    root = str(output_dir.resolve())
    folder = os.path.abspath(os.path.join(root, subfolder))
    common = os.path.commonpath((root, folder))
    if common != root:
        raise SaveError(
            "**** ERROR: Saving image outside the output folder is not allowed."
            f"\n full_output_folder: {folder}\n         output_dir: {root}\n         commonpath: {common}\n")
    os.makedirs(folder, exist_ok=True)
    counter = 1
    for name in os.listdir(folder):  # counters continue from what is on disk
        if name.startswith(stem + "_"):
            digits = name[len(stem) + 1:].split("_")[0]
            if digits.isdigit():
                counter = max(counter, int(digits) + 1)
    return Path(folder), stem, counter, subfolder


def _compute_vars(prefix: str, width: int, height: int) -> str:
    now = time.localtime()
    values = {"%width%": str(width), "%height%": str(height), "%year%": str(now.tm_year),
              "%month%": f"{now.tm_mon:02}", "%day%": f"{now.tm_mday:02}",
              "%hour%": f"{now.tm_hour:02}", "%minute%": f"{now.tm_min:02}",
              "%second%": f"{now.tm_sec:02}"}
    for key, value in values.items():
        prefix = prefix.replace(key, value)
    return prefix


def save_batch(pictures: list[Picture], prefix: str, folder_root: Path, kind: str,
               text_chunks: dict[str, Any]) -> list[dict[str, str]]:
    """Render and write one PNG per batch item; returns the ``images`` UI entries."""
    first = pictures[0] if pictures else Picture(64, 64)
    folder, stem, counter, subfolder = save_image_path(prefix, folder_root, first.width, first.height)
    entries = []
    for batch_number, picture in enumerate(pictures):
        name = f"{stem.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
        data = png_bytes(render_rgba(picture), text_chunks, compress_level=1 if kind == "temp" else 4)
        (folder / name).write_bytes(data)
        entries.append({"filename": name, "subfolder": subfolder, "type": kind})
        counter += 1
    return entries
