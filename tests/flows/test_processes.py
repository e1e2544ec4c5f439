"""Flows in separate processes: SIGKILL mid-batch and resume; two flows sharing one GPU bound."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("prefect_harness")

RECIPE = """
name: {name}
workflow: tiny-sd15.json
prompts: [{prompts}]
seeds: [11]
"""


def _env(emu_url: str) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ)
    env.update(COMFY_GEN_COMFYUI_URL=emu_url, PREFECT_API_URL=str(PREFECT_API_URL.value()),
               PREFECT_LOGGING_LEVEL="WARNING")
    return env


def _run_cli(path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "comfy_gen.cli", "run", str(path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigkilled_run_resumes_without_rendering_anything_twice(emulator_factory, write_recipe, use_backend,
                                                               tmp_path):
    emu = emulator_factory(step_time=0.1)
    prompts = ", ".join(f"scene number {i}" for i in range(8))
    path = write_recipe("resume", RECIPE.format(name="resume", prompts=prompts))
    items = Path(os.environ["COMFY_GEN_OUTPUT_DIR"]) / "resume" / "items"
    proc = _run_cli(path, _env(emu.url))
    try:
        _wait(lambda: len(list(items.glob("*.png"))) >= 3, 180, "three stored images")
    finally:
        proc.kill()
        proc.wait()
    done_before = len(list(items.glob("*.png")))
    assert done_before < 8, "the run should have been killed mid-batch"
    # Jobs the killed run had queued keep running on the server; the next run adopts them.
    use_backend(emu.url)
    from flows.render_recipe import render_recipe

    summary = render_recipe(recipe=str(path))
    assert summary["counts"].get("error") is None
    assert summary["cached"] >= done_before
    assert len(list(items.glob("*.png"))) == 8
    _wait(lambda: emu.stats()["queue_running"] == 0 and emu.stats()["queue_pending"] == 0, 30, "idle emulator")
    assert emu.stats()["jobs_completed"] == 8, "no item may be rendered twice"


def test_two_flows_at_once_share_the_gpu_bound(emulator_factory, write_recipe):
    emu = emulator_factory(step_time=0.03)
    env = _env(emu.url)
    env["COMFY_GEN_GPU_LIMIT"] = "2"
    a = write_recipe("flow-a", RECIPE.format(name="flow-a", prompts=", ".join(f"a{i}" for i in range(6))))
    b = write_recipe("flow-b", RECIPE.format(name="flow-b", prompts=", ".join(f"b{i}" for i in range(6))))
    procs = [_run_cli(a, env), _run_cli(b, env)]
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    stats = emu.stats()
    assert stats["jobs_completed"] == 12
    assert stats["max_outstanding"] <= 2, stats


def test_ctrl_c_cancels_our_outstanding_jobs_and_keeps_finished_items(emulator_factory, write_recipe, use_backend):
    import signal

    emu = emulator_factory(step_time=0.1)
    prompts = ", ".join(f"frame {i}" for i in range(20))
    path = write_recipe("ctrl-c", RECIPE.format(name="ctrl-c", prompts=prompts))
    items = Path(os.environ["COMFY_GEN_OUTPUT_DIR"]) / "ctrl-c" / "items"
    proc = subprocess.Popen([sys.executable, "-m", "comfy_gen.cli", "run", str(path)], env=_env(emu.url),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    _wait(lambda: len(list(items.glob("*.png"))) >= 2, 180, "two stored images")
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal Ctrl-C does
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 130, out
    assert "Traceback" not in out.split("Run interrupted")[-1]
    stats = emu.stats()
    assert stats["queue_pending"] == 0 and stats["queue_running"] == 0
    started_after = stats["jobs_started"]
    time.sleep(0.5)
    assert emu.stats()["jobs_started"] == started_after, "no job may be queued after Ctrl-C"
    kept = len(list(items.glob("*.png")))
    assert 2 <= kept < 20
    # nothing is lost: the next run renders only what is missing
    from flows.render_recipe import render_recipe

    use_backend(emu.url)
    summary = render_recipe(recipe=str(path))
    assert summary["cached"] == kept and summary["rendered"] == 20 - kept
