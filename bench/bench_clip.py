"""CLIP validation throughput: batched vs one-at-a-time vs a new model per call.

Builds a CLIP with ViT-B/32 architecture sizes (CLIPConfig defaults, random weights,
nothing downloaded), saves it with save_pretrained, and scores 64 images of
512x512 (PNG files, as ComfyUI writes them) against 8 prompts + 1 negative prompt:

* batched       ``ImageValidator.score_many`` (batch 16, each text encoded once)
* batcher       ``BatchingScorer`` fed by 8 threads (what the flow does)
* one-at-a-time ``validate_image`` per image, model loaded once
* per-call      a new ``ImageValidator`` per image (the seed's behaviour); a few
                calls are timed and extrapolated to 64

Prints a markdown table and writes it under "## CLIP validation" in bench/README.md.

    python bench/bench_clip.py [--images 64] [--per-call-samples 3] [--rounds 2] [--no-readme]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the hub: the model is local

README = ROOT / "bench" / "README.md"
SECTION = "## CLIP validation"
PROMPTS = [
    "a red sports car driving on a coastal road at sunset",
    "a lighthouse on a rocky shore, stormy sea, dramatic sky",
    "a bowl of fresh fruit on a wooden table, soft window light",
    "a snowy mountain cabin at night with warm lights",
    "a portrait of an old fisherman, detailed face, overcast light",
    "a city street in the rain with neon reflections",
    "a field of sunflowers under a blue sky",
    "a cozy library with tall bookshelves and a reading chair",
]
NEGATIVE = "blurry, bad quality, low resolution, watermark, text, deformed"


def make_images(folder: Path, count: int, size: int = 512) -> list[Path]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    paths = []
    for i in range(count):
        # Smooth colour fields plus a little noise: closer to renders than pure noise.
        base = np.stack([np.sin(x * (i + 1)) , np.cos(y * (i % 5 + 1)), x * y], axis=-1)
        pixels = ((base - base.min()) / (np.ptp(base) + 1e-6) * 200 + rng.normal(0, 12, base.shape)).clip(0, 255)
        path = folder / f"img_{i:03d}.png"
        Image.fromarray(pixels.astype("uint8")).save(path)
        paths.append(path)
    return paths


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _verdict(ratio: float, target: float) -> str:
    return "met" if ratio >= target else "not met"


def run(n_images: int, per_call_samples: int, rounds: int = 2) -> tuple[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="bench-clip-") as tmp:  # ~600 MB of weights: always removed
        return _run_in(Path(tmp), n_images, per_call_samples, rounds)


def _run_in(work: Path, n_images: int, per_call_samples: int, rounds: int) -> tuple[str, dict[str, float]]:
    import torch

    from comfy_gen.validation import BatchingScorer, ImageValidator
    from tests.fixtures.clip import build_clip_folder

    build_s, model_dir = timed(lambda: build_clip_folder(work / "clip-vit-b32-random", text_config={},
                                                         vision_config={}))
    images = make_images(work, n_images)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(n_images)]
    negatives = [NEGATIVE] * n_images

    load_s, validator = timed(lambda: ImageValidator(str(model_dir), device="cpu", batch_size=16))
    n_params = sum(p.numel() for p in validator.model.parameters()) / 1e6
    validator.score_many(images[:2], prompts[:2], negatives[:2])  # warm-up (allocator, kernels)

    def batched() -> list[dict]:
        return validator.score_many(images, prompts, negatives)

    def via_batcher() -> list[dict]:
        with BatchingScorer(validator, max_batch=16, max_wait=0.05) as scorer:
            with ThreadPoolExecutor(8) as pool:
                return list(pool.map(lambda i: scorer.score(images[i], prompts[i], negatives[i]), range(n_images)))

    def one_at_a_time() -> list[dict]:
        return [validator.validate_image(im, p, n) for im, p, n in zip(images, prompts, negatives)]

    def per_call() -> list[dict]:
        # The seed's behaviour: a new validator (model load) for every image; a few
        # calls are timed and the total is extrapolated to all images.
        return [ImageValidator(str(model_dir), device="cpu").validate_image(images[i], prompts[i], negatives[i])
                for i in range(per_call_samples)]

    modes = {"batched": batched, "batcher": via_batcher, "single": one_at_a_time, "per_call": per_call}
    times: dict[str, list[float]] = {k: [] for k in modes}
    outputs: dict[str, list[dict]] = {}
    # Interleaved rounds: the machine is shared, so a burst of other work hits every
    # mode alike; the best round is the least disturbed one.
    for _ in range(rounds):
        for key, fn in modes.items():
            secs, outputs[key] = timed(fn)
            times[key].append(secs * (n_images / per_call_samples if key == "per_call" else 1))
    ref = outputs["batched"]
    worst = max(abs(a["positive_score"] - b["positive_score"])
                for key in ("batcher", "single", "per_call") for a, b in zip(ref, outputs[key]))

    best = {k: min(v) for k, v in times.items()}
    median = {k: statistics.median(v) for k, v in times.items()}
    rates = {k: n_images / v for k, v in best.items()}
    labels = {
        "batched": "batched `score_many` (batch 16)",
        "batcher": "`BatchingScorer`, 8 threads",
        "single": "one at a time, model reused",
        "per_call": f"new model per call (extrapolated from {per_call_samples})",
    }
    cpu = f"{os.cpu_count()} CPU cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    lines = [
        f"{n_images} PNG images 512x512, {len(PROMPTS)} distinct prompts + 1 negative; CLIP with ViT-B/32 sizes "
        f"({n_params:.0f}M parameters, random weights), CPU, {cpu}, Python {platform.python_version()}.",
        f"Model build+save {build_s:.1f} s, load {load_s:.1f} s; {rounds} interleaved rounds per mode; largest "
        f"score difference between modes {worst:.1e} (CLIPScore points).",
        "",
        "| mode | best s | median s | images/s (best) | batched speed-up (best / median) |",
        "|---|---:|---:|---:|---:|",
        *[f"| {labels[k]} | {best[k]:.1f} | {median[k]:.1f} | {rates[k]:.2f} | "
          f"{best[k] / best['batched']:.1f}x / {median[k] / median['batched']:.1f}x |" for k in modes],
        "",
        f"Targets: batched >= 2x one-at-a-time (best {best['single'] / best['batched']:.1f}x: "
        f"{_verdict(best['single'] / best['batched'], 2)}), >= 8x new-model-per-call "
        f"(best {best['per_call'] / best['batched']:.1f}x: {_verdict(best['per_call'] / best['batched'], 8)}).",
    ]
    return "\n".join(lines), rates


def update_readme(table: str) -> None:
    note = ("Measured on a shared 2-core machine (other jobs run at the same time), so timings are noisy; "
            "reproduce with `python bench/bench_clip.py` (1-3 minutes).")
    why = (
        "Reading the numbers: on a CPU, a ViT-B/32 image forward at batch 1 already multiplies matrices "
        "large enough (50 tokens x 768) to keep both cores busy, and the text side, which batching "
        "de-duplicates, costs ~15 ms per prompt against ~40-60 ms per image; so on a quiet machine batching "
        "gains well under 2x. Batch-1 inference suffers much more when other jobs compete for the cores "
        "(many small ops, each waiting for both threads), so the ratios move a lot from run to run: in "
        "quiet runs one-at-a-time came within 1.3-1.7x of batched, in busy ones 3-5x behind. The new-model-per-call row is a floor for the seed's behaviour: here "
        "the model is a local folder already in the page cache (safetensors are memory-mapped, ~0.1 s per "
        "load); the seed loaded a hub id per call, adding hub metadata requests or cold disk reads. On a GPU, "
        "batch-1 calls are launch-bound and batching matters more; not measured here (no GPU)."
    )
    body = f"{SECTION}\n\n`bench/bench_clip.py`. {note}\n\n{table}\n\n{why}\n"
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(lambda _: body + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + body
    README.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--per-call-samples", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved runs per mode")
    parser.add_argument("--no-readme", action="store_true", help="print only; leave bench/README.md alone")
    args = parser.parse_args()
    table, _ = run(args.images, args.per_call_samples, args.rounds)
    print(table)
    if not args.no_readme:
        update_readme(table)
        print(f"\nupdated {README.relative_to(ROOT)}")
    return 0


def measure(quick: bool = False) -> list[dict]:
    """bench/run_all.py hook: the two speed-up targets of batched CLIP scoring."""
    images, samples, rounds = (16, 2, 1) if quick else (64, 3, 2)
    _, rates = run(images, samples, rounds)
    single, per_call = rates["batched"] / rates["single"], rates["batched"] / rates["per_call"]
    return [
        {"metric": f"batched vs one at a time ({images} images)", "value": f"{single:.1f}x", "target": ">= 2x",
         "met": single >= 2},
        {"metric": f"batched vs new model per call ({images} images)", "value": f"{per_call:.1f}x",
         "target": ">= 8x", "met": per_call >= 8},
    ]


if __name__ == "__main__":
    raise SystemExit(main())
