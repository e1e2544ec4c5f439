"""Deployments for real: `prefect server start`, a process worker, `prefect deploy --all`,
`prefect deployment run` on a recipe against the emulator, all on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from comfy_gen.stack import Stack, free_port



@pytest.fixture()
def stack(tmp_path: Path):
    stack = Stack(home=tmp_path / "prefect-home", port=free_port())
    try:
        yield stack
    finally:
        stack.stop()


def _api(stack: Stack, method: str, path: str, **kwargs):
    response = httpx.request(method, stack.api_url + path, timeout=30, **kwargs)
    response.raise_for_status()
    return response.json()


def test_on_demand_deployment_renders_recipe_and_nightly_is_scheduled(stack: Stack, tmp_path: Path,
                                                                       emulator_factory) -> None:
    emu = emulator_factory(step_time=0.01)
    out = tmp_path / "out"
    stack.start_server()
    stack.create_pool()
    stack.deploy()
    stack.start_worker({
        "COMFY_GEN_COMFYUI_URL": emu.url,
        "COMFY_GEN_OUTPUT_DIR": str(out),
        "COMFY_GEN_STATE_DIR": str(tmp_path / "state"),
    })

    result = stack.prefect("deployment", "run", "render-recipe/on-demand",
                           "--param", "recipe=recipes/demo.yaml", "--watch", "--watch-timeout", "300",
                           check=False, timeout=360)
    assert result.returncode == 0, result.stdout + result.stderr

    runs = _api(stack, "POST", "/flow_runs/filter", json={
        "flow_runs": {"name": {"like_": "recipe-"}}, "limit": 10})
    assert len(runs) == 1
    run = runs[0]
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert run["parameters"]["recipe"] == "recipes/demo.yaml"

    artifacts = _api(stack, "POST", "/artifacts/filter", json={
        "artifacts": {"flow_run_id": {"any_": [run["id"]]}}})
    kinds = {a["type"] for a in artifacts}
    keys = {a.get("key") for a in artifacts}
    assert {"markdown", "table", "progress"} <= kinds, kinds
    assert "demo-summary" in keys and "demo-items" in keys
    table = next(a for a in artifacts if a["type"] == "table")
    assert "lighthouse" in str(table["data"]).lower()

    # The worker really rendered: six stored images (3 prompts x 2 seeds) with sidecars.
    images = sorted((out / "demo" / "items").glob("*.png"))
    assert len(images) == 6
    assert all(p.with_name(p.name + ".json").exists() for p in images)
    assert emu.stats()["jobs_completed"] >= 6

    nightly = _api(stack, "GET", "/deployments/name/render-nightly/nightly")
    crons = [s["schedule"].get("cron") for s in nightly.get("schedules", [])]
    assert "0 2 * * *" in crons
    scheduled = _api(stack, "POST", "/flow_runs/filter", json={
        "flow_runs": {"deployment_id": {"any_": [nightly["id"]]}, "state": {"type": {"any_": ["SCHEDULED"]}}}})
    assert scheduled, "the scheduler should have created upcoming nightly runs"


def test_comfy_gen_up_starts_the_local_stack_and_stops_it_on_ctrl_c(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    port = free_port()
    env = dict(os.environ)
    env.pop("COMFY_GEN_COMFYUI_URL", None)  # no ComfyUI configured: `up` starts the emulator
    env["PREFECT_HOME"] = str(tmp_path / "prefect-up")
    proc = subprocess.Popen([sys.executable, "-m", "comfy_gen.cli", "up", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(lines)
        assert "Press Ctrl-C" in text, text
        assert "BUILT-IN EMULATOR" in text
        api = f"http://127.0.0.1:{port}/api"
        assert httpx.get(f"{api}/health", timeout=10).status_code == 200
        pool = httpx.get(f"{api}/work_pools/comfy-gen", timeout=10).json()
        assert pool["type"] == "process"
        names = {d["name"] for d in httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()}
        assert {"on-demand", "nightly"} <= names
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
