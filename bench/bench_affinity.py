"""Model affinity: a recipe over 3 checkpoints in interleaved order, grouped vs recipe order.

The emulator charges ``model_switch_time`` to every job whose checkpoint differs
from the previous job's on that server, as a real ComfyUI reloading weights.
The issue measured 8 jobs alternating between two checkpoints at 1.62x the time
of the same 8 grouped, on a CPU: (8 J + 8 S) / (8 J + 2 S) = 1.62 gives a switch
S of about one job time J, so the default is J = S = 0.5 s.

Each case runs the same recipe (seeds x checkpoint axis: A, B, C, A, B, C, ...)
through the render-recipe flow twice, into fresh output folders: affinity off
(``COMFY_GEN_MODEL_AFFINITY=0``: recipe order) and on. Reported: flow wall time,
the ratio, model switches and GPU busy on each emulator's own clock.

    python bench/bench_affinity.py --per-checkpoint 40 --job-seconds 0.5 --switch-seconds 0.5 --backends 1,2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench_flow import STEPS, _setup, busy_fraction  # noqa: E402

CHECKPOINTS = ["tiny_sd15.safetensors", "v1-5-pruned-emaonly.safetensors", "sd_xl_base_1.0.safetensors"]
TARGET = 1.3


def _recipe(folder: Path, name: str, per_checkpoint: int, backends: list[str]) -> Path:
    path = folder / f"{name}.yaml"
    # seeds first: the checkpoint axis varies fastest, so recipe order alternates checkpoints
    path.write_text(f"name: {name}\nworkflow: tiny-sd15.json\nprompts: [an affinity benchmark]\n"
                    f"seeds: {{start: 1, stop: {per_checkpoint + 1}}}\n"
                    f"matrix:\n  axes:\n    checkpoint: {json.dumps(CHECKPOINTS)}\n"
                    f"backends: {json.dumps(backends)}\n")
    return path


def run_case(tmp: Path, *, per_checkpoint: int, job_seconds: float, switch_seconds: float, backends: int,
             affinity: bool) -> dict:
    """One flow run on fresh emulators and a fresh output folder."""
    from comfy_gen.config import reset_settings_cache
    from comfy_gen.emulator import Emulator
    from flows.render_recipe import render_recipe

    tag = f"{'on' if affinity else 'off'}-{backends}b-{per_checkpoint}-{time.monotonic_ns()}"
    names = [f"gpu{i}" for i in range(backends)]
    emus = {n: Emulator(port=0, step_time=job_seconds / STEPS, model_switch_time=switch_seconds,
                        data_dir=tmp / f"emu-{tag}-{n}").start() for n in names}
    try:
        os.environ["COMFY_GEN_BACKENDS"] = json.dumps({n: e.url for n, e in emus.items()})
        os.environ["COMFY_GEN_MODEL_AFFINITY"] = "1" if affinity else "0"
        os.environ["COMFY_GEN_OUTPUT_DIR"] = str(tmp / f"out-{tag}")
        reset_settings_cache()
        recipe = _recipe(tmp, f"affinity-{backends}b", per_checkpoint, names)
        started = time.monotonic()
        summary = render_recipe(recipe=str(recipe))
        wall = time.monotonic() - started
        stats = {n: e.stats() for n, e in emus.items()}
    finally:
        for emu in emus.values():
            emu.stop()
    return {"affinity": affinity, "backends": backends, "items": summary["items"], "rendered": summary["rendered"],
            "wall": wall, "switches": {n: s["model_switches"] for n, s in stats.items()},
            "jobs": {n: s["jobs_completed"] for n, s in stats.items()},
            "busy": {n: busy_fraction(s["busy"]) for n, s in stats.items()}, "span": _span(stats)}


def _span(stats: dict) -> float:
    """First job start to last job end over every emulator (one host: one monotonic clock)."""
    intervals = [i for s in stats.values() for i in s["busy"]]
    return max(end for _, end in intervals) - min(start for start, _ in intervals) if intervals else 0.0


def compare(tmp: Path, *, per_checkpoint: int, job_seconds: float, switch_seconds: float,
            backends: int) -> tuple[dict, dict, float]:
    kwargs = dict(per_checkpoint=per_checkpoint, job_seconds=job_seconds, switch_seconds=switch_seconds,
                  backends=backends)
    off = run_case(tmp, affinity=False, **kwargs)  # type: ignore[arg-type]
    on = run_case(tmp, affinity=True, **kwargs)  # type: ignore[arg-type]
    return off, on, off["wall"] / on["wall"]


def warm_up(tmp: Path) -> None:
    """One tiny run first, so neither measured run pays the Prefect server's start."""
    run_case(tmp, per_checkpoint=1, job_seconds=0.01, switch_seconds=0.0, backends=1, affinity=True)


def _row(case: dict, job_seconds: float, switch_seconds: float) -> str:
    def per(values: dict, fmt: str) -> str:
        return " / ".join(fmt.format(v) for v in values.values())

    return (f"| {case['backends']} | {'on' if case['affinity'] else 'off'} | {case['items']} | {job_seconds} | "
            f"{switch_seconds} | {case['wall']:.1f} | {per(case['switches'], '{}')} | "
            f"{per(case['jobs'], '{}')} | {per(case['busy'], '{:.1%}')} |")


HEADER = ("| backends | affinity | items | job s | switch s | wall s | switches per backend | jobs per backend "
          "| GPU busy per backend |\n|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-checkpoint", type=int, default=40)
    parser.add_argument("--job-seconds", type=float, default=0.5)
    parser.add_argument("--switch-seconds", type=float, default=0.5)
    parser.add_argument("--backends", default="1,2", help="comma-separated backend counts")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-affinity-"))
    _setup(tmp)
    warm_up(tmp)
    print(HEADER)
    ratios = []
    for count in [int(n) for n in args.backends.split(",")]:
        off, on, ratio = compare(tmp, per_checkpoint=args.per_checkpoint, job_seconds=args.job_seconds,
                                 switch_seconds=args.switch_seconds, backends=count)
        print(_row(off, args.job_seconds, args.switch_seconds))
        print(_row(on, args.job_seconds, args.switch_seconds), flush=True)
        ratios.append((count, ratio, off["span"] / on["span"]))
    for count, ratio, span in ratios:
        print(f"\n{count} backend(s): affinity {ratio:.2f}x faster than recipe order in wall time, "
              f"{span:.2f}x in batch span (target >= {TARGET}x)")


def measure(quick: bool = False) -> list[dict]:
    """bench/run_all.py hook: the speed-up with affinity on one and on two backends
    (full: 3 x 40 items, 0.5 s jobs and switches; quick: 3 x 20 items, 0.3 s)."""
    per_checkpoint, job = (20, 0.3) if quick else (40, 0.5)
    tmp = Path(tempfile.mkdtemp(prefix="bench-affinity-"))
    _setup(tmp)
    warm_up(tmp)
    rows = []
    for count in (1, 2):
        off, on, ratio = compare(tmp, per_checkpoint=per_checkpoint, job_seconds=job, switch_seconds=job,
                                 backends=count)
        # Quick sizes: judged on the batch span, since the flow's fixed start (several
        # seconds on a busy machine) is as long as the whole batch; full sizes: on wall time.
        judged = off["span"] / on["span"] if quick else ratio
        rows.append({"metric": f"3 checkpoints x {per_checkpoint} interleaved, {count} backend(s), "
                               f"{job} s jobs + {job} s switches: affinity vs recipe order"
                               + (" (batch span)" if quick else " (wall)"),
                     "value": f"{judged:.2f}x (wall {off['wall']:.0f} s -> {on['wall']:.0f} s, span "
                              f"{off['span']:.0f} s -> {on['span']:.0f} s; switches "
                              f"{sum(off['switches'].values())} -> {sum(on['switches'].values())})",
                     "target": f">= {TARGET}x", "met": judged >= TARGET})
    return rows


if __name__ == "__main__":
    main()
