"""Two workers, two recipes at once, on a Prefect server backed by PostgreSQL.

A PostgreSQL cluster in a temp folder; a Prefect server on it; one process work
pool with two workers (``--limit 1`` each, so the two runs land on different
workers); two emulated backends with 0.5 s jobs; two recipes started at once,
each spread over both backends, GPU limit 2. Both runs' first jobs are held
until both flow-run processes run (their start-up is staggered by seconds on a
loaded machine), then released together. Reported per backend: GPU busy = the
emulator's own busy time / (its last job end - the release). Each
run is repeated with the GPU gate in three modes on the same stack (the mode
goes to the flow run as a job variable): ``postgres`` (advisory locks),
``prefect`` (global concurrency limits) and ``local`` (flock: one host only).

Also: the postgres gate's uncontended acquire+release cost (ms, pooled
connection, and the first one with its connect), and how long a SIGKILLed
holder's slot takes to reach a waiter on another connection (s).

    python bench/bench_workers.py [--items 40] [--modes postgres,prefect,local]

Results are printed as markdown rows; copy them into bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.postgres import PostgresServer, running_postgres  # noqa: E402

JOB_SECONDS = 0.5
STEPS = 3  # tiny-sd15.json samples 3 steps; step_time = JOB_SECONDS / STEPS
HOLDER = """
import sys, time
from comfy_gen.gate import GpuGate
gate = GpuGate(sys.argv[2], 1, mode="postgres", database_url=sys.argv[1])
gate.__enter__()
print("held", flush=True)
time.sleep(600)
"""


def busy_fraction(intervals: list[list[float]]) -> float:
    if not intervals:
        return 0.0
    intervals = sorted(intervals)
    total = sum(end - start for start, end in intervals)
    return total / (max(end for _, end in intervals) - intervals[0][0])


def busy_since(intervals: list[list[float]], start: float) -> float:
    """Busy fraction of the window [start, last job end] (intervals clipped to it)."""
    clipped = [(max(a, start), b) for a, b in intervals if b > start]
    if not clipped:
        return 0.0
    return sum(b - a for a, b in clipped) / (max(b for _, b in clipped) - start)


def _database(server: PostgresServer, name: str) -> str:
    with server.connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.url(name)


def gate_costs(db_url: str, rounds: int = 300) -> dict[str, float]:
    """Uncontended acquire+release through GpuGate(mode=postgres), in ms."""
    from comfy_gen.gate import GpuGate
    from comfy_gen.pggate import close_idle_connections

    close_idle_connections()
    gate = GpuGate("http://127.0.0.1:9/bench-cost", 2, mode="postgres", database_url=db_url)
    started = time.perf_counter()
    with gate:
        pass
    first = time.perf_counter() - started
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        with gate:
            pass
        times.append(time.perf_counter() - started)
    close_idle_connections()
    return {"first_ms": 1000 * first, "median_ms": 1000 * statistics.median(times),
            "p95_ms": 1000 * sorted(times)[int(0.95 * len(times))]}


def kill_release(db_url: str, tries: int = 10) -> list[float]:
    """Seconds from SIGKILL of a slot's holder to a waiting process-mate getting the slot."""
    from comfy_gen.gate import GpuGate

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    latencies = []
    for i in range(tries):
        url = f"http://127.0.0.1:9/bench-kill-{i}"
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, db_url, url], stdout=subprocess.PIPE,
                                  text=True, env=env)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        acquired = threading.Event()
        waiting = threading.Event()

        def take(gate: GpuGate = GpuGate(url, 1, mode="postgres", database_url=db_url)) -> None:
            waiting.set()
            with gate:
                acquired.set()

        waiter = threading.Thread(target=take, daemon=True)
        waiter.start()
        waiting.wait(10)
        # The waiter has backed off to its longest re-check interval; a random phase within
        # it, or every kill would land at the same point of the waiter's re-check cycle.
        time.sleep(1.0 + random.uniform(0, 0.25))
        killed = time.monotonic()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        if not acquired.wait(60):
            raise RuntimeError("the killed holder's slot never came back")
        latencies.append(time.monotonic() - killed)
        waiter.join(10)
    return latencies


def _recipe(folder: Path, name: str, n: int) -> Path:
    path = folder / f"{name}.yaml"
    prompts = "\n".join(f"  - {name} scene {i}" for i in range(n))
    path.write_text(f"name: {name}\nworkflow: tiny-sd15.json\nbackends: [a, b]\nprompts:\n{prompts}\nseeds: [1]\n"
                    "validation: {enabled: false}\n")
    return path


def two_runs(stack, tmp: Path, recipes: list[Path], mode: str) -> dict[str, float]:
    """Both recipes started at once with the gate in ``mode``, on two fresh emulators (their
    own records start empty); busy per backend. Mode, backends and output folder reach the
    flow runs as the ``env`` job variable, over the workers' environment."""
    import httpx

    from comfy_gen.emulator import Emulator

    emulators = {n: Emulator(port=0, step_time=JOB_SECONDS / STEPS, data_dir=tmp / f"emu-{mode}-{n}").start()
                 for n in ("a", "b")}
    env = {"COMFY_GEN_GPU_GATE": mode, "COMFY_GEN_COMFYUI_URL": emulators["a"].url,
           "COMFY_GEN_BACKENDS": json.dumps({n: e.url for n, e in emulators.items()}),
           "COMFY_GEN_OUTPUT_DIR": str(tmp / f"out-{mode}")}
    def states() -> list[str]:
        runs = httpx.post(stack.api_url + "/flow_runs/filter", json={"flow_runs": {"id": {"any_": ids}}},
                          timeout=30).json()
        return [r["state"]["type"] for r in runs]

    try:
        for emu in emulators.values():
            emu.hold()  # the first jobs wait, so that both runs start rendering together
        ids: list[str] = []
        started = time.monotonic()
        for recipe in recipes:
            out = stack.prefect("deployment", "run", "render-recipe/on-demand", "--param", f"recipe={recipe}",
                                "--job-variable", "env=" + json.dumps(env))
            ids.append(next(w for w in out.stdout.split() if w.count("-") == 4 and len(w) == 36))
        # Both flow-run processes are up (their startup is staggered by seconds on a loaded
        # machine) and each backend is full (one job held, one queued): then let go.
        while not (states() == ["RUNNING", "RUNNING"] and all(
                e.stats()["queue_pending"] + e.stats()["queue_running"] >= 2 for e in emulators.values())):
            time.sleep(0.5)
        time.sleep(3)  # the later run's first items reach the gate
        released = time.monotonic()
        for emu in emulators.values():
            emu.release()
        while not all(s in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for s in states()):
            time.sleep(1)
        wall = time.monotonic() - started
        runs = httpx.post(stack.api_url + "/flow_runs/filter", json={"flow_runs": {"id": {"any_": ids}}},
                          timeout=30).json()
        states = [r["state"]["type"] for r in runs]
        if states != ["COMPLETED", "COMPLETED"]:
            raise RuntimeError(f"{mode}: runs ended {states}: {[r['state'].get('message') for r in runs]}")
        result: dict[str, float] = {"wall": wall}
        for name, emu in emulators.items():
            stats = emu.stats()
            # From the release (both runs feeding) to this backend's last job end.
            result[f"busy_{name}"] = busy_since(stats["busy"], released)
            result[f"busy_whole_{name}"] = busy_fraction(stats["busy"])
            result[f"jobs_{name}"] = stats["jobs_completed"]
            result[f"max_outstanding_{name}"] = stats["max_outstanding"]
        return result
    finally:
        for emu in emulators.values():
            emu.stop()


def run(items: int, modes: list[str]) -> dict:
    from comfy_gen.stack import Stack, free_port

    tmp = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    results: dict = {"items": items, "modes": {}}
    with running_postgres() as server:
        gate_db = _database(server, "gate")
        results["gate"] = gate_costs(gate_db)
        results["kill"] = kill_release(gate_db)
        prefect_db = _database(server, "prefect")
        stack = Stack(home=tmp / "prefect-home", port=free_port(), database_url=prefect_db)
        try:
            started = time.monotonic()
            stack.start_server()
            stack.create_pool()
            stack.deploy()
            stack.start_workers(2, {
                "PYTHONPATH": str(ROOT),
                "COMFY_GEN_GPU_LIMIT": "2",
                "COMFY_GEN_GPU_GATE_DATABASE_URL": gate_db,
                "COMFY_GEN_STATE_DIR": str(tmp / "state"),
                "COMFY_GEN_RECIPE_DIRS": json.dumps([str(tmp)]),
            }, limit=1)
            results["stack_start_s"] = time.monotonic() - started
            recipes = [_recipe(tmp, f"r{i}", items) for i in (1, 2)]
            for mode in modes:
                results["modes"][mode] = two_runs(stack, tmp, recipes, mode)
        finally:
            stack.stop()
    return results


def rows_of(results: dict) -> list[dict]:
    items = results["items"]
    rows = []
    for mode, r in results["modes"].items():
        floor = 0.9
        for name in ("a", "b"):
            rows.append({"metric": f"GPU busy backend {name}, gate={mode}, 2 workers x 2 recipes x {items} items "
                                   f"of {JOB_SECONDS} s",
                         "value": f"{100 * r[f'busy_{name}']:.1f} % (max outstanding {r[f'max_outstanding_{name}']})",
                         "target": ">= 90 %, max outstanding <= 2" if mode == "postgres" else "-",
                         "met": (r[f"busy_{name}"] >= floor and r[f"max_outstanding_{name}"] <= 2)
                         if mode == "postgres" else None})
    gate = results["gate"]
    rows.append({"metric": "postgres gate acquire+release, uncontended (median / p95; first with connect)",
                 "value": f"{gate['median_ms']:.2f} / {gate['p95_ms']:.2f} ms; {gate['first_ms']:.1f} ms",
                 "target": "< 5 ms median", "met": gate["median_ms"] < 5})
    kill = results["kill"]
    rows.append({"metric": f"slot of a SIGKILLed holder reaches a waiter (median / max of {len(kill)})",
                 "value": f"{statistics.median(kill):.3f} / {max(kill):.3f} s",
                 "target": "< 5 s", "met": max(kill) < 5})
    return rows


def measure(quick: bool = False) -> list[dict]:
    """bench/run_all.py hook. Quick: 12 items per recipe, postgres mode only."""
    results = run(12 if quick else 40, ["postgres"] if quick else ["postgres", "prefect", "local"])
    return rows_of(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=40, help="items per recipe")
    parser.add_argument("--modes", default="postgres,prefect,local")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    results = run(args.items, args.modes.split(","))
    print(json.dumps(results, indent=1))
    for row in rows_of(results):
        print(f"| {row['metric']} | {row['value']} | {row['target']} |")


if __name__ == "__main__":
    main()
