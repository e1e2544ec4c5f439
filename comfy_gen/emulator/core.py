"""The emulated server's state and its single worker ("one GPU").

The worker follows ComfyUI's prompt_worker: pick the lowest number, announce
``status``, execute, write history, announce ``status`` again, and only then send
``executing {node: null}`` (PROTOCOL quirk 1).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from pathlib import Path
from typing import Any

from comfy_gen.emulator.catalog import Catalog
from comfy_gen.emulator.executor import Executor, Outcome
from comfy_gen.emulator.faults import Faults
from comfy_gen.emulator.files import Dirs
from comfy_gen.emulator.hold import Holds
from comfy_gen.emulator.state import PromptQueue, QueueItem, Stats
from comfy_gen.emulator.validation import Validator
from comfy_gen.emulator.ws import Hub

log = logging.getLogger(__name__)


class Core:
    """Queue, history, sockets, executor and worker of one emulated server."""

    def __init__(self, dirs: Dirs, models: dict[str, list[str]], faults: Faults, *,
                 step_time: float, previews: bool, custom_nodes: bool = True,
                 model_switch_time: float = 0.0) -> None:
        self.dirs = dirs
        self.faults = faults
        self.catalog = Catalog(models, dirs.input, custom_nodes=custom_nodes)
        self.queue = PromptQueue()
        self.stats = Stats()
        self.hub = Hub(faults)
        self.holds = Holds()
        self.executor = Executor(self.catalog, self.hub, faults, self.holds, output_dir=dirs.output,
                                 input_dir=dirs.input, temp_dir=dirs.temp,
                                 step_time=step_time, previews=previews,
                                 model_switch_time=model_switch_time, stats=self.stats)
        self._worker: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------

    def start_worker(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._work(), name="emulator-worker")

    async def stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None

    async def restart(self) -> None:
        """Lose queue, running job and history; cut sockets; wipe temp; keep files."""
        await self.stop_worker()
        self.hub.drop_all()
        if self.stats.busy_now:
            self.stats.job_finished("lost")
        self.queue.reset()
        self.queue.wakeup = asyncio.Event()
        self.executor.reset()
        wipe_temp(self.dirs.temp)
        self.start_worker()

    # --- queue operations --------------------------------------------------

    async def broadcast_status(self) -> None:
        await self.hub.send("status", {"status": self.queue.queue_info()})

    async def submit(self, body: Any) -> tuple[int, dict[str, Any]]:
        """POST /prompt semantics (server.py post_prompt)."""
        if not isinstance(body, dict):
            body = {}  # ComfyUI's membership tests fail on it: "no prompt" (400)
        if "number" in body:
            number: float = float(body["number"])
        else:
            number = self.queue.next_number(bool(body.get("front")))
        if "prompt" not in body:
            self.stats.prompts_rejected += 1
            error = {"type": "no_prompt", "message": "No prompt provided",
                     "details": "No prompt provided", "extra_info": {}}
            return 400, {"error": error, "node_errors": {}}
        prompt = body["prompt"]
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        verdict = Validator(self.catalog, self.dirs.input).validate_prompt(
            prompt, body.get("partial_execution_targets"))
        if not verdict.ok:
            self.stats.prompts_rejected += 1
            return 400, {"error": verdict.error, "node_errors": verdict.node_errors}
        extra = dict(body.get("extra_data") or {})
        if "client_id" in body:
            extra["client_id"] = body["client_id"]
        self.queue.put(QueueItem(number, prompt_id, prompt, extra, verdict.outputs))
        self.stats.prompts_accepted += 1
        # Jobs queued or running right now: what a client's GPU bound must cap.
        self.stats.max_outstanding = max(self.stats.max_outstanding,
                                         len(self.queue.pending) + (self.queue.running is not None))
        await self.broadcast_status()
        return 200, {"prompt_id": prompt_id, "number": number, "node_errors": verdict.node_errors}

    async def delete_pending(self, ids: list[Any]) -> None:
        for prompt_id in ids:
            if self.queue.delete_pending(str(prompt_id)):
                await self.broadcast_status()

    async def clear_pending(self) -> None:
        self.queue.clear_pending()
        await self.broadcast_status()

    def interrupt(self, prompt_id: str | None) -> None:
        """No id: whatever runs; with an id: only if that prompt is running."""
        running = self.queue.running
        if prompt_id and (running is None or running.prompt_id != prompt_id):
            return
        self.executor.interrupt_requested = True
        if running is not None:
            self.holds.wake(running.prompt_id)  # a held job is interrupted where it waits

    # --- the worker --------------------------------------------------------

    async def _work(self) -> None:
        while True:
            item = self.queue.pop()
            if item is None:
                await self.queue.wakeup.wait()
                continue
            self.stats.job_started()
            await self.broadcast_status()
            try:
                outcome = await self.executor.execute(item)
            except Exception:  # an emulator bug must not kill the "GPU"
                log.exception("emulator failed to execute %s", item.prompt_id)
                outcome = Outcome("error", {"outputs": {}, "meta": {}}, [])
            status = {"status_str": "success" if outcome.status == "success" else "error",
                      "completed": outcome.status == "success", "messages": outcome.messages}
            self.queue.task_done(item, outcome.history, status)
            self.stats.job_finished(outcome.status)
            await self.broadcast_status()
            if item.client_id is not None:
                await self.hub.send("executing", {"node": None, "prompt_id": item.prompt_id}, item.client_id)
            self.executor.client_id = None


def wipe_temp(temp: Path) -> None:
    """ComfyUI empties temp/ at start-up."""
    if temp.exists():
        shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True, exist_ok=True)
