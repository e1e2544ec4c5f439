"""Flows in separate processes: SIGKILL mid-batch and resume; two flows sharing one GPU bound.

"Mid-batch" is made certain, not likely: the emulator holds the next job
(``emu.hold(after=K)``) until the signal has been sent and handled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

pytestmark = pytest.mark.usefixtures("prefect_harness")

#: Bounds every wait; only matters when something is really broken, never on a slow machine.
TIMEOUT = 180
#: Jobs a run keeps outstanding on the emulator (one held running, the rest pending).
GPU_LIMIT = 2

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
               PREFECT_LOGGING_LEVEL="WARNING", COMFY_GEN_GPU_LIMIT=str(GPU_LIMIT))
    return env


def _run_cli(path: Path, env: dict[str, str], **popen: Any) -> subprocess.Popen[bytes]:
    """``comfy-gen run PATH``; its output goes to ``PATH.log`` (a pipe nobody reads could fill and block it)."""
    with path.with_suffix(".log").open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", "comfy_gen.cli", "run", str(path)], env=env,
                                stdout=log, stderr=subprocess.STDOUT, **popen)


def _output(path: Path) -> str:
    return path.with_suffix(".log").read_text(errors="replace")


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _stored(items: Path) -> list[Path]:
    """Items stored for good: the sidecar, written last, is what marks an item done."""
    return sorted(items.glob("*.png.json"))


def _hold_mid_batch(emu: Any, items: Path, finished: int) -> None:
    """Wait until ``finished`` items are stored and the next job is held on the emulator.

    The caller has called ``emu.hold(after=finished)``, so the batch cannot move on
    however fast or slow the machine is: a signal sent now lands mid-batch.
    """
    emu.wait_held(1, timeout=TIMEOUT)
    _wait(lambda: len(_stored(items)) >= finished, TIMEOUT, f"{finished} stored items")
    # The run queues its next job(s) up to its GPU limit; wait for them too, so no
    # submission is in flight when the signal lands.
    _wait(lambda: emu.stats()["queue_pending"] >= GPU_LIMIT - 1, TIMEOUT, "the run's pending job")
    assert len(_stored(items)) == finished
    stats = emu.stats()
    assert (stats["jobs_completed"], stats["queue_pending"], stats["prompts_accepted"]) == (
        finished, GPU_LIMIT - 1, finished + GPU_LIMIT), stats


def test_sigkilled_run_resumes_without_rendering_anything_twice(emulator_factory, write_recipe, use_backend):
    emu = emulator_factory()
    prompts = ", ".join(f"scene number {i}" for i in range(8))
    path = write_recipe("resume", RECIPE.format(name="resume", prompts=prompts))
    items = Path(os.environ["COMFY_GEN_OUTPUT_DIR"]) / "resume" / "items"
    emu.hold(after=3)
    proc = _run_cli(path, _env(emu.url))
    try:
        _hold_mid_batch(emu, items, finished=3)
    finally:
        proc.kill()
        proc.wait()
    # Jobs the killed run had queued (the held one, maybe a pending one) stay on the
    # server and run once released; the next run adopts them instead of queueing again.
    emu.release()
    use_backend(emu.url)
    from flows.render_recipe import render_recipe

    summary = render_recipe(recipe=str(path))
    assert summary["counts"].get("error") is None, summary
    assert (summary["cached"], summary["rendered"]) == (3, 5)
    assert len(list(items.glob("*.png"))) == 8 and len(_stored(items)) == 8
    assert emu.wait_idle(timeout=TIMEOUT)
    stats = emu.stats()
    assert (stats["jobs_started"], stats["jobs_completed"]) == (8, 8), "no item may be rendered twice"


def test_two_flows_at_once_share_the_gpu_bound(emulator_factory, write_recipe):
    emu = emulator_factory(step_time=0.03)
    env = _env(emu.url)
    a = write_recipe("flow-a", RECIPE.format(name="flow-a", prompts=", ".join(f"a{i}" for i in range(6))))
    b = write_recipe("flow-b", RECIPE.format(name="flow-b", prompts=", ".join(f"b{i}" for i in range(6))))
    procs = [_run_cli(a, env), _run_cli(b, env)]  # GPU limit 2 (see _env)
    for proc in procs:
        proc.wait(timeout=300)
    assert [p.returncode for p in procs] == [0, 0], [_output(a), _output(b)]
    stats = emu.stats()
    assert stats["jobs_completed"] == 12
    assert stats["max_outstanding"] <= 2, stats


def test_ctrl_c_cancels_our_outstanding_jobs_and_keeps_finished_items(emulator_factory, write_recipe, use_backend):
    emu = emulator_factory()
    prompts = ", ".join(f"frame {i}" for i in range(20))
    path = write_recipe("ctrl-c", RECIPE.format(name="ctrl-c", prompts=prompts))
    items = Path(os.environ["COMFY_GEN_OUTPUT_DIR"]) / "ctrl-c" / "items"
    emu.hold(after=2)
    proc = _run_cli(path, _env(emu.url), start_new_session=True)
    try:
        _hold_mid_batch(emu, items, finished=2)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal Ctrl-C does
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"run did not exit within {TIMEOUT}s of Ctrl-C; emulator: {emu.stats()}; "
                                 f"output:\n{_output(path)}") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = _output(path)
    assert proc.returncode == 130, out
    assert "Traceback" not in out.split("Run interrupted")[-1]
    # The process is gone, so it can queue nothing more. Hold is still on: a job of
    # ours left queued or running would sit on the emulator and it would never idle.
    assert emu.wait_idle(timeout=TIMEOUT), emu.stats()
    stats = emu.stats()
    assert stats["jobs_completed"] == 2 and stats["jobs_interrupted"] >= 1, stats
    assert stats["jobs_started"] == stats["jobs_completed"] + stats["jobs_interrupted"], stats
    # finished items are kept whole, nothing partial is left
    assert len(_stored(items)) == 2 and len(list(items.glob("*.png"))) == 2
    # nothing is lost: the next run renders only what is missing
    emu.release()
    from flows.render_recipe import render_recipe

    use_backend(emu.url)
    summary = render_recipe(recipe=str(path))
    assert (summary["cached"], summary["rendered"]) == (2, 18), summary
    assert emu.wait_idle(timeout=TIMEOUT)
    assert emu.stats()["jobs_completed"] == 20
