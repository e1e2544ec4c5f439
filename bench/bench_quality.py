"""Per-image cost of the quality validator on this CPU, metric by metric.

What can run here, at the real model sizes with random weights (nothing is
downloaded; weights do not change the cost):

* ``laion_aes``: a CLIP with ViT-L/14 vision sizes (the model under the LAION head)
  and the head at its real sizes (768-1024-128-64-16-1), through the production
  loader (``quality_metrics.AestheticMetric``);
* ``clip`` adherence: a CLIP with ViT-B/32 sizes (the default validation model),
  through ``ImageValidator.score_many``;
* the pyiqa adapter's own work: PIL -> (N, 3, H, W) tensor for a batch.

BRISQUE, NIQE and TOPIQ are not measured: pyiqa needs torchvision, and PyPI's
torchvision wheels are CUDA builds that do not load with this CPU torch (see
docs/validation.md#quality-score). The README says so next to the numbers.

    python bench/bench_quality.py [--images 8] [--size 1024] [--no-readme]
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
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

README = ROOT / "bench" / "README.md"
SECTION = "## Quality score"
VIT_L14 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
               image_size=224, patch_size=14)
TINY_TEXT = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                 max_position_embeddings=77)


def make_images(count: int, size: int) -> list:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    out = []
    for i in range(count):
        base = np.stack([np.sin(x * (i + 2)), np.cos(y * (i % 5 + 1)), x * y], axis=-1)
        pixels = ((base - base.min()) / (np.ptp(base) + 1e-6) * 200 + rng.normal(0, 12, base.shape)).clip(0, 255)
        out.append(Image.fromarray(pixels.astype("uint8")))
    return out


#: CPU seconds per image of each measurement, by (metric, batch): on a shared machine the
#: wall time depends on the other jobs; the process's CPU time much less.
CPU: dict[tuple[str, int], list[float]] = {}


def per_image(fn: Callable[[list], object], images: list, batch: int, rounds: int, name: str = "") -> list[float]:
    """Wall seconds per image for each round (images scored ``batch`` at a time); CPU seconds go to CPU."""
    times = []
    for _ in range(rounds):
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(images), batch):
            fn(images[i:i + batch])
        times.append((time.perf_counter() - started) / len(images))
        CPU.setdefault((name, batch), []).append((time.process_time() - cpu) / len(images))
    return times


def run(n_images: int, size: int, rounds: int) -> tuple[str, dict[str, float]]:
    import torch

    from comfy_gen.validation.clip import ImageValidator
    from comfy_gen.validation.quality_metrics import AestheticMetric, _to_tensor
    from tests.fixtures.clip import build_clip_folder
    from tests.fixtures.quality import build_aesthetic_head

    images = make_images(n_images, size)
    rows: list[tuple[str, str, list[float], list[float]]] = []
    medians: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        large = build_clip_folder(work / "vit-l14", text_config=TINY_TEXT, vision_config=VIT_L14,
                                  projection_dim=768)
        head = build_aesthetic_head(work / "head.pth", 768, hidden=(1024, 128, 64, 16))
        build_l = time.perf_counter() - started
        started = time.perf_counter()
        aesthetic = AestheticMetric(str(large), str(head), "cpu")
        load_l = time.perf_counter() - started
        params_l = sum(p.numel() for p in aesthetic.clip.model.vision_model.parameters()) / 1e6
        one = per_image(aesthetic, images, 1, rounds, "laion_aes")
        eight = per_image(aesthetic, images, 8, rounds, "laion_aes")
        rows.append(("laion_aes", f"CLIP ViT-L/14 vision tower ({params_l:.0f}M params) + head", one, eight))
        del aesthetic

        base = build_clip_folder(work / "vit-b32", text_config={}, vision_config={}, crop_size=224)
        clip = ImageValidator(str(base), device="cpu", batch_size=8)
        prompt = "a red sports car driving on a coastal road at sunset"
        score = lambda batch: clip.score_many(batch, prompt)  # noqa: E731
        rows.append(("clip (adherence)", "CLIP ViT-B/32 (151M params), one prompt",
                     per_image(score, images, 1, rounds, "clip (adherence)"),
                     per_image(score, images, 8, rounds, "clip (adherence)")))
        convert = lambda batch: _to_tensor(batch, "cpu")  # noqa: E731
        rows.append(("pyiqa input conversion", "PIL -> float tensor (the adapter's own work)",
                     per_image(convert, images, 1, rounds, "pyiqa input conversion"),
                     per_image(convert, images, 8, rounds, "pyiqa input conversion")))
    lines = [f"{n_images} images {size}x{size}, {rounds} rounds, CPU: {os.cpu_count()} cores, torch "
             f"{torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}. "
             f"ViT-L/14 build+save {build_l:.0f} s, load {load_l:.1f} s (random weights, local folder).", "",
             "| metric | model measured | wall ms/image, batch 1 | wall ms/image, batch 8 | "
             "CPU ms/image, batch 1 | CPU ms/image, batch 8 |",
             "|---|---|---:|---:|---:|---:|"]
    for name, what, b1, b8 in rows:
        medians[name] = statistics.median(CPU[(name, 8)])
        cpu1, cpu8 = (1000 * statistics.median(CPU[(name, b)]) for b in (1, 8))
        lines.append(f"| {name} | {what} | {1000 * statistics.median(b1):.0f} | {1000 * statistics.median(b8):.0f} "
                     f"| {cpu1:.0f} | {cpu8:.0f} |")
    lines.append("| brisque, niqe, topiq_nr | pyiqa | not measured | not measured | not measured | not measured |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines.append("")
    lines.append(f"Load average when the run ended: {load:.1f} on {os.cpu_count()} cores. CPU ms = the process's "
                 "CPU time (both torch threads added up): the cost on an idle machine is about CPU ms / threads.")
    return "\n".join(lines), medians


def update_readme(table: str) -> None:
    why = ("BRISQUE, NIQE and TOPIQ run through pyiqa, which cannot run on this machine: it needs torchvision, "
           "and PyPI's torchvision wheels are CUDA builds that fail to load their operators with the CPU torch "
           "(`operator torchvision::nms does not exist`). Their cost is not measured here; pyiqa's own BRISQUE "
           "and NIQE are pure torch feature statistics, TOPIQ-NR a ResNet-50 forward. Reading the rows: the "
           "LAION aesthetic predictor is a ViT-L/14 image forward (the head is negligible), by far the largest "
           "cost; CLIP adherence reuses the validation CLIP (ViT-B/32), so with `--validate` too it is the same "
           "model, loaded once. Numbers come from a shared 2-core machine under load: noisy.")
    body = (f"{SECTION}\n\n`bench/bench_quality.py`, per-image cost of each quality metric (random weights at "
            f"the real sizes: nothing is downloaded).\n\n{table}\n\n{why}\n")
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    text = pattern.sub(lambda _: body + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + body
    README.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    table, _ = run(args.images, args.size, args.rounds)
    print(table)
    if not args.no_readme:
        update_readme(table)
        print(f"\nupdated {README.relative_to(ROOT)}")
    return 0


def measure(quick: bool = False) -> list[dict]:
    """bench/run_all.py hook: per-image cost of each metric that runs here (no targets)."""
    _, medians = run(4 if quick else 8, 512 if quick else 1024, 1 if quick else 2)
    return [{"metric": f"quality {name}, CPU time per image (batch 8)", "value": f"{1000 * value:.0f} ms",
             "target": "reported", "met": None} for name, value in medians.items()]


if __name__ == "__main__":
    raise SystemExit(main())
