"""What each emulated node "computes".

Nothing here runs a model. Values are small descriptions (conditioning text,
latent size and seed, pictures to draw) that flow along the graph's links, so
that SaveImage can render an image that depends on seed, prompt and size.
Unknown classes pass inputs of the same type through (see ``_passthrough``).
"""

from __future__ import annotations

import asyncio
import random
import string
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol

from PIL import Image, UnidentifiedImageError

from comfy_gen.emulator.faults import Faults
from comfy_gen.emulator.render import Picture, SaveError, render, save_batch, save_image_path


class NodeFailure(Exception):
    """A node raised at run time; becomes ``execution_error`` (captures/193, 223)."""

    def __init__(self, message: str, exception_type: str, traceback: list[str]) -> None:
        super().__init__(message)
        self.message = message
        self.exception_type = exception_type
        self.traceback = traceback


@dataclass(frozen=True)
class Cond:
    text: str


@dataclass(frozen=True)
class Latent:
    width: int
    height: int
    batch: int = 1
    seed: int | None = None
    text: str = ""
    denoise: float = 1.0
    bases: tuple[Image.Image, ...] = field(default=())
    frames: int = 1  # video latents: frames each batch item decodes to


@dataclass
class NodeResult:
    outputs: tuple[Any, ...]
    ui: dict[str, Any] | None = None


class RunContext(Protocol):
    """What the executor offers a node while it runs."""

    input_dir: Path
    output_dir: Path
    temp_dir: Path
    text_chunks: dict[str, Any]
    faults: Faults

    async def sample(self, steps: int, latent: Latent) -> None: ...


Evaluator = Callable[[RunContext, dict[str, Any]], Awaitable[NodeResult]]
EVALUATORS: dict[str, Evaluator] = {}


def node(*names: str) -> Callable[[Evaluator], Evaluator]:
    def register(fn: Evaluator) -> Evaluator:
        for name in names:
            EVALUATORS[name] = fn
        return fn
    return register


def _trace(*frames: tuple[str, int, str, str]) -> list[str]:
    return [f'  File "{path}", line {line}, in {fn}\n    {code}\n' for path, line, fn, code in frames]


def _text(cond: Any) -> str:
    return cond.text if isinstance(cond, Cond) else ""


def _as_int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


@node("CLIPTextEncode")
async def _clip_text_encode(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    return NodeResult((Cond(str(inputs.get("text", ""))),))


@node("CLIPTextEncodeSDXL")
async def _clip_text_encode_sdxl(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    return NodeResult((Cond(str(inputs.get("text_g") or inputs.get("text_l") or "")),))


@node("ConditioningCombine")
async def _cond_combine(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    parts = [_text(inputs.get("conditioning_1")), _text(inputs.get("conditioning_2"))]
    return NodeResult((Cond(", ".join(p for p in parts if p)),))


@node("ConditioningZeroOut")
async def _cond_zero(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    return NodeResult((Cond(""),))


@node("BasicGuider")
async def _basic_guider(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    return NodeResult((inputs.get("conditioning"),))


@node("CFGGuider")
async def _cfg_guider(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    return NodeResult((inputs.get("positive"),))


@node("RandomNoise")
async def _random_noise(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    return NodeResult(({"seed": _as_int(inputs.get("noise_seed"), 0)},))


@node("BasicScheduler")
async def _basic_scheduler(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    return NodeResult(({"steps": _as_int(inputs.get("steps"), 1)},))


@node("EmptyLatentImage", "EmptySD3LatentImage")
async def _empty_latent(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    latent = Latent(_as_int(inputs.get("width"), 512), _as_int(inputs.get("height"), 512),
                    _as_int(inputs.get("batch_size"), 1))
    return NodeResult((latent,))


@node("LatentUpscale")
async def _latent_upscale(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    latent = _latent(inputs.get("samples"))
    width = _as_int(inputs.get("width"), 0) or latent.width
    height = _as_int(inputs.get("height"), 0) or latent.height
    return NodeResult((replace(latent, width=width, height=height),))


@node("LatentUpscaleBy")
async def _latent_upscale_by(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    latent, factor = _latent(inputs.get("samples")), float(inputs.get("scale_by", 1.0))
    return NodeResult((replace(latent, width=round(latent.width * factor),
                               height=round(latent.height * factor)),))


def _latent(value: Any) -> Latent:
    return value if isinstance(value, Latent) else Latent(512, 512)


async def _run_sampler(ctx: RunContext, latent: Any, seed: int, cond: Any, steps: int,
                       denoise: float = 1.0) -> Latent:
    base = _latent(latent)
    out = replace(base, seed=seed, text=_text(cond), denoise=denoise)
    await ctx.sample(max(1, steps), out)
    return out


@node("KSampler")
async def _ksampler(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    out = await _run_sampler(ctx, inputs.get("latent_image"), _as_int(inputs.get("seed"), 0),
                             inputs.get("positive"), _as_int(inputs.get("steps"), 1),
                             float(inputs.get("denoise", 1.0)))
    return NodeResult((out,))


@node("KSamplerAdvanced")
async def _ksampler_advanced(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    steps = _as_int(inputs.get("steps"), 1)
    start, end = _as_int(inputs.get("start_at_step"), 0), _as_int(inputs.get("end_at_step"), steps)
    out = await _run_sampler(ctx, inputs.get("latent_image"), _as_int(inputs.get("noise_seed"), 0),
                             inputs.get("positive"), max(1, min(end, steps) - start))
    return NodeResult((out,))


@node("SamplerCustom")
async def _sampler_custom(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    raw_sigmas = inputs.get("sigmas")
    sigmas: dict[str, Any] = raw_sigmas if isinstance(raw_sigmas, dict) else {"steps": 1}
    out = await _run_sampler(ctx, inputs.get("latent_image"), _as_int(inputs.get("noise_seed"), 0),
                             inputs.get("positive"), sigmas["steps"])
    return NodeResult((out, out))


@node("SamplerCustomAdvanced")
async def _sampler_custom_advanced(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    raw_sigmas = inputs.get("sigmas")
    sigmas: dict[str, Any] = raw_sigmas if isinstance(raw_sigmas, dict) else {"steps": 1}
    raw_noise = inputs.get("noise")
    noise: dict[str, Any] = raw_noise if isinstance(raw_noise, dict) else {"seed": 0}
    out = await _run_sampler(ctx, inputs.get("latent_image"), noise["seed"], inputs.get("guider"),
                             sigmas["steps"])
    return NodeResult((out, out))


@node("VAEDecode", "VAEDecodeTiled")
async def _vae_decode(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    latent = _latent(inputs.get("samples"))
    pictures = [
        Picture(latent.width, latent.height, latent.seed or 0, latent.text, i, latent.denoise,
                latent.bases[i % len(latent.bases)] if latent.bases else None, frame=f)
        for i in range(max(1, latent.batch)) for f in range(max(1, latent.frames))
    ]
    return NodeResult((pictures,))


@node("VAEEncode")
async def _vae_encode(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    pictures = _pictures(inputs.get("pixels"))
    first = pictures[0]
    bases = tuple(p.base if p.base is not None else _draw(p) for p in pictures)
    return NodeResult((Latent(first.width, first.height, len(pictures), bases=bases),))


def _draw(picture: Picture) -> Image.Image:
    return render(picture)


def _pictures(value: Any) -> list[Picture]:
    if isinstance(value, list) and value and all(isinstance(p, Picture) for p in value):
        return value
    return [Picture(512, 512)]


@node("EmptyImage")
async def _empty_image(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    colour = _as_int(inputs.get("color"), 0)
    img = Image.new("RGB", (_as_int(inputs.get("width"), 512), _as_int(inputs.get("height"), 512)),
                    ((colour >> 16) & 255, (colour >> 8) & 255, colour & 255))
    count = _as_int(inputs.get("batch_size"), 1)
    return NodeResult(([Picture(img.width, img.height, 0, "", i, 0.0, img) for i in range(count)],))


@node("ImageScale", "ImageScaleBy", "ImageUpscaleWithModel")
async def _image_scale(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    pictures = _pictures(inputs.get("image"))
    out = []
    for p in pictures:
        if "scale_by" in inputs:
            w, h = round(p.width * float(inputs["scale_by"])), round(p.height * float(inputs["scale_by"]))
        elif "width" in inputs:
            w, h = _as_int(inputs.get("width"), 0), _as_int(inputs.get("height"), 0)
            if w == 0 and h == 0:
                w, h = p.width, p.height
            elif w == 0:
                w = max(1, round(p.width * h / p.height))
            elif h == 0:
                h = max(1, round(p.height * w / p.width))
        else:  # an upscale model: 4x like the common ESRGAN models
            w, h = p.width * 4, p.height * 4
        out.append(replace(p, width=w, height=h))
    return NodeResult((out,))


@node("ImageInvert")
async def _image_invert(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    return NodeResult((_pictures(inputs.get("image")),))


@node("LoadImage", "LoadImageMask")
async def _load_image(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    name = str(inputs.get("image", ""))
    path = ctx.input_dir / name
    try:
        with Image.open(path) as img:
            img.load()
            image = img.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise NodeFailure(f"cannot identify image file '{path}'\n", "PIL.UnidentifiedImageError",
                          _trace(("nodes.py", 1647, "load_image",
                                  "img = node_helpers.pillow(Image.open, image_path)"))) from exc
    picture = Picture(image.width, image.height, 0, "", 0, 0.0, image)
    return NodeResult(([picture], "MASK"))


@node("SaveImage")
async def _save_image(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    return await _save(ctx, inputs, str(inputs.get("filename_prefix", "ComfyUI")), ctx.output_dir, "output")


@node("PreviewImage")
async def _preview_image(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    # PreviewImage is SaveImage into temp/ with a random 5-letter suffix (nodes.py).
    suffix = "".join(random.choice(string.ascii_lowercase) for _ in range(5))
    return await _save(ctx, inputs, f"ComfyUI_temp_{suffix}", ctx.temp_dir, "temp")


async def _save(ctx: RunContext, inputs: dict[str, Any], prefix: str, root: Path, kind: str) -> NodeResult:
    pictures = _pictures(inputs.get("images"))
    if kind == "output":
        pictures = [replace(p, black=True) if ctx.faults.take_black_image() else p for p in pictures]
    try:
        entries = await asyncio.to_thread(save_batch, pictures, prefix, root, kind, ctx.text_chunks)
    except SaveError as exc:
        raise NodeFailure(str(exc), "Exception", _trace(
            ("nodes.py", 1590, "save_images",
             "full_output_folder, filename, counter, subfolder, filename_prefix = "
             "folder_paths.get_save_image_path(...)"),
            ("folder_paths.py", 397, "get_save_image_path", "raise Exception(err)"))) from exc
    return NodeResult((), {"images": entries})


@node("CheckpointSave")
async def _checkpoint_save(ctx: RunContext, inputs: dict[str, Any]) -> NodeResult:
    # A placeholder file where ComfyUI would write a checkpoint; no UI output.
    prefix = str(inputs.get("filename_prefix", "checkpoints/ComfyUI"))
    try:
        folder, stem, counter, _ = save_image_path(prefix, ctx.output_dir, 0, 0)
    except SaveError as exc:
        raise NodeFailure(str(exc), "Exception", []) from exc
    (folder / f"{stem}_{counter:05}_.safetensors").write_bytes(b"comfy-gen emulator placeholder\n")
    return NodeResult(())


def passthrough(input_values: dict[str, Any], input_types: dict[str, Any], output_types: list[str]) -> NodeResult:
    """Default for classes without an evaluator: forward an input of the same type."""
    outputs = []
    for out_type in output_types:
        value: Any = f"<{out_type}>"
        for name, in_type in input_types.items():
            if in_type == out_type and name in input_values:
                value = input_values[name]
                break
        outputs.append(value)
    return NodeResult(tuple(outputs))
