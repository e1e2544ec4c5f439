"""The in-memory queue, history and statistics (ComfyUI's PromptQueue).

Everything here lives on the emulator's event loop thread; nothing is
persisted, so a restart loses it all, as the real server does (captures/305-307).
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

#: ComfyUI keeps at most this many history entries (execution.py).
MAXIMUM_HISTORY_SIZE = 10000
#: Model switches kept in ``Stats.model_log`` (the count has no limit).
MAX_MODEL_LOG = 1000


@dataclass
class QueueItem:
    number: float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    def as_list(self) -> list[Any]:
        """The wire form: ``[number, prompt_id, prompt, extra_data, outputs_to_execute]``."""
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]

    @property
    def client_id(self) -> str | None:
        value = self.extra_data.get("client_id")
        return str(value) if value is not None else None


@dataclass
class Stats:
    """Counters for tests and GPU-busy benchmarks (GET /_emulator/stats)."""

    jobs_started: int = 0
    jobs_completed: int = 0
    jobs_failed: int = 0
    jobs_interrupted: int = 0
    jobs_lost: int = 0
    prompts_accepted: int = 0
    prompts_rejected: int = 0
    faults_injected: int = 0
    busy: list[list[float]] = field(default_factory=list)
    max_concurrency: int = 0
    max_outstanding: int = 0
    model_switches: int = 0   # jobs that loaded models (the first load counts: nothing was loaded)
    model_log: list[dict[str, Any]] = field(default_factory=list)   # the latest switches, oldest first
    loaded_models: list[str] = field(default_factory=list)
    _busy_since: float | None = None

    def model_switched(self, prompt_id: str, models: list[str]) -> None:
        self.model_switches += 1
        self.loaded_models = list(models)
        self.model_log.append({"prompt_id": prompt_id, "models": list(models)})
        del self.model_log[:-MAX_MODEL_LOG]

    def job_started(self) -> None:
        self.jobs_started += 1
        self._busy_since = time.monotonic()
        self.max_concurrency = max(self.max_concurrency, 1)

    def job_finished(self, outcome: str) -> None:
        if outcome == "success":
            self.jobs_completed += 1
        elif outcome == "interrupted":
            self.jobs_interrupted += 1
        elif outcome == "lost":
            self.jobs_lost += 1
        else:
            self.jobs_failed += 1
        self._close_interval()

    @property
    def busy_now(self) -> bool:
        return self._busy_since is not None

    def _close_interval(self) -> None:
        if self._busy_since is not None:
            self.busy.append([self._busy_since, time.monotonic()])
            self._busy_since = None

    def snapshot(self) -> dict[str, Any]:
        busy = [list(b) for b in self.busy]
        if self._busy_since is not None:  # the running job counts up to now
            busy.append([self._busy_since, time.monotonic()])
        return {
            "jobs_started": self.jobs_started, "jobs_completed": self.jobs_completed,
            "jobs_failed": self.jobs_failed, "jobs_interrupted": self.jobs_interrupted,
            "jobs_lost": self.jobs_lost,
            "prompts_accepted": self.prompts_accepted, "prompts_rejected": self.prompts_rejected,
            "faults_injected": self.faults_injected, "busy": busy,
            "busy_seconds": round(sum(end - start for start, end in busy), 6),
            "max_concurrency": self.max_concurrency, "max_outstanding": self.max_outstanding,
            "model_switches": self.model_switches, "loaded_models": list(self.loaded_models),
            "model_log": [dict(entry) for entry in self.model_log],
            "clock": "time.monotonic",
        }


class PromptQueue:
    """A priority heap of pending prompts, the running one, and the history."""

    def __init__(self) -> None:
        self.number = 0
        self.pending: list[tuple[float, int, QueueItem]] = []
        self.running: QueueItem | None = None
        self.history: dict[str, dict[str, Any]] = {}
        self._seq = itertools.count()
        self.wakeup = asyncio.Event()

    def next_number(self, front: bool) -> int:
        """The global counter; rejected prompts consume a number too (captures/160+)."""
        number = self.number
        self.number += 1
        return -number if front else number

    def put(self, item: QueueItem) -> None:
        heapq.heappush(self.pending, (item.number, next(self._seq), item))
        self.wakeup.set()

    def pop(self) -> QueueItem | None:
        if not self.pending:
            self.wakeup.clear()
            return None
        _, _, item = heapq.heappop(self.pending)
        self.running = item
        return item

    def task_done(self, item: QueueItem, result: dict[str, Any], status: dict[str, Any]) -> None:
        """Write the history entry; called before ``executing null`` is sent."""
        self.running = None
        if len(self.history) > MAXIMUM_HISTORY_SIZE:
            self.history.pop(next(iter(self.history)))
        # A reused prompt_id overwrites the entry in place (captures/186).
        entry = {"prompt": item.as_list(), "outputs": {}, "status": status}
        entry.update(result)
        self.history[item.prompt_id] = entry

    def remaining(self) -> int:
        return len(self.pending) + (1 if self.running is not None else 0)

    def queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": self.remaining()}}

    def current(self) -> dict[str, list[Any]]:
        running = [self.running.as_list()] if self.running is not None else []
        # Heap order, not sorted, exactly like ComfyUI (PROTOCOL quirk 3).
        pending = [entry[2].as_list() for entry in self.pending]
        return copy.deepcopy({"queue_running": running, "queue_pending": pending})

    def delete_pending(self, prompt_id: str) -> bool:
        for i, entry in enumerate(self.pending):
            if entry[2].prompt_id == prompt_id:
                self.pending.pop(i)
                heapq.heapify(self.pending)
                return True
        return False

    def clear_pending(self) -> None:
        self.pending.clear()

    def get_history(self, prompt_id: str | None = None, max_items: int | None = None,
                    offset: int = -1) -> dict[str, Any]:
        if prompt_id is not None:
            entry = self.history.get(prompt_id)
            return {prompt_id: copy.deepcopy(entry)} if entry is not None else {}
        if offset < 0 and max_items is not None:
            offset = len(self.history) - max_items
        out: dict[str, Any] = {}
        for i, key in enumerate(self.history):
            if i >= offset:
                out[key] = self.history[key]
                if max_items is not None and len(out) >= max_items:
                    break
        return copy.deepcopy(out)

    def reset(self) -> None:
        """What a restart loses: everything (captures/305-309)."""
        self.number = 0
        self.pending.clear()
        self.running = None
        self.history.clear()
        self.wakeup.clear()
