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

    python bench/bench_clip.py [--images 64] [--per-call-samples 3] [--no-readme]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
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


def run(n_images: int, per_call_samples: int) -> tuple[str, dict[str, float]]:
    import torch

    from comfy_gen.validation import BatchingScorer, ImageValidator
    from tests.fixtures.clip import build_clip_folder

    work = Path(tempfile.mkdtemp(prefix="bench-clip-"))
    build_s, model_dir = timed(lambda: build_clip_folder(work / "clip-vit-b32-random", text_config={},
                                                         vision_config={}))
    images = make_images(work, n_images)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(n_images)]
    negatives = [NEGATIVE] * n_images

    load_s, validator = timed(lambda: ImageValidator(str(model_dir), device="cpu", batch_size=16))
    n_params = sum(p.numel() for p in validator.model.parameters()) / 1e6
    validator.score_many(images[:2], prompts[:2], negatives[:2])  # warm-up (allocator, kernels)

    batched_s, batched = timed(lambda: validator.score_many(images, prompts, negatives))

    def via_batcher() -> list[dict]:
        with BatchingScorer(validator, max_batch=16, max_wait=0.05) as scorer:
            with ThreadPoolExecutor(8) as pool:
                return list(pool.map(lambda i: scorer.score(images[i], prompts[i], negatives[i]), range(n_images)))

    batcher_s, via = timed(via_batcher)
    single_s, singles = timed(lambda: [validator.validate_image(im, p, n) for im, p, n in
                                       zip(images, prompts, negatives)])
    worst = max(abs(b["positive_score"] - s["positive_score"]) for b, s in zip(batched, singles))
    worst = max(worst, max(abs(b["positive_score"] - v["positive_score"]) for b, v in zip(batched, via)))

    samples = []
    for i in range(per_call_samples):
        t, _ = timed(lambda: ImageValidator(str(model_dir), device="cpu").validate_image(
            images[i], prompts[i], negatives[i]))
        samples.append(t)
    per_call_each = sum(samples) / len(samples)
    per_call_s = per_call_each * n_images

    rates = {
        "batched": n_images / batched_s,
        "batcher": n_images / batcher_s,
        "single": n_images / single_s,
        "per_call": n_images / per_call_s,
    }
    rows = [
        ("batched `score_many` (batch 16)", batched_s, rates["batched"], "1.0x"),
        ("`BatchingScorer`, 8 threads", batcher_s, rates["batcher"], f"{rates['batched'] / rates['batcher']:.2f}x"),
        ("one at a time, model reused", single_s, rates["single"], f"{rates['batched'] / rates['single']:.2f}x"),
        (f"new model per call (extrapolated from {per_call_samples})", per_call_s, rates["per_call"],
         f"{rates['batched'] / rates['per_call']:.1f}x"),
    ]
    cpu = f"{os.cpu_count()} CPU cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    lines = [
        f"{n_images} PNG images 512x512, {len(PROMPTS)} distinct prompts + 1 negative; CLIP with ViT-B/32 sizes "
        f"({n_params:.0f}M parameters, random weights), CPU, {cpu}, Python {platform.python_version()}.",
        f"Model build+save {build_s:.1f} s, load {load_s:.1f} s; largest batched-vs-other score difference "
        f"{worst:.1e} (CLIPScore points).",
        "",
        "| mode | seconds for all images | images/s | batched speed-up |",
        "|---|---:|---:|---:|",
        *[f"| {name} | {secs:.1f} | {rate:.2f} | {ratio} |" for name, secs, rate, ratio in rows],
        "",
        f"Targets: batched >= 2x one-at-a-time ({rates['batched'] / rates['single']:.2f}x), "
        f">= 8x new-model-per-call ({rates['batched'] / rates['per_call']:.1f}x).",
    ]
    return "\n".join(lines), rates


def update_readme(table: str) -> None:
    note = ("Measured on a shared machine (other jobs were running), so absolute numbers are noisy; "
            "the ratios are what matters. Reproduce with `python bench/bench_clip.py` (about 1-3 minutes).")
    body = f"{SECTION}\n\n`bench/bench_clip.py`. {note}\n\n{table}\n"
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
    parser.add_argument("--no-readme", action="store_true", help="print only; leave bench/README.md alone")
    args = parser.parse_args()
    table, _ = run(args.images, args.per_call_samples)
    print(table)
    if not args.no_readme:
        update_readme(table)
        print(f"\nupdated {README.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
