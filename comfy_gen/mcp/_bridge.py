"""Run a blocking core call from an async tool: events out, cancellation in.

The core (``service.generate``, ComfyUI client calls) is synchronous and emits
events on its own thread. ``run_blocking`` runs it in a worker thread, carries
each event to the event loop through a memory stream (the worker never waits on
the client), and turns the MCP cancellation of the tool call into the service's
``CancelToken``. On cancellation it waits for the worker to finish: the service
then cancels only our prompt on ComfyUI and removes partial output before the
call is reported cancelled.
"""

from __future__ import annotations

import math
import time
from typing import Any, Awaitable, Callable, TypeVar

import anyio
import anyio.to_thread
from anyio import from_thread

from comfy_gen.service import CancelToken

T = TypeVar("T")
EventSink = Callable[[Any], None]


async def run_blocking(fn: Callable[[CancelToken, EventSink], T],
                       on_event: Callable[[Any], Awaitable[None]] | None = None) -> T:
    """``fn(token, emit)`` in a worker thread; ``on_event`` gets each emitted event on the loop."""
    token = CancelToken()
    send, receive = anyio.create_memory_object_stream[Any](math.inf)
    outcome: dict[str, Any] = {}

    def emit(event: Any) -> None:
        try:
            from_thread.run_sync(send.send_nowait, event)
        except Exception:  # the loop is gone or the stream closed: nobody is listening any more
            pass

    def work() -> None:
        try:
            outcome["value"] = fn(token, emit)
        except BaseException as exc:  # re-raised on the loop, below
            outcome["error"] = exc

    async def worker(done: anyio.Event) -> None:
        # Not abandoned on cancel: the thread always finishes (the token makes it quick).
        await anyio.to_thread.run_sync(work)
        send.close()
        done.set()

    async def pump() -> None:
        async for event in receive:
            if on_event is not None:
                await on_event(event)

    done = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(worker, done)
        group.start_soon(pump)
        try:
            await done.wait()
        except anyio.get_cancelled_exc_class():
            token.cancel()
            raise
    receive.close()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


class SeedProgress:
    """Events in the seed's ``progress_updates`` shapes, plus MCP progress values.

    Shapes: connected, start, node, progress (step, max_steps, percent, eta_seconds),
    cached, complete (elapsed_seconds), error. MCP progress must grow with every
    notification, so sampling steps are counted across samplers and attempts.
    """

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self._started: dict[str | None, float] = {}
        self._done_steps = 0       # steps of samplers that finished
        self._last_max = 0
        self._last_step = 0
        self.position = 0.0        # the last progress value sent

    def update(self, event: Any) -> dict[str, Any] | None:
        """The seed-shaped update for a core event (None: not one the seed reports)."""
        kind, pid = event.type, getattr(event, "prompt_id", None)
        data: dict[str, Any] | None = None
        if kind == "status" and getattr(event, "sid", None):
            data = {"type": "connected", "message": "Connected to ComfyUI"}
        elif kind == "execution_start":
            self._started[pid] = time.monotonic()
            data = {"type": "start", "prompt_id": pid, "message": "Generation started"}
        elif kind == "executing" and event.node is not None:
            data = {"type": "node", "prompt_id": pid, "node": event.node, "message": f"Executing node {event.node}"}
        elif kind == "executing":
            elapsed = time.monotonic() - self._started.get(pid, time.monotonic())
            data = {"type": "complete", "prompt_id": pid, "elapsed_seconds": round(elapsed, 2),
                    "message": f"Generation complete in {elapsed:.1f}s"}
        elif kind == "progress":
            data = self._progress(event)
        elif kind == "execution_cached" and event.nodes:
            data = {"type": "cached", "prompt_id": pid, "nodes": list(event.nodes),
                    "message": f"{len(event.nodes)} node(s) cached"}
        elif kind in ("execution_error", "execution_interrupted"):
            message = getattr(event, "exception_message", None) or ("Interrupted" if "interrupted" in kind
                                                                     else "Execution failed")
            data = {"type": "error", "prompt_id": pid, "node": getattr(event, "node_id", None),
                    "node_type": getattr(event, "node_type", None), "message": message}
        if data is not None:
            self.updates.append(data)
        return data

    def _progress(self, event: Any) -> dict[str, Any]:
        if event.step < self._last_step or event.max != self._last_max:
            self._done_steps += self._last_step  # a new sampler (or attempt) began
        self._last_step, self._last_max = event.step, event.max
        percent = round(100 * event.step / event.max, 1) if event.max else 0.0
        return {"type": "progress", "prompt_id": event.prompt_id, "node": event.node, "step": event.step,
                "max_steps": event.max, "percent": percent,
                "eta_seconds": round(event.eta_seconds, 2) if event.eta_seconds is not None else None,
                "message": f"Sampling: {event.step}/{event.max} steps ({percent:.0f}%)"}

    def notification(self, data: dict[str, Any]) -> tuple[float, float | None, str] | None:
        """(progress, total, message) for an MCP progress notification, or None to skip
        (a value that would not grow)."""
        if data["type"] == "progress":
            value = float(self._done_steps + data["step"])
            total: float | None = float(self._done_steps + data["max_steps"])
        else:
            value, total = self.position + 0.001, None  # a phase change: the smallest step forward
        if value <= self.position:
            return None
        self.position = value
        return value, total, data["message"]
