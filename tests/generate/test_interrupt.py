"""Ctrl-C during `comfy-gen generate`: only our job is interrupted, nothing partial is left.

The job is held on the emulator (``emu.hold()``) until the signal has been
handled, so it cannot finish first however slow or loaded the machine is.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import httpx

from comfy_gen.emulator import Emulator

#: Only matters when something is really broken (a hang), never on a slow machine.
TIMEOUT = 120


def _lines(stream: IO[str]) -> "queue.Queue[str | None]":
    """The stream's lines as they come (None at EOF), read on a thread so waits can time out."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _first_event_with_prompt_id(lines: "queue.Queue[str | None]", seen: list[str]) -> dict[str, Any]:
    """The first JSON event naming a prompt: the CLI knows its job id from then on."""
    while (line := lines.get(timeout=TIMEOUT)) is not None:
        seen.append(line)
        event = json.loads(line)
        if event.get("prompt_id"):
            return event
    raise AssertionError(f"the process ended before any event named its job: {seen}")


def test_sigint_cancels_our_job_removes_output_and_exits_130(fresh_emulator: Emulator, tmp_path: Path) -> None:
    emu = fresh_emulator
    emu.hold()
    env = {**os.environ, "COMFY_GEN_COMFYUI_URL": emu.url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "comfy_gen.cli", "generate", "-w", "tiny-sd15", "-p", "a calm lake",
         "--steps", "40", "-o", "partial.png", "--json-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    seen: list[str] = []
    try:
        assert proc.stdout is not None and proc.stderr is not None
        stdout = _lines(proc.stdout)
        stderr: list[str] = []
        err_reader = threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True)  # type: ignore
        err_reader.start()
        prompt_id = _first_event_with_prompt_id(stdout, seen)["prompt_id"]
        assert emu.wait_held(1, timeout=TIMEOUT) == [prompt_id]  # running, and it cannot finish
        # Someone else's job waits behind ours: Ctrl-C must not touch it.
        foreign_id = httpx.post(f"{emu.url}/prompt", json={"prompt": _graph_of_other(), "client_id": "x"}
                                ).json()["prompt_id"]
        proc.send_signal(signal.SIGINT)
        returncode = proc.wait(timeout=TIMEOUT)
        while (line := stdout.get(timeout=TIMEOUT)) is not None:
            seen.append(line)
        err_reader.join(TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out, err = "".join(seen), "".join(stderr)
    assert returncode == 130, err
    assert "Traceback" not in err
    # The state in parentheses is not asserted: render() already cancelled the job on its way
    # out, so the CLI's own cancel finds it interrupting or gone, depending on the server's pace.
    assert f"Cancelled our job {prompt_id} (" in out
    # The other client's job was not interrupted: it runs next (held like every job), then succeeds.
    assert emu.wait_held(1, timeout=TIMEOUT) == [foreign_id]
    entry = _history(emu, prompt_id)  # ours ended before the worker took the next one
    assert entry["status"]["status_str"] == "error"
    assert "execution_interrupted" in [m[0] for m in entry["status"]["messages"]]
    emu.release()
    assert emu.wait_idle(timeout=TIMEOUT)
    assert _history(emu, foreign_id)["status"]["status_str"] == "success"
    stats = emu.stats()
    assert (stats["jobs_interrupted"], stats["jobs_completed"]) == (1, 1)
    assert not (tmp_path / "partial.png").exists() and not (tmp_path / "partial.png.json").exists()
    assert not list((tmp_path / "state" / "work").rglob("*"))  # no attempt files left behind


def _history(emu: Emulator, prompt_id: str) -> dict[str, Any]:
    """The finished job's history entry (call once the job is known to have ended)."""
    entry: dict[str, Any] | None = httpx.get(f"{emu.url}/history/{prompt_id}").json().get(prompt_id)
    assert entry, f"{prompt_id} is not in the history"
    return entry


def _graph_of_other() -> dict[str, Any]:
    wf = json.loads(Path(__file__).resolve().parents[2].joinpath("workflows", "tiny-sd15.json").read_text())
    wf["5"]["inputs"]["steps"] = 2
    wf["5"]["inputs"]["seed"] = 123
    return wf
