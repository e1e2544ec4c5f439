"""Dispatch over several backends: throughput, the per-backend bound, failover.

Each backend is an emulator in its own process (``python -m comfy_gen.emulator``),
so killing one is a real SIGKILL and its "GPU" does not share this process's
interpreter lock. The render-recipe flow runs here (ephemeral Prefect server,
``COMFY_GEN_GPU_LIMIT=2``, stage task runs off), over N named backends.

* throughput: items / (last job end - first job start) on the emulators' own
  clocks (``time.monotonic`` is system-wide on Linux, so the clocks agree),
  for 1, 2 and 4 backends side by side in one run; target >= 0.9 x N times one
  backend;
* bound: the most jobs queued or running at once on each emulator, from its
  own record (``max_outstanding``); it must never exceed the GPU limit;
* failover: 4 backends, one SIGKILLed when half the items are done; lost
  (items not stored) and duplicated (stored twice, or a job run twice on a
  surviving backend) must both be 0. The client's outage grace (60 s, how long
  a wait tolerates an unreachable server) is set to 3 s here, so the items
  in flight on the dead backend fail over within the run.

    python bench/bench_scale.py                    # 400 items of 0.5 s
    python bench/bench_scale.py --items 40 --job-seconds 0.1
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STEPS = 3  # tiny-sd15.json samples 3 steps; step_time = job_seconds / STEPS
GPU_LIMIT = 2


class EmulatorProcess:
    """``python -m comfy_gen.emulator`` on a free port, stopped (or killed) by us."""

    def __init__(self, data_dir: Path, step_time: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "comfy_gen.emulator", "--port", "0", "--step-time", str(step_time),
             "--data-dir", str(data_dir)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"emulator did not start: {line!r}")
        self.url = match.group(1)
        self.last_stats: dict[str, Any] = {}

    def stats(self) -> dict[str, Any]:
        self.last_stats = httpx.get(f"{self.url}/_emulator/stats", timeout=10).json()
        return self.last_stats

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _setup(tmp: Path) -> None:
    os.environ.setdefault("PREFECT_HOME", str(tmp / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from comfy_gen.config import Settings, prefect_defaults

    for key, value in prefect_defaults(Settings()).items():
        os.environ.setdefault(key, value)
    os.environ.update(COMFY_GEN_RECIPE_DIRS=str(tmp), COMFY_GEN_OUTPUT_DIR=str(tmp / "out"),
                      COMFY_GEN_STATE_DIR=str(tmp / "state"), COMFY_GEN_STAGE_TASKS="off",
                      COMFY_GEN_GPU_LIMIT=str(GPU_LIMIT), COMFY_GEN_FLOW_WORKERS="16")
    from comfy_gen.comfyui import _jobs

    _jobs.OUTAGE_GRACE = 3.0


def _recipe(folder: Path, name: str, n: int, backends: list[str]) -> Path:
    path = folder / f"{name}.yaml"
    prompts = "\n".join(f"  - scale scene {i}" for i in range(n))
    path.write_text(f"name: {name}\nworkflow: tiny-sd15.json\nbackends: [{', '.join(backends)}]\n"
                    f"prompts:\n{prompts}\nseeds: [1]\n")
    return path


def run_case(tmp: Path, n_backends: int, items: int, job_seconds: float, *,
             kill_at_half: bool = False) -> dict[str, Any]:
    """One flow run over ``n_backends`` fresh emulator processes."""
    from comfy_gen.config import reset_settings_cache

    tag = f"b{n_backends}{'-kill' if kill_at_half else ''}-{uuid.uuid4().hex[:6]}"
    emus = [EmulatorProcess(tmp / f"emu-{tag}-{i}", job_seconds / STEPS) for i in range(n_backends)]
    names = [f"gpu{i}" for i in range(n_backends)]
    os.environ["COMFY_GEN_BACKENDS"] = json.dumps(dict(zip(names, (e.url for e in emus))))
    reset_settings_cache()
    killed: list[int] = []
    stop = threading.Event()

    def killer() -> None:
        # A benchmark may poll: kill the last backend once half the items are done.
        while not stop.is_set():
            done = sum(e.stats()["jobs_completed"] for e in emus)
            if done >= items // 2:
                emus[-1].stats()
                emus[-1].kill()
                killed.append(n_backends - 1)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=killer, daemon=True) if kill_at_half else None
    from flows.render_recipe import render_recipe

    try:
        if watcher:
            watcher.start()
        started = time.monotonic()
        summary = render_recipe(recipe=str(_recipe(tmp, f"scale-{tag}", items, names)))
        wall = time.monotonic() - started
        stop.set()
        if watcher:
            watcher.join(30)
        stats = [e.last_stats if i in killed else e.stats() for i, e in enumerate(emus)]
    finally:
        for emu in emus:
            emu.stop()
    intervals = [iv for s in stats for iv in s["busy"]]
    span = max(end for _, end in intervals) - min(start for start, _ in intervals)
    results = [json.loads(line) for line in
               (Path(summary["run_dir"]) / "results.jsonl").read_text().splitlines()]
    ok = [r for r in results if r.get("verdict") != "error" and r.get("file")]
    stored = len(list(Path(summary["items_dir"]).glob("*.png")))
    survivors = [names[i] for i in range(n_backends) if i not in killed]
    on_survivors = sum(1 for r in results if r.get("backend") in survivors)
    jobs_on_survivors = sum(stats[i]["jobs_completed"] for i in range(n_backends) if i not in killed)
    ids = [r["item_id"] for r in results]
    return {
        "backends": n_backends, "items": items, "job_seconds": job_seconds,
        "wall_s": round(wall, 1), "span_s": round(span, 1), "items_per_s": round(items / span, 3),
        "max_outstanding": [s["max_outstanding"] for s in stats], "bound": GPU_LIMIT,
        "per_backend": {b: sum(1 for r in results if r.get("backend") == b) for b in names},
        "killed": [names[i] for i in killed],
        "lost": items - len({r["item_id"] for r in ok}),
        "duplicated": (len(ids) - len(set(ids))) + max(0, stored - items) + (jobs_on_survivors - on_survivors),
    }


def measure(quick: bool = False) -> list[dict]:
    """bench/run_all.py hook: 1, 2 and 4 backends side by side, then a kill at half-time.
    Full: 400 items of 0.5 s; quick: 40 items of 0.1 s."""
    items, job_seconds = (40, 0.1) if quick else (400, 0.5)
    return rows(run_all(items, job_seconds))


def run_all(items: int, job_seconds: float) -> list[dict[str, Any]]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    _setup(tmp)
    cases = []
    for n, kill in ((1, False), (2, False), (4, False), (4, True)):
        case = run_case(tmp, n, items, job_seconds, kill_at_half=kill)
        print(json.dumps(case), flush=True)
        cases.append(case)
    return cases


def rows(cases: list[dict[str, Any]]) -> list[dict]:
    base = cases[0]["items_per_s"]
    out = []
    for case in cases:
        label = f"{case['backends']} backend(s), {case['items']} items of {case['job_seconds']} s"
        over = max(case["max_outstanding"]) <= case["bound"]
        if case["killed"]:
            out.append({"metric": f"{label}, one killed at half-time: lost / duplicated",
                        "value": f"{case['lost']} / {case['duplicated']}", "target": "0 / 0",
                        "met": case["lost"] == 0 and case["duplicated"] == 0})
            continue
        if case["backends"] > 1:
            ratio = case["items_per_s"] / base
            out.append({"metric": f"{label}: throughput vs 1 backend", "value": f"{ratio:.2f}x",
                        "target": f">= {0.9 * case['backends']:.1f}x", "met": ratio >= 0.9 * case["backends"]})
        out.append({"metric": f"{label}: max jobs outstanding per emulator",
                    "value": "/".join(map(str, case["max_outstanding"])),
                    "target": f"<= {case['bound']} each", "met": over})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--job-seconds", type=float, default=0.5)
    args = parser.parse_args()
    cases = run_all(args.items, args.job_seconds)
    print("| backends | items | job s | span s | items/s | x 1 backend | max outstanding (bound 2) "
          "| per backend | killed | lost | duplicated |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    base = cases[0]["items_per_s"]
    for c in cases:
        print(f"| {c['backends']} | {c['items']} | {c['job_seconds']} | {c['span_s']} | {c['items_per_s']} "
              f"| {c['items_per_s'] / base:.2f} | {'/'.join(map(str, c['max_outstanding']))} "
              f"| {'/'.join(str(v) for v in c['per_backend'].values())} | {', '.join(c['killed']) or '-'} "
              f"| {c['lost']} | {c['duplicated']} |")


if __name__ == "__main__":
    main()
