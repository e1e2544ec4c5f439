"""Emulated video and background-removal nodes: real files, no model.

Video latents carry a frame count; VAEDecode turns each batch item into that
many pictures (the shapes drift from frame to frame). The save nodes write real
animated files with Pillow, named and reported the way ComfyUI and
VideoHelperSuite do: SaveAnimatedWEBP/PNG answer ``images`` plus
``animated: [true]`` (comfy_api ui.SavedImages), VHS_VideoCombine answers
``gifs`` with ``format`` and ``frame_rate`` and also writes the first frame as a
PNG carrying the workflow (its ``workflow`` entry). Container formats (WEBM,
MP4: SaveWEBM, SaveVideo, VHS ``video/*``) need a video encoder the emulator
does not ship; those nodes fail with an execution error that says so.

The segment-anything nodes "find" the subject as a centred ellipse, so
``--transparent`` yields a real RGBA PNG whose corners are transparent.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops, ImageDraw

from comfy_gen.emulator.nodes import Latent, NodeFailure, NodeResult, RunContext, _as_int, _pictures, node
from comfy_gen.emulator.render import Picture, SaveError, png_bytes, render_rgba, save_image_path

#: Frames per latent frame of each video latent class (valid lengths k*step+1;
#: ComfyUI's nodes floor other lengths to that).
_FRAME_STEPS = {"EmptyLTXVLatentVideo": 8, "LTXVImgToVideo": 8, "EmptyHunyuanLatentVideo": 4,
                "WanImageToVideo": 4, "EmptyMochiLatentVideo": 6}
_WEBP_METHODS = {"default": 4, "fastest": 0, "slowest": 6}


def decoded_frames(length: int, step: int) -> int:
    """How many frames a latent of ``length`` decodes to (``(length-1)//step*step+1``)."""
    return (max(1, length) - 1) // step * step + 1


@dataclass(frozen=True)
class Mask:
    """A MASK value: one "L" image per batch item (255 = 1.0)."""

    images: tuple[Image.Image, ...]

    def inverted(self) -> "Mask":
        return Mask(tuple(ImageChops.invert(m) for m in self.images))


@dataclass(frozen=True)
class Video:
    """A VIDEO value (CreateVideo): frames and their rate."""

    pictures: tuple[Picture, ...]
    fps: float


# --- video latents ------------------------------------------------------------------


def _video_latent(step: int) -> Any:
    async def evaluate(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
        frames = decoded_frames(_as_int(inputs.get("length"), 1), step)
        return NodeResult((Latent(_as_int(inputs.get("width"), 512), _as_int(inputs.get("height"), 512),
                                  _as_int(inputs.get("batch_size"), 1), frames=frames),))
    return evaluate


for _name in ("EmptyLTXVLatentVideo", "EmptyHunyuanLatentVideo", "EmptyMochiLatentVideo"):
    node(_name)(_video_latent(_FRAME_STEPS[_name]))


def _image_to_video(step: int) -> Any:
    async def evaluate(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
        start = inputs.get("image", inputs.get("start_image"))
        bases = tuple(render_rgba(p).convert("RGB") for p in _pictures(start)[:1]) if start is not None else ()
        latent = Latent(_as_int(inputs.get("width"), 512), _as_int(inputs.get("height"), 512),
                        _as_int(inputs.get("batch_size"), 1), bases=bases,
                        frames=decoded_frames(_as_int(inputs.get("length"), 1), step))
        return NodeResult((inputs.get("positive"), inputs.get("negative"), latent))
    return evaluate


node("LTXVImgToVideo")(_image_to_video(_FRAME_STEPS["LTXVImgToVideo"]))
node("WanImageToVideo")(_image_to_video(_FRAME_STEPS["WanImageToVideo"]))


@node("LTXVConditioning")
async def _ltxv_conditioning(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    return NodeResult((inputs.get("positive"), inputs.get("negative")))


@node("LTXVScheduler")
async def _ltxv_scheduler(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    return NodeResult(({"steps": _as_int(inputs.get("steps"), 1)},))


# --- writing animations -------------------------------------------------------------


def _frames(pictures: list[Picture]) -> list[Image.Image]:
    return [render_rgba(p) for p in pictures]


def _fps(value: Any, default: float) -> float:
    try:
        fps = float(value)
    except (TypeError, ValueError):
        return default
    return fps if fps > 0 else default


def _failure(message: str) -> NodeFailure:
    return NodeFailure(message, "Exception", [])


def _write_animation(path: Path, frames: list[Image.Image], fmt: str, fps: float, **options: Any) -> None:
    duration = int(1000.0 / fps)
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=duration, **options)


def _webp_exif(frame: Image.Image, text_chunks: dict[str, Any]) -> Image.Exif:
    # ComfyUI puts the prompt in EXIF "Model" (0x0110) and extra_pnginfo from "Make" (0x010F) down.
    exif = frame.getexif()
    if "prompt" in text_chunks:
        exif[0x0110] = "prompt:" + json.dumps(text_chunks["prompt"])
    tag = 0x010F
    for key, value in text_chunks.items():
        if key != "prompt":
            exif[tag] = f"{key}:{json.dumps(value)}"
            tag -= 1
    return exif


def _core_save(ctx: RunContext, inputs: dict[str, Any], ext: str, fmt: str, **options: Any) -> NodeResult:
    """SaveAnimatedWEBP/PNG: ``<prefix>_<counter>_.<ext>``, ui ``images`` + ``animated``."""
    pictures = _pictures(inputs.get("images"))
    first = pictures[0]
    try:
        folder, stem, counter, subfolder = save_image_path(str(inputs.get("filename_prefix", "ComfyUI")),
                                                           ctx.output_dir, first.width, first.height)
    except SaveError as exc:
        raise _failure(str(exc)) from exc
    name = f"{stem}_{counter:05}_.{ext}"
    frames = _frames(pictures)
    if fmt == "WEBP":
        options["exif"] = _webp_exif(frames[0], ctx.text_chunks)
    _write_animation(folder / name, frames, fmt, _fps(inputs.get("fps"), 6.0), **options)
    entry = {"filename": name, "subfolder": subfolder, "type": "output"}
    return NodeResult((), {"images": [entry], "animated": [len(frames) > 1]})


@node("SaveAnimatedWEBP")
async def _save_animated_webp(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    return await asyncio.to_thread(
        _core_save, ctx, inputs, "webp", "WEBP", lossless=bool(inputs.get("lossless", True)),
        quality=_as_int(inputs.get("quality"), 80), method=_WEBP_METHODS.get(str(inputs.get("method")), 4))


@node("SaveAnimatedPNG")
async def _save_animated_png(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    return await asyncio.to_thread(_core_save, ctx, inputs, "png", "PNG",
                                   compress_level=_as_int(inputs.get("compress_level"), 4))


@node("CreateVideo")
async def _create_video(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    return NodeResult((Video(tuple(_pictures(inputs.get("images"))), _fps(inputs.get("fps"), 30.0)),))


@node("SaveWEBM", "SaveVideo")
async def _save_container(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    raise _failure("The comfy-gen emulator writes animated WEBP/PNG and GIF only; WEBM/MP4 need a video "
                   "encoder (ComfyUI uses PyAV). Use SaveAnimatedWEBP, or VHS_VideoCombine with image/webp.")


# --- VideoHelperSuite ----------------------------------------------------------------


def _vhs_counter(folder: Path, stem: str) -> int:
    # VHS's own counter: the highest "<stem>_<digits>..." on disk, plus one.
    matcher = re.compile(f"{re.escape(stem)}_(\\d+)\\D*\\..+", re.IGNORECASE)
    found = [int(m.group(1)) for name in os.listdir(folder) if (m := matcher.fullmatch(name))]
    return max(found, default=0) + 1


def _vhs_combine(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    fmt = str(inputs.get("format", "image/gif"))
    kind, _, ext = fmt.partition("/")
    if kind != "image" or ext not in ("gif", "webp"):
        raise _failure(f"The comfy-gen emulator writes VHS_VideoCombine formats image/gif and image/webp only, "
                       f"not {fmt!r} (ffmpeg formats need ffmpeg)")
    pictures = _pictures(inputs.get("images"))
    save_output = bool(inputs.get("save_output", True))
    root = ctx.output_dir if save_output else ctx.temp_dir
    try:
        folder, stem, _, subfolder = save_image_path(str(inputs.get("filename_prefix", "AnimateDiff")), root,
                                                     pictures[0].width, pictures[0].height)
    except SaveError as exc:
        raise _failure(str(exc)) from exc
    counter = _vhs_counter(folder, stem)
    frames = _frames(pictures)
    still = f"{stem}_{counter:05}.png"  # the first frame, carrying the workflow
    (folder / still).write_bytes(png_bytes(frames[0], ctx.text_chunks))
    if inputs.get("pingpong"):
        frames = frames + frames[-2:0:-1]
    fps = _fps(inputs.get("frame_rate"), 8.0)
    name = f"{stem}_{counter:05}.{ext}"
    options: dict[str, Any] = {"loop": _as_int(inputs.get("loop_count"), 0)}
    if ext == "gif":
        options["disposal"] = 2
        frames = [f.convert("RGB") for f in frames]
    else:
        options["lossless"] = bool(inputs.get("lossless", True))
    _write_animation(folder / name, frames, ext.upper(), fps, **options)
    entry = {"filename": name, "subfolder": subfolder, "type": "output" if save_output else "temp",
             "format": fmt, "frame_rate": inputs.get("frame_rate", 8.0), "workflow": still,
             "fullpath": str(folder / name)}
    return NodeResult(((save_output, [str(folder / still), str(folder / name)]),), {"gifs": [entry]})


@node("VHS_VideoCombine")
async def _vhs_video_combine(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    return await asyncio.to_thread(_vhs_combine, ctx, inputs)


# --- segment anything ------------------------------------------------------------------


@node("SAMModelLoader (segment anything)", "GroundingDinoModelLoader (segment anything)")
async def _sa_loader(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    return NodeResult((f"<model {inputs.get('model_name')}>",))


def _subject_mask(picture: Picture) -> Image.Image:
    """The emulator's "segmentation": a centred ellipse over 60 % of the frame."""
    mask = Image.new("L", (max(1, picture.width), max(1, picture.height)), 0)
    w, h = mask.size
    ImageDraw.Draw(mask).ellipse([w * 0.2, h * 0.2, w * 0.8, h * 0.8], fill=255)
    return mask


@node("GroundingDinoSAMSegment (segment anything)")
async def _sa_segment(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    pictures = _pictures(inputs.get("image"))
    masks = tuple(_subject_mask(p) for p in pictures)
    cut = [replace(p, alpha=m) for p, m in zip(pictures, masks)]
    return NodeResult((cut, Mask(masks)))


@node("InvertMask", "InvertMask (segment anything)")
async def _invert_mask(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    mask = inputs.get("mask")
    if not isinstance(mask, Mask):
        raise _failure("InvertMask: the input is not a mask")
    return NodeResult((mask.inverted(),))


@node("JoinImageWithAlpha")
async def _join_alpha(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    # ComfyUI nodes_compositing: alpha = 1 - mask (a mask marks what becomes transparent).
    pictures, mask = _pictures(inputs.get("image")), inputs.get("alpha")
    if not isinstance(mask, Mask) or not mask.images:
        raise _failure("JoinImageWithAlpha: the alpha input is not a mask")
    alpha = mask.inverted().images
    count = min(len(pictures), len(alpha))
    return NodeResult(([replace(pictures[i], alpha=alpha[i]) for i in range(count)],))


__all__ = ["Mask", "Video", "decoded_frames"]
