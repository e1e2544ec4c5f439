"""Soak: 500 items through the render-recipe flow with every fault on at once.

10 % of the emulator's HTTP answers are 5xx, every WebSocket is cut after 50
messages, the emulator restarts once mid-run (queue, running job and history
lost) and the S3 server (SeaweedFS) is down for about a third of the run. A
watcher thread drives the outages from what it observes (jobs completed on the
emulator), never from sleeps. Afterwards: every item stored exactly once
locally and in the bucket, no item rendered twice, the outbox empty, and the
test process's memory flat between item 100 and item 500.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from comfy_gen.errors import BatchFailed

pytestmark = pytest.mark.usefixtures("prefect_harness")

PROMPTS = 20
SEEDS = 25
ITEMS = PROMPTS * SEEDS
#: Outage schedule, in emulator jobs completed: S3 down from 150 to 320 (about a
#: third of the run), the emulator restarted at 250 (while S3 is down too).
S3_DOWN_AT, EMULATOR_RESTART_AT, S3_UP_AT = 150, 250, 320
RSS_FIRST_AT = 100
#: Generous: the run holds 500 results and their records; a leak per item
#: (an image, a client, a socket) would cost far more.
RSS_GROWTH_LIMIT_MIB = 150.0


def _recipe() -> str:
    prompts = "\n".join(f"  - soak scene number {i}" for i in range(PROMPTS))
    return (f"name: soak\nworkflow: tiny-sd15.json\nprompts:\n{prompts}\n"
            f"seeds: {{start: 1, stop: {SEEDS + 1}}}\noutput:\n  upload: true\n")


def _memory_mib() -> dict[str, float]:
    """This process's resident set now (VmRSS) and its peak so far (VmHWM), in MiB."""
    values: dict[str, float] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024  # kB
    return values


class Watcher(threading.Thread):
    """Turns faults on and off as the run reaches its milestones (jobs completed)."""

    def __init__(self, emu: Any, s3_server: Any) -> None:
        super().__init__(name="soak-watcher", daemon=True)
        self.emu, self.s3 = emu, s3_server
        self.done = threading.Event()
        self.events: dict[str, int] = {}  # event -> jobs completed when it happened
        self.memory_at_100: dict[str, float] = {}
        self.error: BaseException | None = None
        self.s3_down_seconds = 0.0
        self.lost_prompt_ids: list[str] = []
        self.restart_outstanding = 0

    def run(self) -> None:
        try:
            self._watch()
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.error = exc

    def _watch(self) -> None:
        down_since = 0.0
        while not self.done.is_set():
            completed = self.emu.stats()["jobs_completed"]
            if completed >= RSS_FIRST_AT and not self.memory_at_100:
                self.memory_at_100 = _memory_mib()
            if completed >= S3_DOWN_AT and "s3_stopped" not in self.events:
                self.s3.stop()
                down_since = time.monotonic()
                self.events["s3_stopped"] = completed
            if completed >= EMULATOR_RESTART_AT and "emulator_restarted" not in self.events:
                # Restart while a job is surely running (held at its sampler): it is lost.
                self.emu.hold()
                self.lost_prompt_ids = self.emu.wait_held(1, timeout=120)
                queue = self.emu.stats()
                self.restart_outstanding = queue["queue_pending"] + queue["queue_running"]
                self.emu.restart()
                self.emu.release()  # stop holding (the held job went with the restart)
                self.events["emulator_restarted"] = completed
            if completed >= S3_UP_AT and "s3_started" not in self.events:
                self.s3.start()
                self.s3_down_seconds = time.monotonic() - down_since
                self.events["s3_started"] = completed
            if len(self.events) == 3 and self.memory_at_100:
                return
            self.done.wait(0.02)  # a poll interval, not a synchronisation device


def _sidecars(items_dir: Path) -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(items_dir.glob("*.png.json"))}


def test_500_items_with_every_fault_on_lose_nothing_and_render_nothing_twice(
        emulator_factory, use_backend, write_recipe, s3_server, s3_env, monkeypatch) -> None:
    from comfy_gen.config import get_settings
    from comfy_gen.storage import Outbox
    from comfy_gen.storage.s3 import S3Storage
    from flows.render_recipe import render_recipe

    started = time.monotonic()
    emu = emulator_factory(step_time=0.005)
    emu.faults.update({"http_5xx_rate": 0.1, "ws_drop_after": 50, "seed": 11})
    # Client retries after 0.2 s instead of 2 s: the same faults, in a few minutes.
    monkeypatch.setenv("COMFY_GEN_RETRY_DELAY", "0.2")
    use_backend(emu.url)  # (re-reads the settings)
    path = write_recipe("soak", _recipe())
    bucket = s3_env.minio_bucket

    watcher = Watcher(emu, s3_server)
    watcher.start()
    reruns: list[dict[str, Any]] = []
    try:
        try:
            summary = render_recipe(recipe=str(path))
        except BatchFailed as exc:
            # Items whose retries all met a fault: one re-run must render exactly those.
            first = exc.summary
            assert first is not None
            missing = len(first["errors"])
            summary = render_recipe(recipe=str(path))
            assert summary["rendered"] == missing and summary["cached"] == ITEMS - missing, summary
            reruns.append(first)
    finally:
        watcher.done.set()
        watcher.join(timeout=120)
        s3_server.start()  # whatever happened, leave the session's server up
    assert watcher.error is None, watcher.error
    assert set(watcher.events) == {"s3_stopped", "emulator_restarted", "s3_started"}, watcher.events
    memory_at_500 = _memory_mib()
    run_seconds = time.monotonic() - started

    # Every item stored exactly once locally, each from its own ComfyUI job.
    items_dir = Path(summary["items_dir"])
    images = sorted(items_dir.glob("*.png"))
    sidecars = _sidecars(items_dir)
    assert len(images) == ITEMS and len(sidecars) == ITEMS
    assert {f"{p.name}.json" for p in images} == set(sidecars)
    prompt_ids = [meta["comfyui"]["prompt_id"] for meta in sidecars.values()]
    assert len(set(prompt_ids)) == ITEMS and all(prompt_ids)
    keys = {(m["input"]["prompt"], m["parameters"]["seed"]) for m in sidecars.values()}
    assert len(keys) == ITEMS

    # No item rendered twice: every job we sent was accepted once; one successful
    # job per item, plus at most the jobs sent again because the restart lost
    # them (a job that finished just before it, unread, may count twice).
    stats = emu.stats()
    jobs_sent = sum(run["jobs"] for run in [*reruns, summary])
    resubmitted = jobs_sent - ITEMS
    assert stats["jobs_lost"] == 1 and not set(watcher.lost_prompt_ids) & set(prompt_ids), stats
    assert stats["jobs_failed"] == 0 and ITEMS <= stats["jobs_completed"] <= ITEMS + resubmitted, stats
    if not reruns:
        # (A re-run adopts the finished jobs of the items that failed client-side
        # instead of sending them again: then "sent" counts them twice.)
        assert stats["prompts_accepted"] == jobs_sent, (stats, jobs_sent)
        # The restart can take at most the jobs outstanding then: the GPU bound.
        assert 1 <= resubmitted <= get_settings().gpu_limit, (jobs_sent, watcher.restart_outstanding)

    # Uploads: what the outage queued is drained once S3 is back; then the bucket
    # holds exactly the 500 images and their sidecars, each once.
    outbox = Outbox.from_settings(s3_env)
    queued = outbox.count()
    report = outbox.sync(S3Storage.from_settings(s3_env))
    assert not report.failed and outbox.count() == 0, report.to_dict()
    objects = sorted(o.object_name for o in s3_server.client().list_objects(bucket, recursive=True))
    assert len(objects) == 2 * ITEMS == len(set(objects))
    assert {k.rsplit("/", 1)[-1] for k in objects} == {p.name for p in images} | set(sidecars)
    # A delayed upload still gives the local sidecar its URL.
    assert all(meta["storage"]["url"] for meta in _sidecars(items_dir).values())

    growth = memory_at_500["VmRSS"] - watcher.memory_at_100["VmRSS"]
    print(f"soak: {ITEMS} items in {run_seconds:.0f} s; RSS at {RSS_FIRST_AT} items "
          f"{watcher.memory_at_100['VmRSS']:.0f} MiB (peak {watcher.memory_at_100['VmHWM']:.0f}), at {ITEMS} "
          f"{memory_at_500['VmRSS']:.0f} MiB (peak {memory_at_500['VmHWM']:.0f}); events {watcher.events}; "
          f"S3 down {watcher.s3_down_seconds:.0f} s; queued {queued}, synced {len(report.uploaded)}; "
          f"re-runs {len(reruns)}; jobs sent {jobs_sent}, completed {stats['jobs_completed']}, "
          f"lost {stats['jobs_lost']}, resubmitted {resubmitted} ({watcher.restart_outstanding} outstanding "
          f"at the restart); HTTP faults {stats['faults_injected']}")
    assert growth < RSS_GROWTH_LIMIT_MIB
