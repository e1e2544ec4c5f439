"""Time loading and expanding a 2,000-item recipe (10 prompts x 20 seeds x 5 steps x 2 cfg).

    python bench/bench_expand.py [--repeat 5]

Prints the best of N runs for load and for expand; the target is expand < 1 s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from comfy_gen.config import Settings
from comfy_gen.recipes import expand, load_recipe


def write_recipe(folder: Path) -> Path:
    (folder / "workflows").mkdir()
    (folder / "workflows" / "tiny-sd15.json").write_text("{}", encoding="utf-8")
    prompts = "\n".join(f"  - a {{quiet|busy}} scene number {n}" for n in range(5))
    path = folder / "big.yaml"
    path.write_text(
        "name: bench\nworkflow: tiny-sd15.json\n"
        "defaults: {sampler: euler, width: 512, height: 512, loras: ['detail.safetensors:0.5']}\n"
        f"prompts:\n{prompts}\n"
        "seeds: {count: 20}\n"
        "matrix:\n  axes:\n    steps: [10, 15, 20, 25, 30]\n    cfg: [5, 7]\n",
        encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = write_recipe(folder)
        settings = Settings(workflows_dir=folder / "workflows")
        load_times, expand_times = [], []
        count = 0
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            recipe = load_recipe(path, settings=settings)
            t1 = time.perf_counter()
            items = expand(recipe, settings=settings)
            t2 = time.perf_counter()
            load_times.append(t1 - t0)
            expand_times.append(t2 - t1)
            count = len(items)
        unique = len({i.id for i in items})
        print(f"items: {count} (unique ids: {unique})")
        print(f"load_recipe: best {min(load_times) * 1000:.1f} ms of {args.repeat}")
        print(f"expand:      best {min(expand_times) * 1000:.1f} ms of {args.repeat} "
              f"({min(expand_times) / count * 1e6:.1f} us/item)")


def measure(quick: bool = False) -> list[dict]:
    """bench/run_all.py hook: expansion of the 2,000-item recipe, best of N."""
    repeat = 2 if quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = write_recipe(folder)
        settings = Settings(workflows_dir=folder / "workflows")
        times, count = [], 0
        for _ in range(repeat):
            recipe = load_recipe(path, settings=settings)
            t0 = time.perf_counter()
            items = expand(recipe, settings=settings)
            times.append(time.perf_counter() - t0)
            count = len(items)
    best = min(times)
    return [{"metric": f"expand a {count}-item recipe (best of {repeat})", "value": f"{best:.3f} s",
             "target": "< 1 s", "met": best < 1.0}]


if __name__ == "__main__":
    main()
