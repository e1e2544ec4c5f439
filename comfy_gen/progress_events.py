"""Progress events in the original ComfyGen's shapes (``--json-progress``, MCP ``progress_updates``).

The original's MCP client reported a job as a list of small dictionaries, each
with a ``type`` of ``connected``, ``start``, ``node``, ``progress`` (``step``,
``max_steps``, ``percent``, ``eta_seconds``), ``cached``, ``complete``
(``elapsed_seconds``) or ``error``, and a human ``message``. ``seed_event`` maps
one comfy-gen event onto that shape (None for events the original had no shape
for); ``SeedEvents`` adds the two things a single event cannot know: when the
job started (for ``elapsed_seconds``) and whether ``connected`` was said yet.
The CLI and the MCP server both use these, so their dictionaries are the same.

    stream = SeedEvents()
    updates = [d for event in events for d in stream(event)]
"""

from __future__ import annotations

import time
from typing import Any, Callable

from comfy_gen.comfyui import events as ev

SEED_TYPES = ("connected", "start", "node", "progress", "cached", "complete", "error")


def seed_event(event: ev.Event, *, elapsed_seconds: float | None = None) -> dict[str, Any] | None:
    """The seed-shaped dictionary for ``event``, or None when it has no seed shape.

    ``elapsed_seconds`` (the job's run time so far) goes into ``complete``.
    """
    base: dict[str, Any] = {"prompt_id": event.prompt_id}
    if isinstance(event, ev.Status):
        if event.sid is None:
            return None  # queue broadcasts: the original printed nothing for them
        return {"type": "connected", **base, "client_id": event.sid, "message": "Connected to ComfyUI"}
    if isinstance(event, ev.ExecutionStart):
        return {"type": "start", **base, "message": "Generation started"}
    if isinstance(event, ev.ExecutionCached):
        nodes = list(event.nodes)
        return {"type": "cached", **base, "cached_nodes": nodes, "count": len(nodes),
                "message": f"Using cached results for {len(nodes)} node(s)"}
    if isinstance(event, ev.Progress):
        percent = int(round(100 * event.fraction))
        eta = None if event.eta_seconds is None else round(event.eta_seconds, 1)
        return {"type": "progress", **base, "node": event.node, "step": event.step, "max_steps": event.max,
                "percent": percent, "eta_seconds": eta,
                "message": f"Sampling: {event.step}/{event.max} steps ({percent}%)"}
    if isinstance(event, ev.Executing):
        if event.node is None:
            if event.prompt_id is None:
                return None
            elapsed = None if elapsed_seconds is None else round(elapsed_seconds, 2)
            done = f" in {elapsed:.1f}s" if elapsed is not None else ""
            return {"type": "complete", **base, "elapsed_seconds": elapsed, "message": f"Generation complete{done}"}
        return {"type": "node", **base, "node": event.node, "status": "executing",
                "message": f"Executing node {event.node}"}
    if isinstance(event, ev.Executed):
        return {"type": "node", **base, "node": event.node, "status": "executed",
                "message": f"Completed node {event.node}"}
    if isinstance(event, ev.ExecutionError):
        what = ": ".join(x for x in (event.exception_type, event.exception_message) if x) or "execution error"
        where = f"{event.node_type or 'node'} {event.node_id}" if event.node_id else "the workflow"
        return {"type": "error", **base, "node": event.node_id, "node_type": event.node_type,
                "exception_type": event.exception_type, "message": f"Error in {where}: {what}"}
    if isinstance(event, ev.ExecutionInterrupted):
        return {"type": "error", **base, "node": event.node_id, "node_type": event.node_type,
                "exception_type": "interrupted", "message": "Execution interrupted"}
    return None


class SeedEvents:
    """Turns a job's events into seed dictionaries, in order: ``connected`` once
    (from ComfyUI's own status message, or before the first other update), then
    what ``seed_event`` gives, with ``elapsed_seconds`` measured from ``start``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._connected = False
        self._started: dict[str | None, float] = {}

    def __call__(self, event: ev.Event) -> list[dict[str, Any]]:
        now = self._clock()
        if isinstance(event, ev.ExecutionStart):
            self._started[event.prompt_id] = now
        started = self._started.get(event.prompt_id)
        data = seed_event(event, elapsed_seconds=None if started is None else now - started)
        if data is None:
            return []
        out = []
        if data["type"] == "connected":
            if self._connected:
                return []
        elif not self._connected:
            out.append({"type": "connected", "prompt_id": event.prompt_id, "client_id": None,
                        "message": "Connected to ComfyUI"})
        self._connected = True
        out.append(data)
        return out


__all__ = ["SEED_TYPES", "SeedEvents", "seed_event"]
