"""Per-image cost of the person, pose and content checks on this CPU.

Two model sizes, both built locally with random weights (nothing downloaded) and
loaded through the validators' own ``from_pretrained`` code:

* tiny  the test models (tests/fixtures/people.py)
* full  the default models' architectures: DETR-ResNet-50 (41 M parameters, 800 px
        input), ViTPose-B (86 M, 256x192 crops), BLIP-base captioner (247 M) and
        question answerer (385 M, 384 px)

Images are 512x512 PNG files. Person: one detector pass per image. Pose: the
detector (memoised when the person check already ran on the file) plus one
keypoint pass per person, timed per person on fixed boxes because random
detector weights find nobody. Content: a caption (up to 30 tokens) and the
prompt's questions (here 3: count, one colour, one attribute; up to 8 tokens
each); random weights never stop early, so this is the upper bound per question.
One image at a time and the whole set as one batch (what the flow's BatchingScorer
sends, up to clip_batch_size) are timed separately; wall and process CPU seconds.

    python bench/bench_people.py [--sizes tiny,full] [--images 8] [--no-readme]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

README = ROOT / "bench" / "README.md"
SECTION = "## People, pose and content checks"
PROMPT = "two smiling women in red dresses in a park"


def make_images(folder: Path, count: int, size: int = 512) -> list[Path]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        path = folder / f"img_{i:02d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def best_of(fn: Callable[[], Any], rounds: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the least disturbed of ``rounds`` runs. The machine is
    shared, so the process CPU time (all threads) is the steadier measure of cost."""
    times = []
    for _ in range(rounds):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - start, time.process_time() - cpu))
    return min(times)


def per(value: tuple[float, float], n: int) -> tuple[float, float]:
    return value[0] / n, value[1] / n


def measure_size(size: str, work: Path, images: list[Path], rounds: int) -> dict[str, Any]:
    """(wall, CPU) seconds per image (per person for pose_per_person) for one model size."""
    from comfy_gen.config import Settings
    from comfy_gen.validation.content import ContentValidator
    from comfy_gen.validation.hfload import clear_cache
    from comfy_gen.validation.people import Detector, PersonValidator, open_rgb
    from comfy_gen.validation.pose import PoseModel
    from tests.fixtures.people import build_blip_folder, build_detr_folder, build_vitpose_folder

    full = size == "full"
    out: dict[str, Any] = {}
    n = len(images)
    pil = [open_rgb(p) for p in images]

    folders = {"person_detector_model": build_detr_folder(work / f"{size}-detr", full=full),
               "pose_model": build_vitpose_folder(work / f"{size}-pose", full=full)}
    settings = Settings(**{k: str(v) for k, v in folders.items()}, validator_device="cpu")
    clear_cache()
    start = time.perf_counter()
    person = PersonValidator.load(settings)
    out["load_detector"] = time.perf_counter() - start
    person.score_many(images[:1], PROMPT)  # warm-up

    def fresh_detect(batch: list[Path]) -> None:
        person.detector._memo.clear()  # time the model, not the memo
        person.score_many(batch, PROMPT)

    out["person_b1"] = per(best_of(lambda: [fresh_detect([p]) for p in images], rounds), n)
    out["person_b8"] = per(best_of(lambda: fresh_detect(images), rounds), n)
    pose = PoseModel.load(settings)
    boxes = [[[96.0, 64.0, 160.0, 320.0], [280.0, 80.0, 150.0, 330.0]] for _ in pil]  # two people an image
    pose.keypoints(pil[:1], boxes[:1])
    out["pose_per_person_b1"] = per(best_of(lambda: [pose.keypoints([im], [b]) for im, b in zip(pil, boxes)],
                                            rounds), 2 * n)
    out["pose_per_person_b8"] = per(best_of(lambda: pose.keypoints(pil, boxes), rounds), 2 * n)
    del person, pose
    clear_cache()
    gc.collect()

    blip = {"content_caption_model": build_blip_folder(work / f"{size}-caption", task="caption", full=full),
            "content_vqa_model": build_blip_folder(work / f"{size}-vqa", task="vqa", full=full)}
    settings = Settings(**{k: str(v) for k, v in blip.items()}, validator_device="cpu")
    content = ContentValidator.load(settings)
    content.score_many(images[:1], PROMPT)
    out["content_b1"] = per(best_of(lambda: [content.score_many([p], PROMPT) for p in images], rounds), n)
    out["content_b8"] = per(best_of(lambda: content.score_many(images, PROMPT), rounds), n)
    del content
    clear_cache()
    gc.collect()
    return out


def run(sizes: list[str], n_images: int, rounds: int) -> dict[str, dict[str, Any]]:
    import torch

    torch.manual_seed(0)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-people-") as tmp:  # ~3 GB of full-size weights: removed
        work = Path(tmp)
        images = make_images(work, n_images)
        for size in sizes:
            results[size] = measure_size(size, work, images, rounds)
            shutil_rmtree_models(work, size)
    return results


def shutil_rmtree_models(work: Path, size: str) -> None:
    import shutil

    for folder in work.glob(f"{size}-*"):
        shutil.rmtree(folder, ignore_errors=True)


def table(results: dict[str, dict[str, Any]], batch: int) -> str:
    rows = [("person (detector)", "person"), ("pose, per person (keypoints only)", "pose_per_person"),
            ("content (caption + 3 questions)", "content")]
    lines = [f"| check | model size | one image at a time: wall / CPU s per image | batch of {batch}: wall / CPU s "
             "per image |", "|---|---|---|---|"]
    for label, key in rows:
        for size, values in results.items():
            (w1, c1), (wb, cb) = values[f"{key}_b1"], values[f"{key}_b8"]
            lines.append(f"| {label} | {size} | {w1:.3f} / {c1:.3f} | {wb:.3f} / {cb:.3f} |")
    return "\n".join(lines)


def write_readme(text: str) -> None:
    body = f"{SECTION}\n\n{text}\n"
    current = README.read_text() if README.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    README.write_text(pattern.sub(body, current) if pattern.search(current) else current.rstrip() + "\n\n" + body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,full")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args(argv)
    import torch

    results = run(args.sizes.split(","), args.images, args.rounds)
    note = (f"`bench/bench_people.py`, {args.images} images of 512x512, best of {args.rounds} rounds, "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores shared with other work, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), CPU, random weights.")
    text = f"{note}\n\n{table(results, args.images)}"
    print(text)
    for size, values in results.items():
        print(f"{size}: detector load {values['load_detector']:.1f} s")
    if not args.no_readme:
        write_readme(text)
    return 0


def measure(quick: bool = False) -> list[dict[str, Any]]:
    """bench/run_all.py hook: per-image cost of each check at full model size (no pass/fail target)."""
    values = run(["full"], 2 if quick else 8, 1 if quick else 2)["full"]
    return [
        {"metric": "person check, DETR-R50 size, CPU s/image (batched)", "value": f"{values['person_b8'][1]:.2f}",
         "target": "report", "met": None},
        {"metric": "pose check, ViTPose-B size, CPU s/person (batched)",
         "value": f"{values['pose_per_person_b8'][1]:.2f}", "target": "report", "met": None},
        {"metric": "content check, BLIP-base size, CPU s/image (batched)", "value": f"{values['content_b8'][1]:.2f}",
         "target": "report", "met": None},
    ]


if __name__ == "__main__":
    raise SystemExit(main())
