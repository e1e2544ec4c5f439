"""Technical checks: CPU cost per image (target < 20 ms for 1024x1024 on one core).

Times ``comfy_gen.validation.technical.measure`` (every sub-check and the perceptual
hash) on 1024x1024 emulator pictures, with CPU time (``time.thread_time``) so that
other processes on a shared machine do not inflate it: an already decoded image
(what the check itself costs) and a PNG file (decoding included, what a run pays).
Best of N per image, then the median over the images.

Prints a markdown table and writes it under "## Technical checks" in bench/README.md.

    python bench/bench_technical.py [--images 8] [--repeat 7] [--no-readme]
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

README = ROOT / "bench" / "README.md"
SECTION = "## Technical checks"
TARGET_MS = 20.0


def _cpu_ms(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.thread_time()
        fn()
        best = min(best, time.thread_time() - start)
    return best * 1000.0


def run(n_images: int = 8, repeat: int = 7, size: int = 1024) -> dict[str, float]:
    from comfy_gen.emulator.render import Picture, render
    from comfy_gen.validation.technical import measure

    pictures = [render(Picture(size, size, seed, "a lighthouse on a rocky shore at sunset"))
                for seed in range(n_images)]
    with tempfile.TemporaryDirectory(prefix="bench-technical-") as tmp:
        files = []
        for i, picture in enumerate(pictures):
            path = Path(tmp) / f"{i}.png"
            picture.save(path, compress_level=4)   # as ComfyUI's SaveImage writes it
            files.append(path)
        measure(pictures[0])  # warm up imports
        decoded = [_cpu_ms(lambda p=p: measure(p), repeat) for p in pictures]
        from_png = [_cpu_ms(lambda f=f: measure(f), repeat) for f in files]
    return {"decoded_ms": statistics.median(decoded), "png_ms": statistics.median(from_png)}


def table(result: dict[str, float], n_images: int) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    ok = "met" if result["png_ms"] < TARGET_MS else "not met"
    return "\n".join([
        f"Measured {stamp}, Python {platform.python_version()}, CPU time of one thread "
        f"(median over {n_images} 1024x1024 pictures, best of N each).", "",
        "| case | CPU per image | target |", "|---|---|---|",
        f"| all technical checks + pHash, image already decoded | {result['decoded_ms']:.1f} ms | |",
        f"| the same from a PNG file (decode included) | {result['png_ms']:.1f} ms | < {TARGET_MS:.0f} ms ({ok}) |",
    ])


def measure(quick: bool = False) -> list[dict]:
    """bench/run_all.py hook."""
    n = 3 if quick else 8
    result = run(n_images=n, repeat=3 if quick else 7)
    return [
        {"metric": "technical checks per 1024x1024 image (decoded, CPU)", "value": f"{result['decoded_ms']:.1f} ms",
         "target": "", "met": None},
        {"metric": "technical checks per 1024x1024 PNG (decode included, CPU)", "value": f"{result['png_ms']:.1f} ms",
         "target": f"< {TARGET_MS:.0f} ms", "met": result["png_ms"] < TARGET_MS},
    ]


def write_readme(text: str) -> None:
    body = README.read_text()
    block = f"{SECTION}\n\n{text}\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    body = pattern.sub(lambda _: block + "\n", body) if pattern.search(body) else body.rstrip() + "\n\n" + block
    README.write_text(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    text = table(run(args.images, args.repeat), args.images)
    print(text)
    if not args.no_readme:
        write_readme(text)


if __name__ == "__main__":
    main()
