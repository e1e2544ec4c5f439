"""First run and unchanged re-run of a recipe through a running Prefect server.

What a user of ``prefect server start`` + ``comfy-gen run`` (or a worker) waits for:
a Prefect server is started once (``comfy_gen.stack``), the emulator renders, and
each run is a fresh Python process that calls the ``render-recipe`` flow with
``PREFECT_API_URL`` set, as a worker's flow-run process does. The hub is as on a
machine without internet access: hub access on (no HF_HUB_OFFLINE), an empty model
cache, and the default CLIP model (a hub id), so the demo recipe's validation
(``allow_skip: true``) has to find out that its model cannot be loaded.

    python bench/bench_rerun.py                       # this checkout
    python bench/bench_rerun.py --src ../other-checkout   # another checkout (before/after)

Prints JSON: for each run, the flow's own wall time (flow call to return) and the
whole process (interpreter start, imports, flow), and the ComfyUI jobs it sent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RUN = """
import json, sys, time
started = time.monotonic()
from flows.render_recipe import render_recipe
imported = time.monotonic()
summary = render_recipe(recipe=sys.argv[1])
done = time.monotonic()
print("RESULT " + json.dumps({"flow_s": round(done - imported, 2), "import_s": round(imported - started, 2),
                              "jobs": summary["jobs"], "cached": summary["cached"],
                              "counts": summary["counts"]}))
"""


def run_once(src: Path, recipe: Path, env: dict[str, str]) -> dict[str, object]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", RUN, str(recipe)], cwd=str(src), env=env,
                          capture_output=True, text=True, timeout=900)
    wall = time.monotonic() - started
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    result: dict[str, object] = json.loads(line[len("RESULT "):])
    result["process_s"] = round(wall, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=ROOT, help="checkout whose comfy_gen and flows run")
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "demo.yaml")
    parser.add_argument("--reruns", type=int, default=2)
    parser.add_argument("--step-time", type=float, default=0.05, help="emulator seconds per sampler step")
    args = parser.parse_args()

    from comfy_gen.emulator import Emulator
    from comfy_gen.stack import Stack, free_port

    tmp = Path(tempfile.mkdtemp(prefix="bench-rerun-"))
    stack = Stack(home=tmp / "prefect", port=free_port())
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COMFY_GEN_", "PREFECT_")) and k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    try:
        stack.start_server()
        with Emulator(port=0, step_time=args.step_time, data_dir=tmp / "emu") as emu:
            env.update(stack.env({}))  # PREFECT_API_URL and PREFECT_HOME of the running server
            env.update({
                "PYTHONPATH": str(args.src), "HF_HOME": str(tmp / "hf"),  # an empty model cache
                "COMFY_GEN_COMFYUI_URL": emu.url, "COMFY_GEN_OUTPUT_DIR": str(tmp / "out"),
                "COMFY_GEN_STATE_DIR": str(tmp / "state"),
                "COMFY_GEN_RECIPE_DIRS": json.dumps([str(args.recipe.resolve().parent)]),
                "PREFECT_LOGGING_LEVEL": "WARNING",
            })
            runs = [("first", run_once(args.src, args.recipe.resolve(), env))]
            for n in range(args.reruns):
                runs.append((f"unchanged re-run {n + 1}", run_once(args.src, args.recipe.resolve(), env)))
    finally:
        stack.stop()
    print(json.dumps({"src": str(args.src), "recipe": args.recipe.name, "runs": dict(runs)}, indent=2))


if __name__ == "__main__":
    main()
