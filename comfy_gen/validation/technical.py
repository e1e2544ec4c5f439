"""Technical checks: what broken batch renders look like, judged without a model.

A render can fail without an error: a VAE overflow (fp16) writes an all-black or
garbage image, a wrong latent or denoise gives a flat colour, a bad sampler gives
mush, an overexposed LoRA clips to white, and a workflow that ignores the seed
renders the same picture for every item. Each sub-check measures one number,
cheaply (numpy on a grey copy at most ``ANALYSIS_SIDE`` px on its long side),
and compares it with a threshold that is an option of the ``technical`` check:

========================  =========================  ===========  ==========================
score key                 what it measures           option       default (fails when)
========================  =========================  ===========  ==========================
``technical_mean``        mean grey level 0-255      min_mean     < 8 (almost black)
``technical_std``         grey standard deviation    min_std      < 5 (blank / near-uniform)
``technical_sharpness``   edge steepness (~1/width)  min_sharp..  < 0.4 (heavy blur)
``technical_clipped``     share of pixels at 0/255   max_clipped  > 0.5 (clipped exposure)
``technical_noise``       Laplacian var / noise var  max_noise    > 0.6 (garbage, like noise)
``technical_nonfinite``   NaN/inf share (float img)  (always)     > 0 (invalid pixels)
``technical_duplicate_    Hamming distance of the    duplicates,  <= 5 bits of 64, only with
distance``                pHash to the nearest       duplicate_   ``duplicates: true``
                          earlier passed image       distance
========================  =========================  ===========  ==========================

Any threshold option set to ``None`` (YAML ``null``) or ``false`` turns that
sub-check off. The scores are stored, so ``judge_scores`` re-judges stored
images by today's options (docs/validation.md explains the numbers).

Near-duplicates: a loaded instance (one per prepared plan, i.e. one run or one
generate) remembers the pHash of every image that passed its other sub-checks;
a new image within ``duplicate_distance`` bits of one of them fails. Under
concurrency (the flow's batcher, parallel items) the hashes are compared and
added under a lock, so of two duplicates exactly one is scored first and the
other fails; which one depends on which finished rendering first.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from comfy_gen.errors import UsageError
from comfy_gen.validation.base import BaseValidator, ImageInput, Thresholds, ValidationResult, register_validator

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from PIL.Image import Image

    from comfy_gen.config import Settings

#: Long side of the grey copy the checks read: sharpness and noise are measured at
#: this fixed scale, so their thresholds mean the same for a 512 and a 2048 px image.
ANALYSIS_SIDE = 256
#: Images larger than this (pixels) are refused before decoding (decompression bombs).
MAX_PIXELS = 8192 * 8192

#: option -> (default, lowest, highest, kind); a None default means "off".
_THRESHOLDS: dict[str, tuple[float, float, float]] = {
    "min_mean": (8.0, 0.0, 255.0),
    "min_std": (5.0, 0.0, 128.0),
    "min_sharpness": (0.4, 0.0, 10.0),
    "max_clipped": (0.5, 0.0, 1.0),
    "max_noise": (0.6, 0.0, 10.0),
}
DEFAULT_DUPLICATE_DISTANCE = 5
OPTIONS = (*_THRESHOLDS, "duplicates", "duplicate_distance")


def default_options() -> dict[str, Any]:
    """Every option at its default (duplicates off)."""
    return {**{k: v[0] for k, v in _THRESHOLDS.items()}, "duplicates": False,
            "duplicate_distance": DEFAULT_DUPLICATE_DISTANCE}


def _number(name: str, value: Any, low: float, high: float) -> float | None:
    if value is None or value is False:
        return None  # the sub-check is off
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise UsageError(f"technical option {name!r}: expected a number {low:g}-{high:g} "
                         f"(or null to turn it off), got {value!r}")
    return float(value)


@register_validator("technical")
class TechnicalValidator(BaseValidator):
    """Black, NaN, blank, blurred, clipped, noise-like and duplicate images (numpy, no model)."""

    name = "technical"
    label = "technical"
    description = "Black/NaN, blank, blurred, clipped, noise-like and near-duplicate images (no model, ~ms)"
    # On by default since it was added: results stored before then are not failed for it.
    missing_scores_pass = True
    needs_prompt = False

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = dict(options) if options is not None else default_options()
        self._seen: list[tuple[int, str]] = []   # (pHash, label) of passed images
        self._lock = threading.Lock()

    # --- class hooks (the plan calls these) ---------------------------------------------

    @classmethod
    def load(cls, settings: "Settings", options: Mapping[str, Any] | None = None) -> "TechnicalValidator":
        # A fresh instance per prepared plan: the duplicate memory lasts one run.
        # ``options`` come parsed (Check.make); a bare Check has none: the defaults.
        return cls({**default_options(), **options} if options else default_options())

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise UsageError(f"technical: unknown option(s) {', '.join(unknown)} "
                             f"(options: {', '.join(OPTIONS)})")
        parsed = default_options()
        for name, (_, low, high) in _THRESHOLDS.items():
            if name in options:
                parsed[name] = _number(name, options[name], low, high)
        if "duplicate_distance" in options:
            distance = options["duplicate_distance"]
            if isinstance(distance, bool) or not isinstance(distance, int) or not 0 <= distance <= 64:
                raise UsageError(f"technical option 'duplicate_distance': expected a whole number 0-64 "
                                 f"(bits of a 64-bit hash), got {distance!r}")
            parsed["duplicate_distance"] = distance
            parsed["duplicates"] = True  # asking for a distance asks for the check
        if "duplicates" in options:
            if not isinstance(options["duplicates"], bool):
                raise UsageError(f"technical option 'duplicates': expected true or false, "
                                 f"got {options['duplicates']!r}")
            parsed["duplicates"] = options["duplicates"]
        return parsed

    @classmethod
    def judge_scores(cls, score: Mapping[str, Any], thresholds: Thresholds,
                     options: Mapping[str, Any] | None = None) -> ValidationResult:
        opts = {**default_options(), **options} if options else default_options()
        scores = dict(score)
        if scores.get("error"):
            return ValidationResult(False, f"Technical check failed: {scores['error']}", scores, cls.name, thresholds)
        if "technical_std" not in scores:  # a result stored before technical checks existed
            return ValidationResult(True, "Not checked: no technical scores stored", scores, cls.name, thresholds)
        failures = failed_checks(scores, opts)
        if failures:
            return ValidationResult(False, "; ".join(failures), scores, cls.name, thresholds)
        return ValidationResult(True, "Technical checks passed", scores, cls.name, thresholds)

    @classmethod
    def rank_key(cls, scores: Mapping[str, Any]) -> tuple[float, ...]:
        # Among attempts that all fail (or all pass): more contrast and detail first.
        if scores.get("error") or scores.get("technical_std") is None:
            return (0.0, 0.0, 0.0)
        return (1.0, float(scores["technical_std"]), float(scores.get("technical_sharpness") or 0.0))

    # --- scoring ---------------------------------------------------------------------------

    def score_many(self, images: Sequence[ImageInput], prompts: Sequence[str] | str,
                   negatives: Sequence[str | None] | str | None = None) -> list[dict[str, Any]]:
        """One score dict per image; the prompt is not used. Images are scored in
        order, so of two duplicates in one batch the first passes."""
        out: list[dict[str, Any]] = []
        for image in images:
            try:
                scores = measure(image)
            except (OSError, ValueError, SyntaxError) as exc:
                out.append({"error": str(exc)})
                continue
            self._compare(scores, _label(image))
            out.append(scores)
        return out

    def _compare(self, scores: dict[str, Any], label: str) -> None:
        """Set the nearest earlier distance; remember the image when it passes."""
        if not self.options.get("duplicates"):
            return
        phash_value = int(scores["technical_phash"], 16)
        with self._lock:
            nearest: tuple[int, str] | None = None
            for other, other_label in self._seen:
                distance = (phash_value ^ other).bit_count()
                if nearest is None or distance < nearest[0]:
                    nearest = (distance, other_label)
            if nearest is not None:
                scores["technical_duplicate_distance"] = nearest[0]
                scores["technical_duplicate_of"] = nearest[1]
            if not failed_checks(scores, self.options):
                self._seen.append((phash_value, label))


def _label(image: ImageInput) -> str:
    # A file name, never a full path: scores end up in sidecars and tables.
    return Path(image).name if isinstance(image, (str, Path)) else "an earlier image"


def failed_checks(scores: Mapping[str, Any], options: Mapping[str, Any]) -> list[str]:
    """A readable reason for each sub-check that fails under ``options``."""
    reasons: list[str] = []
    nonfinite = scores.get("technical_nonfinite") or 0.0
    if nonfinite > 0:
        reasons.append(f"Image has invalid pixels: {nonfinite:.1%} NaN or infinite")
    mean, std = scores.get("technical_mean"), scores.get("technical_std")
    limit = options.get("min_mean")
    if limit is not None and mean is not None and mean < limit:
        reasons.append(f"Image is almost black: mean {mean:.1f}/255 (threshold {limit:g})")
    limit = options.get("min_std")
    if limit is not None and std is not None and std < limit:
        reasons.append(f"Image is blank or near-uniform: std {std:.2f} (threshold {limit:g})")
    limit = options.get("max_noise")
    noise = scores.get("technical_noise")
    if limit is not None and noise is not None and noise > limit:
        reasons.append(f"Image looks like noise (garbage): noise ratio {noise:.2f} (threshold {limit:g})")
    limit = options.get("min_sharpness")
    sharp = scores.get("technical_sharpness")
    blank = std is not None and std < (options.get("min_std") or 0)
    if limit is not None and sharp is not None and sharp < limit and not blank:  # a flat image has no edges
        reasons.append(f"Image is heavily blurred: sharpness {sharp:.2f} (threshold {limit:g})")
    limit = options.get("max_clipped")
    clipped = scores.get("technical_clipped")
    if limit is not None and clipped is not None and clipped > limit:
        reasons.append(f"Exposure is clipped: {clipped:.0%} of pixels at 0 or 255 (threshold {limit:.0%})")
    distance = scores.get("technical_duplicate_distance")
    if options.get("duplicates") and distance is not None and distance <= options.get("duplicate_distance", 0):
        reasons.append(f"Near-duplicate of {scores.get('technical_duplicate_of') or 'an earlier image'}: "
                       f"hash distance {distance} (threshold {options.get('duplicate_distance')})")
    return reasons


# --- the measurements -------------------------------------------------------------------


def measure(image: ImageInput) -> dict[str, Any]:
    """The technical scores of one image (no thresholds applied)."""
    import numpy as np

    img = _open(image)
    try:
        nonfinite = 0.0
        if img.mode in ("F", "I", "I;16", "I;16B", "I;16L"):
            img, nonfinite = _from_high_depth(img)
        elif img.mode not in ("RGB", "L"):
            img = img.convert("RGB")  # alpha is ignored: a transparent render is judged by its colours
        luma = img.convert("L")
        size = f"{img.width}x{img.height}"
    finally:
        if isinstance(image, (str, Path)):
            img.close()
    # One C pass gives mean, spread and clipping of the full-size image.
    hist = np.asarray(luma.histogram(), dtype=np.float64)
    count = float(hist.sum())
    levels = np.arange(256, dtype=np.float64)
    mean = float((hist * levels).sum() / count)
    std = float(np.sqrt(max(0.0, (hist * (levels - mean) ** 2).sum() / count)))
    clipped = float(hist[0] + hist[255]) / count
    grey = _reduce(luma)
    sharpness = _edge_sharpness(grey)
    spread = float(grey.var())
    # An i.i.d. noise image of variance s^2 has a Laplacian variance of 20 s^2 (the
    # kernel's squared weights sum to 20): the ratio is ~1 for noise, far below for pictures.
    noise = float(_laplacian(grey).var()) / (20.0 * spread) if spread > 1e-6 else 0.0
    return {"technical_mean": round(mean, 3), "technical_std": round(std, 3),
            "technical_sharpness": None if sharpness is None else round(sharpness, 4), "technical_clipped": round(clipped, 5),
            "technical_noise": round(noise, 4), "technical_nonfinite": round(nonfinite, 6),
            "technical_phash": f"{phash(grey):016x}", "technical_size": size}


def _open(image: ImageInput) -> "Image":
    """A decoded image; its size is checked from the header before decoding."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(image, (str, Path)):
        return image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(image)
            if img.width * img.height > MAX_PIXELS:
                size = f"{img.width}x{img.height}"
                img.close()
                raise ValueError(f"image is {size}: more than {MAX_PIXELS} pixels (possible decompression bomb)")
            img.load()
            return img
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ValueError(f"too large to decode ({exc})") from None
    except UnidentifiedImageError:
        raise ValueError("not a readable image (unknown or damaged format)") from None


def _from_high_depth(img: "Image") -> "tuple[Image, float]":
    """16-bit / float images (a decoder writing raw VAE output): share of non-finite
    pixels, and an 8-bit copy scaled from the finite range."""
    import numpy as np
    from PIL import Image

    arr = np.asarray(img, dtype=np.float64)
    finite = np.isfinite(arr)
    share = 1.0 - float(finite.mean())
    values = np.where(finite, arr, 0.0)
    top = 1.0 if img.mode == "F" and values.max(initial=0.0) <= 1.0 else (65535.0 if "16" in img.mode else 255.0)
    return Image.fromarray(np.clip(values / top * 255.0, 0, 255).astype(np.uint8), "L"), share


def _reduce(luma: "Image") -> "np.ndarray":
    """A float grey copy at most ANALYSIS_SIDE px on its long side, by block means in
    float ("F" mode): no 8-bit rounding, which would add false edges to gradients."""
    import numpy as np

    factor = -(-max(luma.width, luma.height) // ANALYSIS_SIDE)  # ceil
    grey = luma.convert("F")
    if factor > 1 and min(luma.width, luma.height) >= factor:
        grey = grey.reduce(factor)
    return np.asarray(grey, dtype=np.float32)


def _laplacian(grey: "np.ndarray") -> "np.ndarray":
    import numpy as np

    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return np.zeros((1, 1), dtype=np.float32)
    lap: np.ndarray = (grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1]) - 4.0 * grey[1:-1, 1:-1]
    return lap


#: Below this 99th-percentile gradient (grey levels per analysis pixel) an image has
#: no edge to judge (a smooth gradient, a flat field): sharpness is None, not judged;
#: a flat image is the ``min_std`` check's business.
MIN_EDGE_GRADIENT = 2.0


def _edge_sharpness(grey: "np.ndarray") -> float | None:
    """How steep the strongest edges are: 99th percentile of |Laplacian| over the 99th
    percentile of the gradient magnitude. A step edge blurred by a Gaussian of width s
    gives about 1/s, whatever its contrast and however many edges the picture has:
    ~1 for a crisp render, ~0.5 for s = 1 px at the analysis scale (4 px at 1024),
    < 0.4 from s = 2 px (8 px at 1024). Variance-of-Laplacian alone would rank content
    (how many edges), not focus. Edges weaker than MIN_EDGE_GRADIENT are not judged:
    there, 8-bit rounding noise would dominate both percentiles."""
    import numpy as np

    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return None
    lap = np.abs(_laplacian(grey))
    gx = grey[1:-1, 2:] - grey[1:-1, :-2]
    gy = grey[2:, 1:-1] - grey[:-2, 1:-1]
    grad = np.sqrt(gx * gx + gy * gy) * 0.5
    edge = float(np.percentile(grad, 99))
    if edge < MIN_EDGE_GRADIENT:
        return None
    return float(np.percentile(lap, 99)) / edge


_DCT: "np.ndarray | None" = None


def phash(grey: "np.ndarray") -> int:
    """64-bit perceptual hash (pHash): the 8x8 lowest frequencies of the DCT of a 32x32
    grey thumbnail, one bit each for "above the median". Robust to resizing, re-encoding
    and small edits; unlike a difference hash, smooth low-detail pictures (a sky
    gradient) do not all collapse onto the same few hashes."""
    import numpy as np
    from PIL import Image

    global _DCT
    if _DCT is None:
        n = np.arange(32)
        _DCT = np.sqrt(2 / 32) * np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / 64)
        _DCT[0] /= np.sqrt(2)
    thumb = np.asarray(Image.fromarray(np.ascontiguousarray(grey, dtype=np.float32), "F")
                       .resize((32, 32), Image.Resampling.BOX), dtype=np.float64)
    low = (_DCT @ thumb @ _DCT.T)[:8, :8].flatten()
    bits = low > np.median(low[1:])  # the DC term (overall brightness) left out of the median
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: str | int, b: str | int) -> int:
    """Bits that differ between two hashes (ints or hex strings)."""
    x = int(a, 16) if isinstance(a, str) else a
    y = int(b, 16) if isinstance(b, str) else b
    return (x ^ y).bit_count()
