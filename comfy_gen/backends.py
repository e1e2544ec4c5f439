"""The ComfyUI backends of a run, behind one object.

A ``Backend`` is a named ComfyUI server with its client and its GPU gate (the
bound on outstanding jobs). A ``BackendPool`` owns the backends a run uses,
creates each lazily and once, and answers ``lease(preferred)`` with the backend
an item renders on. Today it returns the preferred backend (the recipe's
hash-based placement); dispatch by free capacity and failover are built on
this same call, so item identity never depends on where an item renders.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ContextManager, Iterator

from comfy_gen.config import Settings
from comfy_gen.errors import ExecutionInterrupted

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.comfyui import ComfyUIClient
    from comfy_gen.gate import GpuGate


@dataclass(frozen=True)
class Backend:
    """One ComfyUI server as a run sees it."""

    name: str
    url: str
    client: "ComfyUIClient"
    gate: ContextManager[Any]


class BackendPool:
    """Backends by name, created on first use; ``cancelled`` stops new jobs at every gate."""

    def __init__(self, settings: Settings, *, cancelled: threading.Event | None = None) -> None:
        self.settings = settings
        self.cancelled = cancelled or threading.Event()
        self._backends: dict[str, Backend] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Backend:
        """The backend called ``name`` (ConfigError for an unknown name)."""
        with self._lock:
            backend = self._backends.get(name)
            if backend is None:
                backend = self._backends[name] = self._open(name)
            return backend

    def lease(self, preferred: str) -> Backend:
        """The backend an item renders on: today its preferred (placed) backend."""
        return self.get(preferred)

    def activity(self) -> "GateActivity":
        """Jobs holding a GPU slot (queued or rendering in ComfyUI) and items waiting
        for one, over every backend opened so far."""
        holding = waiting = 0
        for backend in self:
            if isinstance(backend.gate, _CancellableGate):
                holding += backend.gate.holding
                waiting += backend.gate.waiting
        return GateActivity(holding=holding, waiting=waiting)

    def __iter__(self) -> Iterator[Backend]:
        with self._lock:
            return iter(list(self._backends.values()))

    def close(self) -> None:
        """Close the clients, unless the run was cancelled: items still in flight
        learn of their interrupted jobs through them (the process is exiting anyway)."""
        if self.cancelled.is_set():
            return
        for backend in self:
            backend.client.close()

    def _open(self, name: str) -> Backend:
        from comfy_gen.comfyui import ComfyUIClient
        from comfy_gen.gate import gate_for

        s = self.settings
        url = s.backend_url(name)
        gate = gate_for(s, url, name)
        return Backend(name=name, url=url, client=ComfyUIClient.from_settings(s, backend=name),
                       gate=_CancellableGate(gate, self.cancelled))


@dataclass(frozen=True)
class GateActivity:
    """What the GPU gates of a run are doing right now (progress reports)."""

    holding: int = 0   # jobs queued or rendering in ComfyUI (at most the GPU limit per backend)
    waiting: int = 0   # items with a job ready, waiting for a slot ("Waiting for GPU")


class _CancellableGate:
    """The GPU gate, refusing to let a job through once the run is cancelled
    (items already waiting for a slot must not queue new jobs after a Ctrl-C).
    Counts this run's threads waiting for a slot and holding one."""

    def __init__(self, gate: "GpuGate", cancelled: threading.Event) -> None:
        self._gate = gate
        self._cancelled = cancelled
        self._lock = threading.Lock()
        self.waiting = 0
        self.holding = 0

    def _count(self, waiting: int = 0, holding: int = 0) -> None:
        with self._lock:
            self.waiting += waiting
            self.holding += holding

    def __enter__(self) -> "_CancellableGate":
        self._count(waiting=1)
        try:
            self._gate.__enter__()
        finally:
            self._count(waiting=-1)
        if self._cancelled.is_set():
            self._gate.__exit__(None, None, None)
            raise ExecutionInterrupted("The run was cancelled before this job was queued")
        self._count(holding=1)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._gate.__exit__(*exc)
        finally:
            self._count(holding=-1)
