"""gpu_gate=postgres: the per-backend bound as PostgreSQL advisory locks, on a real server.

Processes stand in for hosts (each has its own connections; nothing but the database is
shared). Every wait is on an observable event: the emulator's held jobs and its own
record of outstanding jobs, ``pg_locks``/``pg_stat_activity``, a process's output line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from comfy_gen.config import Settings
from comfy_gen.errors import ConfigError, GpuGateUnavailable
from comfy_gen.gate import GpuGate, gate_for
from comfy_gen.pggate import close_idle_connections, slot_keys
from comfy_gen.stack import free_port
from tests.fixtures.postgres import PASSWORD

REPO = Path(__file__).resolve().parents[2]

#: A process that takes ``threads`` slots' worth of jobs through the gate: each thread
#: queues one job on the emulator inside the gate and waits for it to finish there.
CHILD = """
import json, sys, threading
from comfy_gen.comfyui import ComfyUIClient
from comfy_gen.gate import GpuGate
db, emu_url, limit, threads, workflow = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
graph = json.load(open(workflow))
gate = GpuGate(emu_url, limit, mode="postgres", database_url=db)
client = ComfyUIClient(emu_url, job_timeout=120, poll_interval=0.1)
def job():
    with gate:
        client.wait(client.queue_prompt(graph).prompt_id)
workers = [threading.Thread(target=job) for _ in range(threads)]
for w in workers: w.start()
for w in workers: w.join()
print("done", flush=True)
"""

HOLDER = """
import sys, time
from comfy_gen.gate import GpuGate
gate = GpuGate(sys.argv[2], 1, mode="postgres", database_url=sys.argv[1])
gate.__enter__()
print("held", flush=True)
time.sleep(600)
"""


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)  # polling an observable condition, not a timing assumption


def _gate_clients(conn) -> set[str]:
    """Processes with a gate connection open (their application_name carries their pid)."""
    rows = conn.execute("SELECT application_name FROM pg_stat_activity "
                        "WHERE application_name LIKE 'comfy-gen gpu gate pid=%'").fetchall()
    return {r[0] for r in rows}


def _held_slots(conn, url: str, limit: int) -> int:
    keys = slot_keys(url, limit)
    # A bigint key shows as (classid, objid) = (high 32 bits, low 32 bits), objsubid 1.
    pairs = {((k >> 32) & 0xFFFFFFFF, k & 0xFFFFFFFF) for k in keys}
    rows = conn.execute("SELECT classid::bigint, objid::bigint FROM pg_locks "
                        "WHERE locktype = 'advisory' AND objsubid = 1 AND granted").fetchall()
    return sum(1 for r in rows if (r[0], r[1]) in pairs)


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def test_bound_holds_across_processes(postgres_server, postgres_url: str, fresh_emulator) -> None:
    """Three processes x two threads want one backend with limit 2: the emulator's own
    record never sees more than 2 jobs outstanding, while all three contend."""
    emu, limit = fresh_emulator, 2
    emu.hold()  # the first jobs stay running, so every process has to wait at the gate
    children = [_python(CHILD, postgres_url, emu.url, str(limit), "2", str(REPO / "workflows/tiny-sd15.json"))
                for _ in range(3)]
    db = postgres_url.rsplit("/", 1)[1]
    try:
        with postgres_server.connect(db) as conn:
            emu.wait_held(1, timeout=120)
            _wait(lambda: len(_gate_clients(conn)) == 3, 120, "all three processes at the gate")
            _wait(lambda: emu.stats()["prompts_accepted"] == limit, 60, "the second slot's job")
            assert _held_slots(conn, emu.url, limit) == limit
            assert emu.stats()["max_outstanding"] == limit
            emu.release()
            for child in children:
                out, err = child.communicate(timeout=120)
                assert child.returncode == 0 and "done" in out, err
            stats = emu.stats()
            assert stats["jobs_completed"] == 6
            assert stats["max_outstanding"] == limit, stats
            assert _held_slots(conn, emu.url, limit) == 0
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


def test_threads_of_one_process_take_distinct_slots(postgres_url: str) -> None:
    """Each slot has its own connection: two threads never share one session's lock."""
    url = "http://127.0.0.1:9/threads"
    gate = GpuGate(url, 2, mode="postgres", database_url=postgres_url)
    inside, peak, lock = [0], [0], threading.Lock()
    entered, go = threading.Barrier(3), threading.Event()

    def hold() -> None:
        with gate:
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            entered.wait(30)
            go.wait(30)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for t in threads:
        t.start()
    entered.wait(30)  # both inside at once: two slots
    go.set()
    for t in threads:
        t.join(30)
    assert peak[0] == 2
    close_idle_connections()


def test_a_sigkilled_holder_frees_its_slot(postgres_server, postgres_url: str) -> None:
    url = "http://127.0.0.1:9/killed"
    holder = _python(HOLDER, postgres_url, url)
    db = postgres_url.rsplit("/", 1)[1]
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held", holder.stderr
        gate = GpuGate(url, 1, mode="postgres", database_url=postgres_url)
        acquired = threading.Event()

        def take() -> None:
            with gate:
                acquired.set()

        with postgres_server.connect(db) as conn:
            assert _held_slots(conn, url, 1) == 1
            waiter = threading.Thread(target=take, daemon=True)
            waiter.start()
            # The waiter is at the gate (its own connection is open) and the slot is still the holder's.
            _wait(lambda: len(_gate_clients(conn)) == 2, 60, "the waiter's connection")
            assert not acquired.is_set()
            killed = time.monotonic()
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait()
            assert acquired.wait(30), "the slot of a SIGKILLed holder must come back"
            print(f"slot freed {time.monotonic() - killed:.3f} s after SIGKILL")
            waiter.join(30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        close_idle_connections()


def test_an_unreachable_database_is_a_clear_error_naming_the_setting() -> None:
    url = f"postgresql+psycopg://comfy:{PASSWORD}@127.0.0.1:{free_port()}/nowhere"
    settings = Settings(gpu_gate="postgres", gpu_gate_database_url=url)
    gate = gate_for(settings, "http://127.0.0.1:9/unreachable")
    with pytest.raises(GpuGateUnavailable) as caught:
        with gate:
            pass
    text = str(caught.value) + json.dumps(caught.value.to_dict())
    assert "COMFY_GEN_GPU_GATE_DATABASE_URL" in text and "cannot be reached" in text
    assert PASSWORD not in text and "***@127.0.0.1" in text
    # The gate lets the next job try again: nothing is left half-taken.
    with pytest.raises(GpuGateUnavailable):
        with gate:
            pass


def test_a_missing_database_on_a_running_server_names_the_catalog_setting(postgres_server) -> None:
    """Without a gate-specific URL the gate uses the catalog's database_url, and says so."""
    settings = Settings(gpu_gate="postgres", database_url=postgres_server.url("no_such_db"))
    with pytest.raises(GpuGateUnavailable) as caught:
        with gate_for(settings, "http://127.0.0.1:9/missing-db"):
            pass
    assert "COMFY_GEN_DATABASE_URL" in str(caught.value) and "no_such_db" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_postgres_mode_needs_a_postgresql_url() -> None:
    with pytest.raises(ConfigError) as caught:
        gate_for(Settings(gpu_gate="postgres"), "http://127.0.0.1:9/none")
    assert "COMFY_GEN_GPU_GATE_DATABASE_URL" in str(caught.value) and "COMFY_GEN_DATABASE_URL" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        gate_for(Settings(gpu_gate="postgres", database_url="sqlite:////tmp/catalog.sqlite"), "http://127.0.0.1:9/x")
    assert "COMFY_GEN_DATABASE_URL" in str(caught.value) and "PostgreSQL" in str(caught.value)


def test_slot_keys_are_stable_and_distinct() -> None:
    keys = slot_keys("http://127.0.0.1:8188", 4)
    assert keys == slot_keys("http://127.0.0.1:8188", 4) and len(set(keys)) == 4
    assert all(-(2**63) <= k < 2**63 for k in keys)
    assert not set(keys) & set(slot_keys("http://127.0.0.1:8189", 4))
