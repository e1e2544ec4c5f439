"""Generation parameters: the resolved description of one render.

``GenerationParams`` is what the CLI, recipes, categories, the flow, the API and
the MCP server all produce, and what ``comfy_gen.workflow.apply_params`` writes
into a workflow graph. ``None`` means "keep the workflow's own value".
"""

from __future__ import annotations

import dataclasses
import random
import re
from dataclasses import dataclass, field
from typing import Any

from comfy_gen.errors import UsageError

SEED_MAX = 2**32 - 1
#: Video limits: ComfyUI's video latents accept up to MAX_RESOLUTION frames, far more than
#: any model renders; 1024 frames is already ~40 s at 25 fps. CreateVideo caps fps at 120.
FRAMES_MAX = 1024
FPS_MAX = 120.0
#: Fields added after item ids were fixed: to_dict() leaves them out while they are None.
OPTIONAL_FIELDS = ("frames", "fps", "transparent", "transparent_subject")


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA to insert: file name and strengths (clip defaults to model)."""

    name: str
    strength_model: float = 1.0
    strength_clip: float | None = None

    @property
    def clip_strength(self) -> float:
        return self.strength_model if self.strength_clip is None else self.strength_clip

    @classmethod
    def parse(cls, spec: str) -> "LoraSpec":
        """Parse ``NAME[:STRENGTH]``, splitting on the last colon (names may contain ':')."""
        name, strength = spec, 1.0
        if ":" in spec:
            head, tail = spec.rsplit(":", 1)
            try:
                strength = float(tail)
                name = head
            except ValueError:
                raise UsageError(f"Invalid LoRA strength in {spec!r}: {tail!r} is not a number",
                                 hint="Use NAME:STRENGTH, e.g. detail.safetensors:0.8") from None
        if not name.strip():
            raise UsageError(f"Invalid LoRA spec {spec!r}: empty name")
        if strength < 0:
            raise UsageError(f"Invalid LoRA strength in {spec!r}: must be >= 0")
        return cls(name=name.strip(), strength_model=strength)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "strength_model": self.strength_model, "strength_clip": self.clip_strength}


@dataclass(frozen=True)
class GenerationParams:
    """Everything that can vary between renders of one workflow."""

    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None            # None = keep workflow's; -1 = random (resolve_seed)
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    scheduler: str | None = None
    denoise: float | None = None
    width: int | None = None
    height: int | None = None
    batch_size: int | None = None
    checkpoint: str | None = None      # checkpoint, or UNET file for UNET workflows
    vae: str | None = None
    loras: tuple[LoraSpec, ...] = field(default_factory=tuple)
    input_image: str | None = None     # a name ComfyUI knows (already uploaded)
    # Video and transparency (docs/video.md). None = the workflow's own value / off;
    # left out of to_dict() while unset, so ids of image items stay what they were.
    frames: int | None = None          # video length in frames (latent `length`)
    fps: float | None = None           # frame rate of the video output (and LTXV conditioning)
    transparent: bool | None = None    # remove the background (segment-anything nodes), RGBA PNG
    transparent_subject: str | None = None  # what to keep when transparent (default: the prompt)
    extra: tuple[tuple[str, Any], ...] = field(default_factory=tuple)  # other node inputs "node_id.input"

    def replace(self, **changes: Any) -> "GenerationParams":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["loras"] = [lora.to_dict() for lora in self.loras]
        data["extra"] = {k: v for k, v in self.extra}
        for name in OPTIONAL_FIELDS:
            if data[name] is None:
                del data[name]  # unset: absent, so older ids and fingerprints are unchanged
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GenerationParams":
        """Read ``to_dict()`` output; UsageError naming the field for a wrong type
        (these documents come back from files: sidecars, PNG chunks, recipes)."""
        if not isinstance(data, dict):
            raise UsageError(f"Generation parameters must be an object (got {type(data).__name__})")
        data = dict(data)
        loras = []
        raw_loras = data.pop("loras", None) or []
        if not isinstance(raw_loras, (list, tuple)):
            raise UsageError(f"loras must be a list (got {type(raw_loras).__name__})")
        for index, item in enumerate(raw_loras):
            if isinstance(item, str):
                loras.append(LoraSpec.parse(item))
            elif isinstance(item, LoraSpec):
                loras.append(item)
            else:
                loras.append(_lora_from_dict(item, index))
        extra = data.pop("extra", None) or {}
        if not isinstance(extra, dict):
            raise UsageError(f"extra must be an object (got {type(extra).__name__})")
        for name, value in data.items():
            kind = _FIELD_TYPES.get(name)
            if kind is not None and value is not None and not _is_a(value, kind):
                raise UsageError(f"Generation parameter {name} must be {kind} (got {value!r:.60})")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UsageError(f"Unknown generation parameters: {', '.join(sorted(unknown))}")
        return cls(**data, loras=tuple(loras), extra=tuple(sorted(dict(extra).items())))

    def fingerprint(self) -> str:
        """A stable hash of the resolved parameters (for ids and cache keys)."""
        from comfy_gen.hashing import digest

        return digest(self.to_dict(), ascii_only=True)


def resolve_seed(seed: int | None, rng: random.Random | None = None) -> int:
    """``None`` or ``-1`` -> a random seed in [0, 2^32-1]; otherwise validated as is."""
    if seed is None or seed == -1:
        return (rng or random.SystemRandom()).randint(0, SEED_MAX)
    if not 0 <= seed <= SEED_MAX:
        raise UsageError(f"Seed {seed} out of range [0, {SEED_MAX}] (or -1 for random)")
    return int(seed)


_FIELD_TYPES = {"prompt": "text", "negative_prompt": "text", "sampler": "text", "scheduler": "text",
                "checkpoint": "text", "vae": "text", "input_image": "text", "seed": "an integer",
                "steps": "an integer", "width": "an integer", "height": "an integer",
                "batch_size": "an integer", "cfg": "a number", "denoise": "a number"}


def _is_a(value: Any, kind: str) -> bool:
    if kind == "text":
        return isinstance(value, str)
    if isinstance(value, bool):
        return False
    if kind == "an integer":
        return isinstance(value, int)
    return isinstance(value, (int, float))


def _lora_from_dict(item: Any, index: int) -> LoraSpec:
    where = f"loras[{index}]"
    if not isinstance(item, dict):
        raise UsageError(f"{where} must be an object or NAME:STRENGTH (got {type(item).__name__})")
    name = item.get("name") or item.get("filename")
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"{where} has no name")
    strengths = [item.get("strength_model", item.get("strength", 1.0)), item.get("strength_clip")]
    if any(v is not None and not _is_a(v, "a number") for v in strengths):
        raise UsageError(f"{where}: the strengths must be numbers")
    clip = strengths[1]
    return LoraSpec(name=name, strength_model=float(strengths[0] if strengths[0] is not None else 1.0),
                    strength_clip=None if clip is None else float(clip))


_SURROGATE = re.compile("[\ud800-\udfff]")
_TEXT_FIELDS = ("prompt", "negative_prompt", "sampler", "scheduler", "checkpoint", "vae", "input_image")


def text_problem(value: object, name: str) -> str | None:
    """Why ``value`` cannot travel as text (a NUL, or bytes that were not UTF-8), or None.

    A NUL truncates names in C code (ComfyUI's file APIs, the OS); a lone
    surrogate is how Python carries undecodable command-line bytes, and it fails
    much later when the graph is encoded as JSON. Both are refused up front.
    """
    if not isinstance(value, str):
        return None
    if "\x00" in value:
        return f"{name} contains a NUL character (at {value.index(chr(0))})"
    match = _SURROGATE.search(value)
    if match:
        code = ord(match.group())
        detail = f"byte 0x{code - 0xDC00:02x}" if code >= 0xDC80 else "a lone surrogate"
        return f"{name} is not valid UTF-8 ({detail} at {match.start()})"
    return None


def bad_text_paths(data: Any) -> list[tuple[list[Any], str]]:
    """``(json path, problem)`` for every string (value or key) in a loaded document that
    holds a NUL or a lone surrogate (YAML's ``"\\uDCFF"`` escape makes one): ComfyUI,
    file names, JSON encoding and PNG text chunks would each cut or refuse it later."""
    found: list[tuple[list[Any], str]] = []
    seen: set[int] = set()
    stack: list[tuple[Any, list[Any]]] = [(data, [])]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if (problem := _plain_problem(value)) is not None:
                found.append((path, problem))
        elif isinstance(value, (dict, list)) and id(value) not in seen:
            seen.add(id(value))  # aliases share objects: visit each once
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, child in items:
                if isinstance(key, str) and (problem := _plain_problem(key)) is not None:
                    found.append((path, f"a key {problem}"))
                stack.append((child, [*path, key]))
    return found


def _plain_problem(text: str) -> str | None:
    if "\0" in text:
        return "contains a NUL character (\\0), which no prompt, name or file may hold"
    if _SURROGATE.search(text):
        return "contains a lone surrogate (\\uD800-\\uDFFF), which is not valid UTF-8 text"
    return None


def validate_ranges(params: GenerationParams) -> None:
    """Check the documented ranges before anything is queued (raises UsageError)."""
    problems = []
    if params.steps is not None and not (1 <= params.steps <= 150):
        problems.append(f"steps must be an integer in 1..150 (got {params.steps})")
    if params.cfg is not None and not (1.0 <= params.cfg <= 30.0):
        problems.append(f"cfg must be in 1.0..30.0 (got {params.cfg})")
    if params.denoise is not None and not (0.0 <= params.denoise <= 1.0):
        problems.append(f"denoise must be in 0..1 (got {params.denoise})")
    for name in ("width", "height"):
        value = getattr(params, name)
        if value is not None and (not 64 <= value <= 8192 or value % 8):
            problems.append(f"{name} must be 64..8192 and divisible by 8 (got {value})")
    if params.batch_size is not None and not (1 <= params.batch_size <= 64):
        problems.append(f"batch_size must be 1..64 (got {params.batch_size})")
    if params.frames is not None and not (1 <= params.frames <= FRAMES_MAX):
        problems.append(f"frames must be an integer in 1..{FRAMES_MAX} (got {params.frames})")
    if params.fps is not None and not (0 < params.fps <= FPS_MAX):
        problems.append(f"fps must be > 0 and <= {FPS_MAX:g} (got {params.fps})")
    if params.seed is not None and params.seed != -1 and not (0 <= params.seed <= SEED_MAX):
        problems.append(f"seed must be -1 or in 0..{SEED_MAX} (got {params.seed})")
    texts = [(name, getattr(params, name)) for name in _TEXT_FIELDS]
    texts += [(f"loras[{i}].name", lora.name) for i, lora in enumerate(params.loras)]
    problems += [problem for name, value in texts if (problem := text_problem(value, name))]
    if problems:
        raise UsageError("Invalid generation parameters: " + "; ".join(problems))
