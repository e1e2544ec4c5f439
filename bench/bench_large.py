"""Large recipes: expansion, subflow runs (chunks), and what the Prefect server costs.

    python bench/bench_large.py expand --items 20000
    python bench/bench_large.py flow --items 20000 --chunk 1000 [--db sqlite|postgres]
    python bench/bench_large.py busy --items 200 --job-seconds 0.2 --chunk 40
    python bench/bench_large.py server --task-runs 2000 --events 5000 [--db sqlite|postgres]

*expand*: load + expand a recipe of N items (100 prompts x seeds x steps), peak
Python memory of the expansion (tracemalloc), plus the parent flow's triage of
every item (job key vs sidecar). *flow*: the render-recipe flow in this process
against a ``prefect server start`` of its own (SQLite, or PostgreSQL started in a
temp folder) and the emulator at ~1 ms per step: wall time, flow runs, task runs
per subflow, item task runs recorded COMPLETED, every item in the run record,
peak RSS, the server's CPU time per task run, then an unchanged re-run.
*busy*: GPU busy on the emulator's clock, one flow run vs chunks, and the largest
gap between two jobs. *server*: per-task-run cost (trivial tasks, 8 threads) and
event throughput (``emit_event`` until the server holds them all).

Results are JSON lines; bench/README.md has the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import tracemalloc
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STEPS = 3  # tiny-sd15.json samples 3 steps


def write_recipe(folder: Path, name: str, n: int) -> Path:
    """n items: prompts x seeds (100 prompts when n >= 100)."""
    prompts = min(n, 100)
    seeds = -(-n // prompts)
    lines = "\n".join(f"  - large recipe scene {i}" for i in range(prompts))
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\nworkflow: tiny-sd15.json\nprompts:\n{lines}\n"
                    f"seeds: {{count: {seeds}}}\n")
    return path


def _setup(tmp: Path) -> None:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ["COMFY_GEN_RECIPE_DIRS"] = str(tmp)
    os.environ["COMFY_GEN_OUTPUT_DIR"] = str(tmp / "out")
    os.environ["COMFY_GEN_STATE_DIR"] = str(tmp / "state")
    os.environ["COMFY_GEN_CATALOG_ENABLED"] = "false"   # bench the flow, not the catalog (bench_catalog)


def _settings(**env: str) -> Any:
    from comfy_gen.config import get_settings, reset_settings_cache

    for key, value in env.items():
        os.environ[key] = value
    reset_settings_cache()
    return get_settings()


# -- expansion ----------------------------------------------------------------
def measure_expand(n: int) -> dict[str, Any]:
    from comfy_gen import batch
    from comfy_gen.recipes import expand, load_recipe
    from comfy_gen.recipes.sections import MAX_ITEMS

    tmp = Path(tempfile.mkdtemp(prefix="bench-large-expand-"))
    _setup(tmp)
    settings = _settings()
    path = write_recipe(tmp, "expand", n)
    t0 = time.perf_counter()
    recipe = load_recipe(path, settings=settings)
    t1 = time.perf_counter()
    items = expand(recipe, settings=settings)
    t2 = time.perf_counter()
    tracemalloc.start()   # a second expansion for memory: tracing slows it several times
    expand(recipe, settings=settings)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    run = batch.BatchRun(settings=settings, recipe=recipe, run_id="bench")
    t3 = time.perf_counter()
    triage = batch.triage(run, items)
    t4 = time.perf_counter()
    run.close()
    return {"bench": "expand", "items": len(items), "unique_ids": len({i.id for i in items}),
            "max_items": MAX_ITEMS, "load_s": round(t1 - t0, 3), "expand_s": round(t2 - t1, 3),
            "expand_peak_mib": round(peak / 2**20, 1), "triage_s": round(t4 - t3, 3),
            "to_render": triage.render_count}


# -- a Prefect server of our own ---------------------------------------------------
@contextmanager
def prefect_server(tmp: Path, db: str) -> Iterator[Any]:
    """``prefect server start`` on a free port (SQLite in its home, or PostgreSQL in a
    temp folder); PREFECT_API_URL points at it for this process."""
    from comfy_gen.stack import Stack, free_port

    pg = None
    if db == "postgres":
        pg = _start_postgres(tmp)
        os.environ["PREFECT_API_DATABASE_CONNECTION_URL"] = pg[0]
    stack = Stack(tmp / "prefect-home", port=free_port())
    try:
        stack.start_server()
        os.environ.update({"PREFECT_API_URL": stack.api_url, "PREFECT_HOME": str(stack.home)})
        yield stack
    finally:
        stack.stop()
        if pg is not None:
            pg[1]()
        os.environ.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)


def _start_postgres(tmp: Path) -> tuple[str, Any]:
    import shutil
    import subprocess

    from comfy_gen.procs import spawn_group, stop_groups, watched
    from comfy_gen.stack import free_port
    from tests.fixtures.postgres import SUPERUSER, PostgresServer, _as_user, _wait_ready, pg_bin_dir

    bin_dir = pg_bin_dir()
    root = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    if _as_user(["x"])[0] == "runuser":
        shutil.chown(root, user=SUPERUSER, group=SUPERUSER)
    data = root / "data"
    subprocess.run(_as_user([str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "-A", "trust", "-E",
                             "UTF8", "--locale=C", "--no-sync"]), check=True, capture_output=True, timeout=120)
    server = PostgresServer("127.0.0.1", free_port(), data, bin_dir)
    log = open(root / "postgres.log", "wb")
    proc = spawn_group(watched(_as_user([str(bin_dir / "postgres"), "-D", str(data), "-p", str(server.port),
                                         "-k", str(root), "-c", "listen_addresses=127.0.0.1",
                                         "-c", "max_connections=200"])), stdout=log, stderr=subprocess.STDOUT)
    _wait_ready(server, proc, root / "postgres.log")
    with server.connect() as conn:
        conn.execute('CREATE DATABASE "prefect"')

    def stop() -> None:
        subprocess.run(_as_user([str(bin_dir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w"]),
                       capture_output=True, timeout=60)
        stop_groups([proc], timeout=15)
        shutil.rmtree(root, ignore_errors=True)

    url = f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{server.port}/prefect"
    return url, stop


def server_cpu_seconds(stack: Any) -> float:
    """CPU time (user + system) of every process of the server's group so far."""
    from comfy_gen.procs import group_members

    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in group_members(stack.procs[0].pid) or []:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick   # utime, stime
    return total


def db_bytes(stack: Any, db: str) -> int:
    if db == "postgres":
        import httpx  # noqa: F401 - the server's own database: ask PostgreSQL
        import psycopg

        url = os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL", "")
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="prefect") as conn:
            row = conn.execute("select pg_database_size('prefect')").fetchone()
            return int(row[0]) if row else 0
    return sum(p.stat().st_size for p in stack.home.glob("prefect.db*"))


def _count(path: str, body: dict[str, Any]) -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return int(client._client.post(path, json=body).json())


def wait_recorded(body: dict[str, Any], expected: int, settle: float = 600.0) -> tuple[int, float]:
    """(task runs matching ``body``, seconds until that many): polled until ``expected``
    or until the count stops growing for 20 s."""
    started = time.monotonic()
    last, still = -1, time.monotonic()
    count = 0
    while time.monotonic() - started < settle:
        count = _count("/task_runs/count", body)
        if count >= expected:
            break
        if count != last:
            last, still = count, time.monotonic()
        elif time.monotonic() - still > 20:
            break
        time.sleep(0.2)
    return count, time.monotonic() - started


# -- the flow -----------------------------------------------------------------------
def measure_flow(n: int, chunk: int, db: str = "sqlite", step: float = 0.001) -> dict[str, Any]:
    from comfy_gen.emulator import Emulator

    tmp = Path(tempfile.mkdtemp(prefix="bench-large-flow-"))
    _setup(tmp)
    path = write_recipe(tmp, f"large-{uuid.uuid4().hex[:6]}", n)
    with prefect_server(tmp, db) as stack, Emulator(port=0, step_time=step, data_dir=tmp / "emu") as emu:
        _settings(COMFY_GEN_COMFYUI_URL=emu.url, COMFY_GEN_FLOW_CHUNK_SIZE=str(chunk))
        from flows.render_recipe import render_recipe

        cpu0, db0 = server_cpu_seconds(stack), db_bytes(stack, db)
        started = time.monotonic()
        summary = render_recipe(recipe=str(path))
        wall = time.monotonic() - started
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        parent = summary["flow_run_id"]
        subflows = _subflow_ids(parent)
        per_chunk = [_count("/task_runs/count", {"flow_runs": {"id": {"any_": [s]}},
                                                 "task_runs": {"name": {"like_": "item-"}}}) for s in subflows]
        recorded, lag = wait_recorded({"flow_runs": {"id": {"any_": subflows or [parent]}},
                                       "task_runs": {"name": {"like_": "item-"},
                                                     "state": {"type": {"any_": ["COMPLETED"]}}}}, n)
        cpu = server_cpu_seconds(stack) - cpu0
        grown = db_bytes(stack, db) - db0
        lines = (Path(summary["run_dir"]) / "results.jsonl").read_text().splitlines()
        ids = {json.loads(line)["item_id"] for line in lines}
        jobs = emu.stats()["jobs_completed"]
        t0 = time.monotonic()
        again = render_recipe(recipe=str(path))
        rerun = time.monotonic() - t0
        rerun_subflows = len(_subflow_ids(again["flow_run_id"]))
        rerun_jobs = emu.stats()["jobs_completed"] - jobs
    return {"bench": "flow", "db": db, "items": n, "chunk": chunk, "wall_s": round(wall, 1),
            "items_per_s": round(n / wall, 1), "jobs": jobs, "rendered": summary["rendered"],
            "flow_runs": 1 + len(subflows), "subflow_runs": len(subflows),
            "max_task_runs_per_subflow": max(per_chunk, default=0),
            "item_task_runs_completed": recorded, "recorded_after_flow_s": round(lag, 1),
            "run_record_items": len(lines), "run_record_unique": len(ids), "peak_rss_mib": round(peak_rss),
            "server_cpu_s": round(cpu, 1), "server_cpu_ms_per_item": round(1000 * cpu / n, 2),
            "db_growth_kib_per_item": round(grown / 1024 / n, 2), "gpu_busy": summary["gpu_busy_fraction"],
            "rerun_s": round(rerun, 1), "rerun_jobs": rerun_jobs, "rerun_subflow_runs": rerun_subflows}


def _subflow_ids(parent: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent])), limit=200)
    return [str(r.id) for r in runs]


# -- GPU busy across chunk boundaries -------------------------------------------------
def busy_and_gap(spans: list[list[float]]) -> tuple[float, float]:
    spans = sorted(spans)
    total = sum(b - a for a, b in spans)
    window = max(b for _, b in spans) - spans[0][0]
    gap, end = 0.0, spans[0][1]
    for a, b in spans[1:]:
        gap = max(gap, a - end)
        end = max(end, b)
    return total / window, gap


def measure_busy(n: int, job_seconds: float, chunk: int) -> list[dict[str, Any]]:
    from comfy_gen.emulator import Emulator

    tmp = Path(tempfile.mkdtemp(prefix="bench-large-busy-"))
    _setup(tmp)
    rows = []
    import flows.chunks

    # One flow run, chunks started while the one before drains, and (for contrast)
    # chunks one after the other: side by side, on the same server.
    modes = [(n + 1, 2, "one flow run"), (chunk, 2, f"chunks of {chunk}"),
             (chunk, 1, f"chunks of {chunk}, each after the last ends")]
    with prefect_server(tmp, "sqlite"):
        for size, active, mode in modes:
            flows.chunks.ACTIVE_CHUNKS = active
            with Emulator(port=0, step_time=job_seconds / STEPS, data_dir=tmp / f"emu-{size}-{active}") as emu:
                _settings(COMFY_GEN_COMFYUI_URL=emu.url, COMFY_GEN_FLOW_CHUNK_SIZE=str(size))
                from flows.render_recipe import render_recipe

                summary = render_recipe(recipe=str(write_recipe(tmp, f"busy-{uuid.uuid4().hex[:6]}", n)))
                busy, gap = busy_and_gap(emu.stats()["busy"])
            rows.append({"bench": "busy", "items": n, "job_s": job_seconds, "mode": mode,
                         "subflow_runs": len(_subflow_ids(summary["flow_run_id"])),
                         "gpu_busy": round(busy, 4), "largest_gap_s": round(gap, 3)})
    return rows


# -- server: per-task-run cost and event throughput ------------------------------------
def measure_server(task_runs: int, events: int, db: str = "sqlite") -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-large-server-"))
    _setup(tmp)
    with prefect_server(tmp, db) as stack:
        from prefect import flow, task
        from prefect.cache_policies import NO_CACHE
        from prefect.events import emit_event
        from prefect.events.worker import EventsWorker
        from prefect.task_runners import ThreadPoolTaskRunner

        @task(name="noop", cache_policy=NO_CACHE, persist_result=False)
        def noop(i: int) -> int:
            return i

        @flow(name="bench-task-runs", task_runner=ThreadPoolTaskRunner(max_workers=8))  # type: ignore[arg-type]
        def many(n: int) -> str:
            from prefect.runtime import flow_run

            for future in noop.map(range(n)):
                future.result()
            return str(flow_run.id)

        many(10)   # warm: imports, the flow's registration
        cpu0, db0 = server_cpu_seconds(stack), db_bytes(stack, db)
        started = time.monotonic()
        run_id = many(task_runs)
        client_s = time.monotonic() - started
        recorded, lag = wait_recorded({"flow_runs": {"id": {"any_": [run_id]}},
                                       "task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}, task_runs)
        cpu = server_cpu_seconds(stack) - cpu0
        grown = db_bytes(stack, db) - db0
        # Events: emitted as fast as the client's events worker sends them.
        name = f"bench.event.{uuid.uuid4().hex[:6]}"
        cpu1 = server_cpu_seconds(stack)
        t0 = time.monotonic()
        for i in range(events):
            emit_event(event=name, resource={"prefect.resource.id": f"bench.{i}"})
        EventsWorker.drain_all(timeout=600)
        sent = time.monotonic() - t0
        held = 0
        while time.monotonic() - t0 < 600:
            from prefect.client.orchestration import get_client

            with get_client(sync_client=True) as client:
                page = client._client.post("/events/filter", json={
                    "filter": {"event": {"name": [name]}, "occurred": {"since": "2000-01-01T00:00:00Z"}},
                    "limit": 1}).json()
            held = int(page.get("total") or 0)
            if held >= events:
                break
            time.sleep(0.2)
        stored = time.monotonic() - t0
        event_cpu = server_cpu_seconds(stack) - cpu1
    return {"bench": "server", "db": db, "task_runs": task_runs, "recorded": recorded,
            "client_task_runs_per_s": round(task_runs / client_s, 1),
            "recorded_after_flow_s": round(lag, 1), "recorded_per_s": round(recorded / (client_s + lag), 1),
            "server_cpu_ms_per_task_run": round(1000 * cpu / task_runs, 2),
            "db_kib_per_task_run": round(grown / 1024 / task_runs, 2),
            "events": events, "events_held": held, "events_sent_per_s": round(events / sent, 1),
            "events_stored_per_s": round(held / stored, 1),
            "server_cpu_ms_per_event": round(1000 * event_cpu / max(held, 1), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("expand")
    p.add_argument("--items", type=int, default=20000)
    p = sub.add_parser("flow")
    p.add_argument("--items", type=int, default=20000)
    p.add_argument("--chunk", type=int, default=1000)
    p.add_argument("--db", default="sqlite", choices=["sqlite", "postgres"])
    p.add_argument("--step", type=float, default=0.001, help="emulator seconds per sampler step")
    p = sub.add_parser("busy")
    p.add_argument("--items", type=int, default=200)
    p.add_argument("--job-seconds", type=float, default=0.2)
    p.add_argument("--chunk", type=int, default=40)
    p = sub.add_parser("server")
    p.add_argument("--task-runs", type=int, default=2000)
    p.add_argument("--events", type=int, default=5000)
    p.add_argument("--db", default="sqlite", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    if args.cmd == "expand":
        rows = [measure_expand(args.items)]
    elif args.cmd == "flow":
        rows = [measure_flow(args.items, args.chunk, args.db, args.step)]
    elif args.cmd == "busy":
        rows = measure_busy(args.items, args.job_seconds, args.chunk)
    else:
        rows = [measure_server(args.task_runs, args.events, args.db)]
    for row in rows:
        print(json.dumps(row), flush=True)


def measure(quick: bool = False) -> list[dict[str, Any]]:
    """bench/run_all.py hook. Full: 20,000 items through Prefect in chunks of 1,000;
    quick: 20,000 expanded, 1,000 rendered in chunks of 250."""
    out: list[dict[str, Any]] = []
    e = measure_expand(20000)
    out.append({"metric": "expand a 20,000-item recipe", "value": f"{e['expand_s']:.2f} s, "
                f"{e['expand_peak_mib']:.0f} MiB peak", "target": "< 10 s", "met": e["expand_s"] < 10})
    n, chunk = (1000, 250) if quick else (20000, 1000)
    f = measure_flow(n, chunk)
    out.append({"metric": f"{n}-item flow, chunks of {chunk}: flow runs", "value": str(f["flow_runs"]),
                "target": f"1 + {-(-n // chunk)}", "met": f["subflow_runs"] == -(-n // chunk)})
    out.append({"metric": f"{n}-item flow: task runs per flow run (max)", "value": str(f["max_task_runs_per_subflow"]),
                "target": f"<= {chunk}", "met": f["max_task_runs_per_subflow"] <= chunk})
    out.append({"metric": f"{n}-item flow: items recorded (run record / server)",
                "value": f"{f['run_record_unique']} / {f['item_task_runs_completed']}", "target": f"{n} / {n}",
                "met": f["run_record_unique"] == n and f["item_task_runs_completed"] == n})
    out.append({"metric": f"{n}-item flow: wall, peak RSS", "value": f"{f['wall_s']:.0f} s, {f['peak_rss_mib']} MiB",
                "target": "< 1.5 GiB", "met": f["peak_rss_mib"] < 1536})
    out.append({"metric": f"{n}-item flow: server CPU per item", "value": f"{f['server_cpu_ms_per_item']} ms",
                "target": "-", "met": None})
    b = measure_busy(100 if quick else 200, 0.2, 25 if quick else 40)
    out.append({"metric": f"GPU busy, {b[0]['items']} items of 0.2 s: one flow run vs {b[1]['mode']}",
                "value": f"{100 * b[0]['gpu_busy']:.1f} % vs {100 * b[1]['gpu_busy']:.1f} %",
                "target": "chunks >= one run - 1 pt", "met": b[1]["gpu_busy"] >= b[0]["gpu_busy"] - 0.01})
    return out


if __name__ == "__main__":
    main()
