#!/usr/bin/env python3
"""API latency under load: GET /generate/{id} and the progress stream, 20 concurrent clients.

    python bench/bench_api.py                     # emulator + API on loopback, 20 clients
    python bench/bench_api.py --clients 20 --jobs 20 --steps 30 --step-time 0.05

One process: the ComfyUI emulator and the API (a real uvicorn on a free loopback
port) in threads, the clients in threads over HTTP. Rounds:

* ``poll``: each client polls GET /generate/{id} of its own job as fast as it can
  while the jobs run; per-request latency.
* ``stream``: each client opens GET /generate/{id}/events before its job starts;
  per event, the delay from the job's change (recorded by a listener in the
  server process, same monotonic clock) to the client reading it.

Prints one JSON line per round (p50/p95/p99/max in ms, requests or events).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402

from comfy_gen.api import create_app  # noqa: E402
from comfy_gen.config import Settings  # noqa: E402
from comfy_gen.emulator import Emulator  # noqa: E402
from tests.api.conftest import serve  # noqa: E402


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}

    def pick(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50_ms": pick(0.50), "p95_ms": pick(0.95), "p99_ms": pick(0.99),
            "max_ms": round(1000 * ordered[-1], 2), "mean_ms": round(1000 * statistics.fmean(ordered), 2)}


def submit(client: httpx.Client, steps: int, seed: int) -> str:
    response = client.post("/api/v1/generate", json={"prompt": "a lighthouse", "workflow": "tiny-sd15",
                                                     "steps": steps, "seed": seed})
    response.raise_for_status()
    return str(response.json()["generation_id"])


def poll_round(url: str, args: argparse.Namespace, app: Any) -> dict[str, Any]:
    latencies: list[float] = []
    lock = threading.Lock()
    with httpx.Client(base_url=url, timeout=60) as client:
        ids = [submit(client, args.steps, i) for i in range(args.jobs)]

    def worker(job_id: str) -> None:
        mine: list[float] = []
        with httpx.Client(base_url=url, timeout=60) as client:
            while True:
                start = time.perf_counter()
                data = client.get(f"/api/v1/generate/{job_id}").json()
                mine.append(time.perf_counter() - start)
                if data["status"] in ("completed", "failed", "cancelled"):
                    break
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(ids[i % len(ids)],)) for i in range(args.clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {"round": "GET /generate/{id}", "clients": args.clients, "jobs": args.jobs, "requests": len(latencies),
            "requests_per_s": round(len(latencies) / wall, 1), **percentiles(latencies)}


def stream_round(url: str, args: argparse.Namespace, app: Any) -> dict[str, Any]:
    jobs = app.state.ctx.jobs
    delays: list[float] = []
    lock = threading.Lock()
    changed: dict[tuple[str, int], float] = {}   # (job, version) -> server time of the change
    with httpx.Client(base_url=url, timeout=60) as client:
        ids = [submit(client, args.steps, 1000 + i) for i in range(args.jobs)]
    for job_id in ids:
        jobs.get(job_id).listen(lambda snap: changed.setdefault((snap["id"], snap["version"]), time.monotonic()))
    ready = threading.Barrier(args.clients + 1)

    def worker(job_id: str) -> None:
        got: list[tuple[int, float]] = []
        with httpx.Client(base_url=url, timeout=120) as client:
            with client.stream("GET", f"/api/v1/generate/{job_id}/events") as response:
                ready.wait()
                event = None
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("id:"):
                        got.append((int(line[3:].strip()), time.monotonic()))
                    elif line.startswith("data:") and event == "done":
                        break
        with lock:
            # The first message is the snapshot sent on connecting, not a change: not a delay.
            for version, seen in got[1:]:
                at = changed.get((job_id, version))
                if at is not None:
                    delays.append(max(0.0, seen - at))

    threads = [threading.Thread(target=worker, args=(ids[i % len(ids)],)) for i in range(args.clients)]
    for t in threads:
        t.start()
    ready.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {"round": "GET /generate/{id}/events", "clients": args.clients, "jobs": args.jobs,
            "events": len(delays), "events_per_s": round(len(delays) / wall, 1), **percentiles(delays)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--step-time", type=float, default=0.05)
    parser.add_argument("--workers", type=int, default=2, help="API generation threads (COMFY_GEN_API_WORKERS)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        emu = Emulator(step_time=args.step_time, data_dir=root / "emulator").start()
        settings = Settings(comfyui_url=emu.url, output_dir=root / "output", state_dir=root / "state",
                            workflows_dir=REPO_ROOT / "workflows", api_workers=args.workers,
                            api_max_jobs=max(64, 2 * args.jobs), gpu_limit=2)
        app = create_app(settings)
        server, thread, port = serve(app)
        url = f"http://127.0.0.1:{port}"
        try:
            for fn in (poll_round, stream_round):
                print(json.dumps(fn(url, args, app)), flush=True)
        finally:
            server.should_exit = True
            thread.join(30)
            emu.stop()


if __name__ == "__main__":
    main()
