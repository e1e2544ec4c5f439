"""`comfy-gen up --database-url URL --workers 2`: the stack on PostgreSQL, for real.

One Prefect server on the tests' PostgreSQL (its whole state there), a process work
pool with two workers, and two deployment runs at once (two recipes) sharing two
emulated backends with the GPU gate on the same database. The bound is checked on
each emulator's own record of outstanding jobs, while both runs are provably at the
gates at once (their flow-run processes' gate connections, seen in pg_stat_activity).
The server, cluster and stack are started once for the module (start-up is the cost).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from comfy_gen.emulator import Emulator
from comfy_gen.stack import Stack, free_port
from tests.fixtures.postgres import PASSWORD, PostgresServer

REPO = Path(__file__).resolve().parents[2]
ITEMS = 6  # per recipe: 3 prompts x 2 seeds

RECIPE = """\
name: {name}
workflow: tiny-sd15.json
backends: [a, b]
defaults: {{steps: 2}}
prompts: [a red kite {name}, a blue boat {name}, a green hill {name}]
seeds: [1, 2]
validation: {{enabled: false}}
"""


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)  # polling an observable condition, not a timing assumption


class UpStack:
    """A running `comfy-gen up` and what it was started with."""

    def __init__(self, proc: subprocess.Popen[str], stack: Stack, emulators: dict[str, Emulator],
                 out: Path, recipes: Path, database: str, output: list[str]) -> None:
        self.proc, self.stack, self.emulators = proc, stack, emulators
        self.out, self.recipes, self.database, self.output = out, recipes, database, output

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, self.stack.api_url + path, timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="module")
def up_stack(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpStack]:
    tmp = tmp_path_factory.mktemp("pg-stack")
    database = "prefect_scale"
    with postgres_server.connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    emulators = {name: Emulator(step_time=0.01, data_dir=tmp / f"emu-{name}").start() for name in ("a", "b")}
    recipes, out, home = tmp / "recipes", tmp / "out", tmp / "prefect-home"
    recipes.mkdir()
    for name in ("r1", "r2"):
        (recipes / f"{name}.yaml").write_text(RECIPE.format(name=name))
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_API_URL", "COMFY_GEN_GPU_GATE", "COMFY_GEN_DATABASE_URL")}
    env.update({
        "PREFECT_HOME": str(home), "PYTHONPATH": str(REPO),
        "COMFY_GEN_COMFYUI_URL": emulators["a"].url,
        "COMFY_GEN_BACKENDS": json.dumps({n: e.url for n, e in emulators.items()}),
        "COMFY_GEN_GPU_LIMIT": "1",
        "COMFY_GEN_OUTPUT_DIR": str(out), "COMFY_GEN_STATE_DIR": str(tmp / "state"),
        "COMFY_GEN_RECIPE_DIRS": json.dumps([str(recipes)]),
    })
    # The password is in the URL: nothing `up` prints may show it.
    proc = subprocess.Popen([sys.executable, "-m", "comfy_gen.cli", "up", "--port", str(port), "--web-port", "0",
                             "--database-url", postgres_server.url(database), "--workers", "2",
                             "--worker-limit", "1"],
                            env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if "Press Ctrl-C" in line:
                break
        else:
            raise AssertionError(f"`up` exited ({proc.wait()}):\n{''.join(output)}")
        yield UpStack(proc, Stack(home=home, port=port), emulators, out, recipes, database, output)
    finally:
        proc.terminate()  # SIGTERM: `up` stops everything it started
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        for emu in emulators.values():
            emu.stop()


def _gate_pids(server: PostgresServer, database: str) -> set[str]:
    with server.connect(database) as conn:
        rows = conn.execute("SELECT application_name FROM pg_stat_activity "
                            "WHERE application_name LIKE 'comfy-gen gpu gate pid=%'").fetchall()
    return {r[0] for r in rows}


def test_two_runs_on_two_workers_share_two_backends_within_the_bound(
        up_stack: UpStack, postgres_server: PostgresServer) -> None:
    text = "".join(up_stack.output)
    assert "Workers:     2 on pool 'comfy-gen' (GPU gate: postgres)" in text, text
    assert "postgresql+asyncpg://***@127.0.0.1" in text and PASSWORD not in text, text
    # Prefect keeps its state in PostgreSQL, not in a SQLite file under PREFECT_HOME.
    with postgres_server.connect(up_stack.database) as conn:
        assert conn.execute("SELECT to_regclass('public.flow_run') IS NOT NULL").fetchone() == (True,)
    workers = up_stack.api("POST", "/work_pools/comfy-gen/workers/filter", json={})
    assert len(workers) == 2, workers

    a, b = up_stack.emulators["a"], up_stack.emulators["b"]
    for emu in (a, b):
        emu.hold()  # jobs stay at their sampler: both runs must be at the gates at once
    run_ids = []
    for name in ("r1", "r2"):
        result = up_stack.stack.prefect("deployment", "run", "render-recipe/on-demand",
                                        "--param", f"recipe={up_stack.recipes / f'{name}.yaml'}")
        run_ids.append(next(w for w in result.stdout.split() if w.count("-") == 4 and len(w) == 36))
    try:
        a.wait_held(1, timeout=240)
        b.wait_held(1, timeout=240)
        # Both flow-run processes (one per worker: --worker-limit 1) hold or wait for a slot.
        _wait(lambda: len(_gate_pids(postgres_server, up_stack.database)) >= 2, 240,
              "both flow runs at the GPU gates")
        for emu in (a, b):
            assert emu.stats()["max_outstanding"] == 1, emu.stats()
    finally:
        for emu in (a, b):
            emu.release()

    def finished() -> bool:
        runs = up_stack.api("POST", "/flow_runs/filter", json={"flow_runs": {"id": {"any_": run_ids}}})
        return len(runs) == 2 and all(r["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED") for r in runs)

    _wait(finished, 240, "both deployment runs to finish")
    runs = up_stack.api("POST", "/flow_runs/filter", json={"flow_runs": {"id": {"any_": run_ids}}})
    assert all(r["state"]["type"] == "COMPLETED" for r in runs), [r["state"] for r in runs]
    for emu in (a, b):
        stats = emu.stats()
        assert stats["max_outstanding"] == 1, stats  # never above gpu_limit, on the emulator's own record
    assert a.stats()["jobs_completed"] + b.stats()["jobs_completed"] == 2 * ITEMS
    for name in ("r1", "r2"):  # every item recorded: its image and sidecar
        images = sorted((up_stack.out / name / "items").glob("*.png"))
        assert len(images) == ITEMS and all(p.with_name(p.name + ".json").exists() for p in images), name


@pytest.mark.parametrize("source", ["--database-url", "COMFY_GEN_PREFECT_DATABASE_URL"])
def test_up_refuses_a_database_url_that_is_not_postgresql(tmp_path: Path, source: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "home")
    url = f"mysql://u:{PASSWORD}@127.0.0.1/x"
    args = ["--database-url", url] if source.startswith("--") else []
    if not args:
        env[source] = url
    result = subprocess.run([sys.executable, "-m", "comfy_gen.cli", "up", "--port", str(free_port()), *args],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{source} must be a PostgreSQL URL" in result.stderr and PASSWORD not in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "home" / "server.log").exists()
