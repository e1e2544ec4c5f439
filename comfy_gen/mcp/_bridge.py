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
    value: T = outcome["value"]
    return value


class SeedProgress:
    """A job's events as the seed's ``progress_updates`` (``comfy_gen.progress_events``,
    the same dictionaries the CLI's ``--json-progress`` prints) and as MCP progress
    notifications. MCP progress must grow with every notification, so sampling steps
    are counted across samplers and attempts, and other updates move it a hair.
    """

    def __init__(self) -> None:
        from comfy_gen.progress_events import SeedEvents

        self._stream = SeedEvents()
        self.updates: list[dict[str, Any]] = []
        self._done_steps = 0       # steps of samplers that finished
        self._last = (0, 0)        # (step, max) of the current sampler
        self.position = 0.0        # the last progress value sent

    def __call__(self, event: Any) -> list[tuple[float, float | None, str]]:
        """Record the event's seed updates; the notifications to send for them."""
        notes = []
        for data in self._stream(event):
            self.updates.append(data)
            note = self._notification(data)
            if note is not None:
                notes.append(note)
        return notes

    def _notification(self, data: dict[str, Any]) -> tuple[float, float | None, str] | None:
        total: float | None = None
        if data["type"] == "progress":
            step, most = data["step"], data["max_steps"]
            if step < self._last[0] or most != self._last[1]:
                self._done_steps += self._last[0]  # a new sampler (or attempt) began
            self._last = (step, most)
            value, total = float(self._done_steps + step), float(self._done_steps + most)
        else:
            value = self.position + 0.001  # a phase change: the smallest step forward
        if value <= self.position:
            return None
        self.position = value
        return value, total, str(data.get("message") or data["type"])
