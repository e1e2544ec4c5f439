"""`comfy-gen run` and the Prefect server it starts: checked before anything starts,
never outlived by it (SIGKILL included), leftovers ended by the next stack."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from comfy_gen import procs
from comfy_gen.stack import RECORDS, Stack

RECIPE = """
name: {name}
workflow: tiny-sd15.json
prompts: [{prompts}]
seeds: [11]
"""


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # `run` starts its own server
    env.update(PREFECT_HOME=str(home), PREFECT_LOGGING_LEVEL="WARNING", **extra)
    return env


def _wait(predicate, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def _records(home: Path) -> dict[str, dict]:
    found = {}
    for path in (home / RECORDS).glob("*.json"):
        try:
            data = json.loads(path.read_text())
        except ValueError:  # being written
            continue
        found[data["name"]] = data
    return found


def test_a_broken_recipe_exits_2_with_its_location_before_prefect_starts(write_recipe, tmp_path: Path) -> None:
    path = write_recipe("broken", RECIPE.format(name="broken", prompts="a lighthouse") + "seeds_typo: 3\n")
    home = tmp_path / "prefect-run"
    result = subprocess.run([sys.executable, "-m", "comfy_gen.cli", "run", str(path)], env=_env(home),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{path}:5: $.seeds_typo: unknown property 'seeds_typo'" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "prefect" not in (result.stderr + result.stdout).lower()
    assert not home.exists(), "no Prefect server (nor its home) may be started for a broken recipe"


def test_sigkilled_run_takes_its_prefect_server_with_it(emulator_factory, write_recipe, tmp_path: Path) -> None:
    emu = emulator_factory(step_time=0.5)  # a job takes seconds: the run is observably mid-batch
    path = write_recipe("slow", RECIPE.format(name="slow", prompts="a lighthouse, a harbour, a beacon"))
    home = tmp_path / "prefect-run"
    proc = subprocess.Popen([sys.executable, "-m", "comfy_gen.cli", "run", str(path)],
                            env=_env(home, COMFY_GEN_COMFYUI_URL=emu.url),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(lambda: "server" in _records(home) or proc.poll() is not None, 180, "the run's Prefect server")
        _wait(lambda: emu.stats()["queue_running"] >= 1 or proc.poll() is not None, 180, "a job on the emulator")
        assert proc.poll() is None, "the run ended before it could be killed mid-batch"
        server = _records(home)["server"]
        assert server["owner"] == proc.pid
        assert httpx.get(f"http://127.0.0.1:{server['port']}/api/health", timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    seconds = _wait(lambda: not procs.group_alive(server["pid"]), 30, "the orphaned server to end")
    print(f"server gone {seconds:.1f} s after SIGKILL of `run`")
    assert not procs.group_alive(server["pid"])


OWNER = """
import sys
from pathlib import Path
from comfy_gen.stack import Stack, free_port
stack = Stack(home=Path(sys.argv[1]), port=free_port())
stack.start_server()
print(stack.procs[0].pid, stack.port, flush=True)
sys.stdin.read()
"""


def test_the_next_stack_ends_a_server_whose_owner_and_watchdog_were_killed(tmp_path: Path) -> None:
    home = tmp_path / "prefect-home"
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(home)], env=_env(home), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        watchdog, port = map(int, owner.stdout.readline().split())
        # Kill the owner and its watchdog together, leaving the server alone in its group.
        os.kill(watchdog, signal.SIGKILL)
        os.kill(owner.pid, signal.SIGKILL)
    finally:
        owner.kill()
        owner.wait()
    assert procs.group_alive(watchdog), "the server itself should be left over"
    assert httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=10).status_code == 200

    Stack(home=home, port=port).check_port()  # ends our leftover, then finds the port free

    assert not procs.group_alive(watchdog)
    assert not list((home / RECORDS).glob("*.json"))
