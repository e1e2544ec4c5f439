"""The ComfyUI backends of a run, behind one object: dispatch and failover.

A ``Backend`` is a named ComfyUI server with its client and its GPU gate (the
bound on outstanding jobs: ``capacity`` from settings, else ``gpu_limit``). A
``BackendPool`` owns the backends a run uses, creates each lazily and once, and
answers ``lease(candidates, models=...)`` with a ``Lease`` on the backend an item
renders on:

* dispatch: among the candidates that are up and have a free slot (jobs holding
  or waiting for the gate, plus leases not yet at the gate, below capacity), the
  one with the least outstanding work (leases not yet closed); ties go to the
  backend whose last leased job used the same models (ComfyUI keeps them
  loaded), then by name. When every candidate is full the lease waits on a
  ``Condition`` that each released slot and closed lease notifies.
* failover: ``mark_down(name)`` takes a backend out of dispatch; a later lease
  probes it (one ``/system_stats`` try) once its backoff has passed (1 s,
  doubling up to 30 s), and a backend that answers is used again. When every
  candidate is down, each is probed at once (unless it failed a probe since it
  went down); when none answers, ``lease`` raises ``AllBackendsDown``: the run
  fails fast instead of retrying.

Where an item renders never enters its identity, job key or prompt ids, so the
cache and resume are the same whichever backend rendered it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterator, Sequence

from comfy_gen.config import Settings
from comfy_gen.errors import AllBackendsDown, ExecutionInterrupted
from comfy_gen.urls import redact_url

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.comfyui import ComfyUIClient
    from comfy_gen.gate import GpuGate

log = logging.getLogger(__name__)

#: Backoff between probes of a backend marked down (s): first, then doubling to the cap.
PROBE_BACKOFF = 1.0
PROBE_BACKOFF_MAX = 30.0
#: A waiting lease re-checks at least this often (s): cancellation, probes due, and
#: slots freed by another run of this process (its gates do not notify this pool).
_RECHECK = 0.5


@dataclass(frozen=True)
class Backend:
    """One ComfyUI server as a run sees it."""

    name: str
    url: str
    client: "ComfyUIClient"
    gate: ContextManager[Any]
    capacity: int = 2
    tags: tuple[str, ...] = ()


@dataclass
class _State:
    """What the pool knows about one backend (guarded by the pool's condition)."""

    reserved: int = 0            # leases given out whose gate was not entered yet
    outstanding: int = 0         # leases not closed yet (queued, rendering, validating, saving)
    last_models: tuple[str, ...] = ()
    leased: int = 0              # leases ever given (reports, tests)
    down: bool = False
    down_reason: str = ""
    next_probe: float = 0.0
    backoff: float = PROBE_BACKOFF
    probing: bool = False
    probed: bool = False         # a probe failed since it was marked down


def _choose(free: list[str], states: dict[str, "_State"], backends: dict[str, "Backend"],
            models: tuple[str, ...]) -> str:
    """Among backends with a free slot: one that already has the item's models
    loaded, else the least outstanding work; ties by name (``affinity.prefer``)."""
    from comfy_gen.affinity import BackendState, prefer

    candidates = [BackendState(n, states[n].outstanding, backends[n].capacity, states[n].last_models or None)
                  for n in sorted(free)]
    chosen = prefer(candidates, models or None)
    assert chosen is not None  # free is never empty here
    return chosen.name


class Lease:
    """A backend chosen for one item. ``gate`` is the backend's GPU gate; its first
    entry turns the lease's reserved slot into a held one. ``close`` (or leaving
    the ``with`` block) ends the item's claim on the backend."""

    def __init__(self, pool: "BackendPool", backend: Backend) -> None:
        self.pool = pool
        self.backend = backend
        self._reserved = True
        self._closed = False
        self.gate: ContextManager[Any] = _LeaseGate(self)

    def _claim_reservation(self) -> None:
        with self.pool._cond:
            if self._reserved:
                self._reserved = False
                self.pool._states[self.backend.name].reserved -= 1

    def close(self) -> None:
        with self.pool._cond:
            if self._closed:
                return
            self._closed = True
            state = self.pool._states[self.backend.name]
            if self._reserved:
                self._reserved = False
                state.reserved -= 1
            state.outstanding -= 1
            self.pool._cond.notify_all()

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _LeaseGate:
    def __init__(self, lease: Lease) -> None:
        self._lease = lease

    def __enter__(self) -> Any:
        # Counted as waiting by the gate before the reservation is given up, so
        # the pool never sees the slot as free in between.
        gate = self._lease.backend.gate
        if isinstance(gate, _CancellableGate):
            return gate.enter(on_waiting=self._lease._claim_reservation)
        self._lease._claim_reservation()
        return gate.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        error = exc[1] if len(exc) > 1 else None
        if isinstance(error, BaseException) and backend_failed(error):
            # Down before its slot is given back: no other item is dispatched to a dead server.
            self._lease.pool.mark_down(self._lease.backend.name, short_reason(error))
        return self._lease.backend.gate.__exit__(*exc)


class BackendPool:
    """Backends by name, created on first use; ``cancelled`` stops new jobs at every gate."""

    def __init__(self, settings: Settings, *, cancelled: threading.Event | None = None) -> None:
        self.settings = settings
        self.cancelled = cancelled or threading.Event()
        self._backends: dict[str, Backend] = {}
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()
        self._cond = threading.Condition()

    def get(self, name: str) -> Backend:
        """The backend called ``name`` (ConfigError for an unknown name)."""
        with self._lock:
            backend = self._backends.get(name)
            if backend is None:
                backend = self._backends[name] = self._open(name)
                with self._cond:
                    self._states.setdefault(name, _State())
            return backend

    # -- dispatch ------------------------------------------------------------------
    def lease(self, candidates: Sequence[str] | str, *, models: tuple[str, ...] = (),
              exclude: Sequence[str] = ()) -> Lease:
        """A lease on the candidate (not in ``exclude``) that is up, has a free slot
        and the least outstanding work; waits while all are full.

        Raises AllBackendsDown when every candidate is down (and none answers a
        probe), ExecutionInterrupted once the run is cancelled.
        """
        names = [n for n in dict.fromkeys([candidates] if isinstance(candidates, str) else candidates)
                 if n not in exclude]
        if not names:
            raise AllBackendsDown("No backend is left to render on (the item's backends failed)",
                                  backends=tuple(exclude))
        backends = {name: self.get(name) for name in names}
        models = tuple(models)
        thorough = False
        while True:
            if self.cancelled.is_set():
                raise ExecutionInterrupted("The run was cancelled before this item was queued")
            self._probe_due(names, thorough=thorough)
            with self._cond:
                up = [n for n in names if not self._states[n].down]
                if not up:
                    if any(self._states[n].probing for n in names):
                        self._cond.wait(_RECHECK)   # a probe under way decides
                        continue
                    unprobed = [n for n in names if not self._states[n].probed]
                    if unprobed:
                        # Fail fast only on evidence: each must have failed a probe
                        # since it went down (a 5xx streak is not a dead server).
                        for name in unprobed:
                            self._states[name].next_probe = 0.0
                        thorough = True
                        continue
                    raise self._all_down(names)
                free = [n for n in up if self._load(backends[n]) < backends[n].capacity]
                if free:
                    name = _choose(free, self._states, backends, models)
                    state = self._states[name]
                    state.reserved += 1
                    state.outstanding += 1
                    state.leased += 1
                    state.last_models = models
                    return Lease(self, backends[name])
                self._cond.wait(self._wait_time(names))

    def _load(self, backend: Backend) -> int:
        """Slots taken on ``backend`` by this pool: held, waited for, or reserved."""
        state = self._states[backend.name]
        gate = backend.gate
        if isinstance(gate, _CancellableGate):
            return state.reserved + gate.holding + gate.waiting
        return state.reserved

    def _wait_time(self, names: list[str]) -> float:
        now = time.monotonic()
        due = [self._states[n].next_probe - now for n in names if self._states[n].down]
        return max(0.01, min([_RECHECK, *due]))

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def wake(self) -> None:
        """Wake every waiting lease (the run was cancelled: they raise)."""
        self._notify()

    # -- failover ----------------------------------------------------------------
    def mark_down(self, name: str, reason: str = "") -> None:
        """Take ``name`` out of dispatch until a probe finds it up again."""
        with self._cond:
            state = self._states.setdefault(name, _State())
            if not state.down:
                state.down, state.backoff, state.probed = True, PROBE_BACKOFF, False
                log.warning("Backend %s is down%s; its items go to the other backends", name,
                            f" ({reason})" if reason else "")
            state.down_reason = reason or state.down_reason
            state.next_probe = time.monotonic() + state.backoff
            self._cond.notify_all()

    def is_down(self, name: str) -> bool:
        with self._cond:
            state = self._states.get(name)
            return bool(state and state.down)

    def all_down(self, names: Sequence[str]) -> bool:
        """Whether every backend in ``names`` is marked down."""
        with self._cond:
            return bool(names) and all(self._states.get(n, _State()).down for n in names)

    def _probe_due(self, names: list[str], *, thorough: bool = False) -> None:
        """Probe (outside the lock) each down backend whose backoff passed: one
        ``/system_stats`` try, or with the client's retries when ``thorough`` (the
        probe that decides whether the run fails fast)."""
        now = time.monotonic()
        due: list[str] = []
        with self._cond:
            for name in names:
                state = self._states[name]
                if state.down and not state.probing and state.next_probe <= now:
                    state.probing = True
                    due.append(name)
        for name in due:
            backend = self._backends[name]
            alive = False
            try:
                alive = _answers(backend.client) if thorough else backend.client.is_available()
            finally:
                with self._cond:
                    state = self._states[name]
                    state.probing = False
                    if alive:
                        state.down = False
                        log.warning("Backend %s is back; dispatching to it again", name)
                    else:
                        state.probed = True
                        state.backoff = min(state.backoff * 2, PROBE_BACKOFF_MAX)
                        state.next_probe = time.monotonic() + state.backoff
                    self._cond.notify_all()

    def _all_down(self, names: list[str]) -> AllBackendsDown:
        reasons = "; ".join(f"{n}: {self._states[n].down_reason or 'unreachable'}" for n in names)
        urls = ", ".join(f"{n}={redact_url(self._backends[n].url)}" for n in names)
        return AllBackendsDown(
            f"Every backend of this item is down ({reasons}); nothing more is queued, finished items are kept",
            backends=tuple(names),
            hint=f"Start the ComfyUI server(s) ({urls}) and run again: stored items are not rendered again.")

    def status(self) -> dict[str, dict[str, Any]]:
        """Per backend: leases given, outstanding, up or down (reports and tests)."""
        with self._cond:
            return {name: {"leased": s.leased, "outstanding": s.outstanding, "down": s.down}
                    for name, s in sorted(self._states.items())}

    # -- the rest --------------------------------------------------------------------
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
        self.wake()
        if self.cancelled.is_set():
            return
        for backend in self:
            backend.client.close()

    def _open(self, name: str) -> Backend:
        from comfy_gen.comfyui import ComfyUIClient
        from comfy_gen.gate import gate_for

        s = self.settings
        spec = s.backend_spec(name)
        capacity = spec.capacity or s.gpu_limit
        gate = gate_for(s, spec.url, name, limit=capacity)
        return Backend(name=name, url=spec.url, client=ComfyUIClient.from_settings(s, backend=name),
                       gate=_CancellableGate(gate, self.cancelled, on_change=self._notify),
                       capacity=capacity, tags=spec.tags)


@dataclass(frozen=True)
class GateActivity:
    """What the GPU gates of a run are doing right now (progress reports)."""

    holding: int = 0   # jobs queued or rendering in ComfyUI (at most the GPU limit per backend)
    waiting: int = 0   # items with a job ready, waiting for a slot ("Waiting for GPU")


@dataclass
class _CancellableGate:
    """The GPU gate, refusing to let a job through once the run is cancelled
    (items already waiting for a slot must not queue new jobs after a Ctrl-C).
    Counts this run's threads waiting for a slot and holding one, and tells the
    pool when a slot is given back (``on_change``)."""

    _gate: "GpuGate"
    _cancelled: threading.Event
    on_change: Callable[[], None] = lambda: None
    waiting: int = 0
    holding: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _count(self, waiting: int = 0, holding: int = 0) -> None:
        with self._lock:
            self.waiting += waiting
            self.holding += holding

    def enter(self, on_waiting: Callable[[], None] = lambda: None) -> "_CancellableGate":
        self._count(waiting=1)
        on_waiting()
        try:
            self._gate.__enter__()
        except BaseException:
            self._count(waiting=-1)
            raise
        # One step from waiting to holding: the pool never sees the slot free in between.
        self._count(waiting=-1, holding=1)
        if self._cancelled.is_set():
            self.__exit__(None, None, None)
            raise ExecutionInterrupted("The run was cancelled before this job was queued")
        return self

    def __enter__(self) -> "_CancellableGate":
        return self.enter()

    def __exit__(self, *exc: object) -> None:
        try:
            self._gate.__exit__(*exc)
        finally:
            self._count(holding=-1)
            self.on_change()


def _answers(client: "ComfyUIClient") -> bool:
    """Whether the server answers ``/system_stats`` within the client's retries."""
    from comfy_gen.errors import ComfyGenError

    try:
        client.system_stats()
    except ComfyGenError:
        return False
    return True


def short_reason(exc: BaseException) -> str:
    """The first clause of an error message, for "backend X is down (...)" lines."""
    return str(getattr(exc, "message", exc)).split(" (")[0][:160]


def backend_failed(exc: BaseException) -> bool:
    """Whether ``exc`` means the backend itself is gone (not this job's problem):
    the item may fail over to another backend."""
    from comfy_gen.errors import ComfyUIUnavailable

    return isinstance(exc, ComfyUIUnavailable)
