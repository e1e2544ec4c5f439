"""The GPU bound: in-process and cross-process slot limits, and release on death."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from comfy_gen.errors import ConfigError
from comfy_gen.gate import GpuGate


def _hold(gate: GpuGate, active: list[int], peak: list[int], lock: threading.Lock, seconds: float) -> None:
    with gate:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(seconds)
        with lock:
            active[0] -= 1


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_threads_never_exceed_the_limit(tmp_path: Path, limit: int) -> None:
    gate = GpuGate(f"http://127.0.0.1:1/{limit}", limit, lock_dir=tmp_path)
    active, peak, lock = [0], [0], threading.Lock()
    threads = [threading.Thread(target=_hold, args=(gate, active, peak, lock, 0.02)) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == limit


def _child(lock_dir: str, url: str, out: str, hold: float) -> None:
    gate = GpuGate(url, 1, lock_dir=Path(lock_dir))
    with gate:
        start = time.time()
        time.sleep(hold)
        end = time.time()
    with open(out, "a") as fh:
        fh.write(f"{start} {end}\n")


def test_processes_share_slots(tmp_path: Path) -> None:
    out = tmp_path / "spans.txt"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_child, args=(str(tmp_path), "http://127.0.0.1:2", str(out), 0.15))
             for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    spans = sorted(tuple(map(float, line.split())) for line in out.read_text().splitlines())
    assert len(spans) == 3
    for (s1, e1), (s2, e2) in zip(spans, spans[1:]):
        assert s2 >= e1 - 1e-3, f"overlap between processes: {spans}"


def test_slot_of_a_killed_holder_is_released_by_the_os(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from comfy_gen.gate import GpuGate;"
        f"g = GpuGate('http://127.0.0.1:3', 1, lock_dir=Path({str(tmp_path)!r})); g.__enter__();"
        "print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert holder.stdout.readline().strip() == b"held"
    gate = GpuGate("http://127.0.0.1:3", 1, lock_dir=tmp_path)
    acquired = threading.Event()

    def take() -> None:
        with gate:
            acquired.set()

    t = threading.Thread(target=take, daemon=True)
    t.start()
    assert not acquired.wait(0.3), "the slot must be taken while the holder lives"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert acquired.wait(5), "a SIGKILLed holder's slot must come back at once"
    t.join()


def test_limit_must_be_positive() -> None:
    with pytest.raises(ConfigError):
        GpuGate("http://127.0.0.1:4", 0)
