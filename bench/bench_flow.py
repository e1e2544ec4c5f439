"""GPU busy fraction, re-run cost and scale of the render-recipe flow, on the emulator.

Three ways of feeding one "GPU" (the emulator renders one job at a time and
records when each job starts and ends on its own clock):

* raw dump   - every job POSTed to ComfyUI's queue at once (the ceiling);
* comfy-gen  - the Prefect flow, GPU limit 2 (one rendering, one queued);
* original   - the original's loop: queue one job, poll /history every 2 s.

busy = sum(job time) / (last end - first start).

    python bench/bench_flow.py busy --items 200 --job-seconds 1.0
    python bench/bench_flow.py busy --items 200 --job-seconds 0.2
    python bench/bench_flow.py rerun --items 200
    python bench/bench_flow.py scale --items 2000
    python bench/bench_flow.py busy --items 200 --job-seconds 0.2 --modes comfy-gen --stage-tasks on
    python bench/bench_flow.py stages --items 50,150,400

Results are printed as markdown rows; copy them into bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STEPS = 3  # tiny-sd15.json samples 3 steps; step_time = job_seconds / STEPS


def busy_fraction(intervals: list[list[float]]) -> float:
    if not intervals:
        return 0.0
    intervals = sorted(intervals)
    total = sum(end - start for start, end in intervals)
    return total / (max(end for _, end in intervals) - intervals[0][0])


def _workflow(i: int) -> dict:
    from comfy_gen.params import GenerationParams
    from comfy_gen.workflow import apply_params, load_workflow

    wf = load_workflow("tiny-sd15.json", workflows_dir=ROOT / "workflows")
    return apply_params(wf, GenerationParams(prompt=f"benchmark scene {i}", seed=i))


def run_raw(emu, n: int) -> float:
    from comfy_gen.comfyui import ComfyUIClient

    with ComfyUIClient(emu.url) as client:
        ids = [client.queue_prompt(_workflow(i)).prompt_id for i in range(n)]
        for pid in ids:
            client.wait(pid, timeout=n * 10)
    return busy_fraction(emu.stats()["busy"])


def run_original(emu, n: int) -> float:
    import httpx

    for i in range(n):
        pid = httpx.post(f"{emu.url}/prompt", json={"prompt": _workflow(i)}, timeout=30).json()["prompt_id"]
        while True:  # the original: poll history every 2 s, no timeout
            time.sleep(2)
            entry = httpx.get(f"{emu.url}/history/{pid}", timeout=30).json()
            if entry.get(pid, {}).get("outputs") is not None:
                break
    return busy_fraction(emu.stats()["busy"])


def _recipe(folder: Path, name: str, n: int, *, validate: bool = False) -> Path:
    path = folder / f"{name}.yaml"
    prompts = "\n".join(f"  - benchmark scene {i}" for i in range(n))
    text = f"name: {name}\nworkflow: tiny-sd15.json\nprompts:\n{prompts}\nseeds: [1]\n"
    if validate:  # every image scored; threshold 0 so nothing is refined
        text += "validation: {enabled: true, positive_threshold: 0}\n"
    path.write_text(text)
    return path


def _clip_model(tmp: Path) -> Path:
    """A ViT-B/32-sized CLIP (real architecture, random weights), built locally."""
    from tests.fixtures.clip import build_clip_folder

    return build_clip_folder(tmp / "clip-vit-b32-random", text_config={}, vision_config={})


def run_flow(emu, recipe: Path) -> dict:
    os.environ["COMFY_GEN_COMFYUI_URL"] = emu.url
    from comfy_gen.config import reset_settings_cache

    reset_settings_cache()
    from flows.render_recipe import render_recipe

    started = time.monotonic()
    summary = render_recipe(recipe=str(recipe))
    summary["measured_wall"] = time.monotonic() - started
    return summary


def _setup(tmp: Path) -> None:
    os.environ.setdefault("PREFECT_HOME", str(tmp / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from comfy_gen.config import Settings, prefect_defaults

    for key, value in prefect_defaults(Settings()).items():
        os.environ.setdefault(key, value)
    os.environ["COMFY_GEN_RECIPE_DIRS"] = str(tmp)
    os.environ["COMFY_GEN_OUTPUT_DIR"] = str(tmp / "out")
    os.environ["COMFY_GEN_STATE_DIR"] = str(tmp / "state")


def cmd_busy(args: argparse.Namespace) -> None:
    from comfy_gen.emulator import Emulator

    tmp = Path(tempfile.mkdtemp(prefix="bench-flow-"))
    _setup(tmp)
    step = args.job_seconds / STEPS
    rows = []
    os.environ["COMFY_GEN_STAGE_TASKS"] = args.stage_tasks
    for mode in args.modes.split(","):
        with Emulator(port=0, step_time=step, data_dir=tmp / f"emu-{mode}") as emu:
            started = time.monotonic()
            if mode == "raw":
                busy = run_raw(emu, args.items)
            elif mode == "original":
                busy = run_original(emu, args.original_items or args.items)
            else:
                if args.validate:
                    os.environ["COMFY_GEN_CLIP_MODEL"] = str(_clip_model(tmp))
                run_flow(emu, _recipe(tmp, f"busy-{uuid.uuid4().hex[:6]}", args.items, validate=args.validate))
                busy = busy_fraction(emu.stats()["busy"])
            wall = time.monotonic() - started
            jobs = emu.stats()["jobs_completed"]
        rows.append((mode, jobs, args.job_seconds, wall, busy))
    print("| mode | jobs | job s | wall s | GPU busy |")
    print("|---|---|---|---|---|")
    for mode, jobs, js, wall, busy in rows:
        print(f"| {mode} | {jobs} | {js} | {wall:.1f} | {100 * busy:.1f} % |")


def cmd_rerun(args: argparse.Namespace) -> None:
    from comfy_gen.emulator import Emulator

    tmp = Path(tempfile.mkdtemp(prefix="bench-rerun-"))
    _setup(tmp)
    with Emulator(port=0, step_time=0.005, data_dir=tmp / "emu") as emu:
        recipe = _recipe(tmp, "rerun", args.items)
        first = run_flow(emu, recipe)
        jobs_after_first = emu.stats()["jobs_completed"]
        second = run_flow(emu, recipe)
        jobs_after_second = emu.stats()["jobs_completed"]
    print(json.dumps({"items": args.items, "first_wall_s": round(first["measured_wall"], 2),
                      "first_jobs": jobs_after_first, "rerun_wall_s": round(second["measured_wall"], 2),
                      "rerun_jobs": jobs_after_second - jobs_after_first}, indent=2))


def cmd_scale(args: argparse.Namespace) -> None:
    from comfy_gen.emulator import Emulator
    from comfy_gen.recipes import expand, load_recipe

    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    _setup(tmp)
    recipe = _recipe(tmp, "scale", args.items)
    t0 = time.perf_counter()
    items = expand(load_recipe(recipe))
    expand_s = time.perf_counter() - t0
    with Emulator(port=0, step_time=0.001, data_dir=tmp / "emu") as emu:
        summary = run_flow(emu, recipe)
        jobs = emu.stats()["jobs_completed"]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"items": len(items), "expand_seconds": round(expand_s, 3), "jobs": jobs,
                      "wall_seconds": round(summary["measured_wall"], 1), "peak_rss_mib": round(peak_mib),
                      "counts": summary["counts"]}), flush=True)
    recorded = _count_recorded(summary["flow_run_id"])
    print(json.dumps({"items": len(items), "expand_seconds": round(expand_s, 3), "jobs": jobs,
                      "wall_seconds": round(summary["measured_wall"], 1), "peak_rss_mib": round(peak_mib),
                      "task_runs_completed_in_prefect": recorded}, indent=2))


def cmd_stages(args: argparse.Namespace) -> None:
    """How many task runs the server records as fast as a run with stage task runs
    makes them: for each size, the flow's wall time, then how long after the flow
    returned until the server held every task run, and the rate it absorbed them."""
    from comfy_gen.emulator import Emulator

    tmp = Path(tempfile.mkdtemp(prefix="bench-stages-"))
    _setup(tmp)
    os.environ["COMFY_GEN_STAGE_TASKS"] = "on"
    rows = []
    for n in [int(x) for x in args.items.split(",")]:
        with Emulator(port=0, step_time=args.job_seconds / STEPS, data_dir=tmp / f"emu-{n}") as emu:
            summary = run_flow(emu, _recipe(tmp, f"stages-{n}-{uuid.uuid4().hex[:6]}", n))
            busy = busy_fraction(emu.stats()["busy"])
        expected = 1 + n * 5  # preflight + per item: the item, compose, queue, await, store
        ended = time.monotonic()
        recorded = _count_all(summary["flow_run_id"], expected)
        lag = time.monotonic() - ended
        rate = recorded / (summary["measured_wall"] + lag)
        rows.append((n, expected, recorded, summary["measured_wall"], lag, rate, busy))
        print(json.dumps({"items": n, "expected": expected, "recorded": recorded,
                          "flow_s": round(summary["measured_wall"], 1), "lag_s": round(lag, 1),
                          "runs_per_s": round(rate, 1), "busy": round(busy, 4)}), flush=True)
    print("| items | task runs | recorded | flow wall s | recorded after flow end s | task runs/s | GPU busy |")
    print("|---|---|---|---|---|---|---|")
    for n, expected, recorded, wall, lag, rate, busy in rows:
        print(f"| {n} | {expected} | {recorded} | {wall:.1f} | {lag:.1f} | {rate:.0f} | {100 * busy:.1f} % |")


def _count_all(flow_run_id: str, expected: int, settle: float = 180.0) -> int:
    """Completed task runs of the flow run the server holds, polled until ``expected``
    or until the number stops growing for 10 s."""
    from prefect.client.orchestration import get_client

    body = {"flow_runs": {"id": {"any_": [flow_run_id]}},
            "task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}
    deadline = time.monotonic() + settle
    count, last, still = -1, -1, time.monotonic()
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            count = int(client._client.post("/task_runs/count", json=body).json())
            if count >= expected:
                break
            if count != last:
                last, still = count, time.monotonic()
            elif time.monotonic() - still > 10:
                break
            time.sleep(0.1)
    return count


def _count_recorded(flow_run_id: str, settle: float = 180.0) -> int:
    """Completed render-item task runs the Prefect server recorded for the run
    (polled until the number stops growing: the server records asynchronously)."""
    from prefect.client.orchestration import get_client

    body = {"flow_runs": {"id": {"any_": [flow_run_id]}},
            "task_runs": {"name": {"like_": "item-"}, "state": {"type": {"any_": ["COMPLETED"]}}}}
    deadline = time.monotonic() + settle
    count = last = -1
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            count = int(client._client.post("/task_runs/count", json=body).json())
            if count == last:
                break
            last = count
            time.sleep(5)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    busy = sub.add_parser("busy")
    busy.add_argument("--items", type=int, default=200)
    busy.add_argument("--original-items", type=int, default=None,
                      help="fewer items for the slow original loop (busy is a ratio)")
    busy.add_argument("--job-seconds", type=float, default=1.0)
    busy.add_argument("--modes", default="raw,comfy-gen,original")
    busy.add_argument("--validate", action="store_true",
                      help="comfy-gen scores every image with a ViT-B/32-sized CLIP on the CPU")
    busy.add_argument("--stage-tasks", default="off", choices=["auto", "on", "off"],
                      help="COMFY_GEN_STAGE_TASKS for the comfy-gen mode (nested stage task runs)")
    stages = sub.add_parser("stages")
    stages.add_argument("--items", default="50,150,400", help="comma-separated recipe sizes")
    stages.add_argument("--job-seconds", type=float, default=0.05)
    rerun = sub.add_parser("rerun")
    rerun.add_argument("--items", type=int, default=200)
    scale = sub.add_parser("scale")
    scale.add_argument("--items", type=int, default=2000)
    args = parser.parse_args()
    {"busy": cmd_busy, "rerun": cmd_rerun, "scale": cmd_scale, "stages": cmd_stages}[args.cmd](args)


def measure(quick: bool = False) -> list[dict]:
    """bench/run_all.py hook: GPU busy (0.2 s jobs; 1 s jobs in full runs), unchanged re-run,
    and (full runs) peak RSS at 2,000 items. Quick: 40 items, a sanity run."""
    from comfy_gen.emulator import Emulator

    tmp = Path(tempfile.mkdtemp(prefix="bench-flow-"))
    _setup(tmp)
    rows = []
    busy_cases = [(40, 0.2)] if quick else [(200, 1.0), (200, 0.2)]
    for items, job_seconds in busy_cases:
        with Emulator(port=0, step_time=job_seconds / STEPS, data_dir=tmp / f"emu-busy-{job_seconds}") as emu:
            run_flow(emu, _recipe(tmp, f"busy-{uuid.uuid4().hex[:6]}", items))
            busy = busy_fraction(emu.stats()["busy"])
        floor = 0.99 if job_seconds >= 1.0 else 0.97
        rows.append({"metric": f"GPU busy, {items} items of {job_seconds} s", "value": f"{100 * busy:.1f} %",
                     "target": f">= {100 * floor:.0f} %", "met": busy >= floor})
    items = 40 if quick else 200
    with Emulator(port=0, step_time=0.005, data_dir=tmp / "emu-rerun") as emu:
        recipe = _recipe(tmp, "rerun", items)
        run_flow(emu, recipe)
        before = emu.stats()["jobs_completed"]
        second = run_flow(emu, recipe)
        jobs = emu.stats()["jobs_completed"] - before
    wall = second["measured_wall"]
    rows.append({"metric": f"unchanged {items}-item re-run", "value": f"{jobs} jobs, {wall:.1f} s",
                 "target": "0 jobs, < 10 s", "met": jobs == 0 and wall < 10})
    if not quick:
        recipe = _recipe(tmp, "scale", 2000)
        with Emulator(port=0, step_time=0.001, data_dir=tmp / "emu-scale") as emu:
            run_flow(emu, recipe)
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append({"metric": "peak RSS, 2,000-item flow", "value": f"{peak_mib:.0f} MiB",
                     "target": "< 1.5 GiB", "met": peak_mib < 1536})
    return rows


if __name__ == "__main__":
    main()
