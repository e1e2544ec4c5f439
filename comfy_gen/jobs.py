"""Generation jobs for server faces (the HTTP API, the MCP server).

A ``JobManager`` runs ``comfy_gen.service.generate`` on a bounded thread pool
and keeps what a client polls for: status (queued, running, completed, failed,
cancelled), progress (percent, step, node) from the service's ``on_event``, the
result or the error. It adds no GPU bound of its own: the service holds the
backend's ``GpuGate``, the same in-process semaphore and cross-process slots a
flow takes, so API jobs wait behind flow items and the reverse.

Listeners (``Job.listen``) get a snapshot now and after every change, on the
thread that made it; a client may listen before the job starts. Cancelling a
job sets its ``CancelToken``: a queued job never starts, a running one cancels
only its own prompt on ComfyUI (the service's rule).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Literal

from comfy_gen.errors import ComfyGenError, ExecutionInterrupted, NotFound, ServiceBusy
from comfy_gen.urls import redact_text

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.comfyui.events import Event
    from comfy_gen.config import Settings
    from comfy_gen.service import GenerateRequest, GenerateResult

log = logging.getLogger(__name__)

JobStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
JOB_PREFIX = "gen_"

Listener = Callable[[dict[str, Any]], None]
Runner = Callable[..., "GenerateResult"]


def new_job_id() -> str:
    """A job id that is also a valid catalog generation id (letters, digits, '_')."""
    return JOB_PREFIX + uuid.uuid4().hex


class Job:
    """One generation request and what became of it (thread-safe)."""

    def __init__(self, request: "GenerateRequest", *, meta: dict[str, Any] | None = None) -> None:
        from comfy_gen.service import CancelToken

        # The request's catalog id, when the face picked one, names the job too: one id for
        # polling, the stored image and favorites.
        self.id = request.generation_id or new_job_id()
        self.request = request
        self.meta: dict[str, Any] = dict(meta or {})
        self.token = CancelToken()
        self.status: JobStatus = "queued"
        self.created_at = time.time()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.progress: dict[str, Any] = {"percent": 0.0, "step": 0, "max_steps": 0, "node": None,
                                         "attempt": 0, "message": None}
        self.result: "GenerateResult | None" = None
        self.error: dict[str, Any] | None = None
        self.version = 0            # bumped on every change: listeners and pollers see the order
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._listeners: list[Listener] = []

    # -- reading -------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> dict[str, Any]:
        return {
            "id": self.id, "status": self.status, "version": self.version,
            "progress": dict(self.progress), "created_at": self.created_at,
            "started_at": self.started_at, "finished_at": self.finished_at,
            "result": self.result.to_dict() if self.result is not None else None,
            "error": self.error, "meta": dict(self.meta),
        }

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is finished; False on timeout."""
        return self._done.wait(timeout)

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(snapshot)`` now and on every change; returns an unsubscribe function.
        A finished job delivers its final snapshot once."""
        with self._lock:
            snap = self._snapshot()
            if not self.finished:
                self._listeners.append(listener)
        listener(snap)
        return lambda: self._unlisten(listener)

    def _unlisten(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    # -- changing ------------------------------------------------------------------
    def _update(self, **changes: Any) -> None:
        with self._lock:
            if self.finished:  # terminal states are final (a late progress event changes nothing)
                return
            progress = changes.pop("progress", None)
            if progress:
                self.progress.update(progress)
            for key, value in changes.items():
                setattr(self, key, value)
            self.version += 1
            snap = self._snapshot()
            listeners = list(self._listeners)
            if self.finished:
                self._listeners.clear()
                self._done.set()
        for listener in listeners:
            try:
                listener(snap)
            except Exception:  # noqa: BLE001 - one broken listener must not stop the job
                log.exception("job listener failed")

    def on_event(self, event: "Event") -> None:
        """The service's events as progress: percent and step of the current attempt, the node."""
        kind = event.type
        if kind == "progress":
            step, top = int(getattr(event, "step", 0)), int(getattr(event, "max", 0))
            percent = round(min(99.0, 100.0 * step / top), 1) if top else self.progress["percent"]
            self._update(progress={"percent": percent, "step": step, "max_steps": top,
                                   "node": getattr(event, "node", None)})
        elif kind == "executing" and getattr(event, "node", None):
            self._update(progress={"node": getattr(event, "node")})
        elif kind == "execution_start":
            self._update(progress={"attempt": self.progress["attempt"] + 1, "percent": 0.0, "step": 0})
        elif kind in ("info", "warning"):
            self._update(progress={"message": getattr(event, "message", None)})


class JobManager:
    """Runs generation jobs on ``workers`` threads; at most ``max_jobs`` unfinished at once.

    Usage::

        jobs = JobManager(settings)
        job = jobs.submit(GenerateRequest(...))       # ServiceBusy when full
        jobs.get(job.id).snapshot() ; jobs.cancel(job.id) ; jobs.close()
    """

    def __init__(self, settings: "Settings", *, workers: int | None = None, max_jobs: int | None = None,
                 keep: int = 1000, runner: Runner | None = None) -> None:
        self.settings = settings
        self.workers = workers or settings.api_workers
        self.max_jobs = max_jobs or settings.api_max_jobs
        self.keep = keep
        self._runner = runner
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="comfy-gen-job")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._closed = False

    # -- the face's calls -------------------------------------------------------------
    def submit(self, request: "GenerateRequest", *, meta: dict[str, Any] | None = None) -> Job:
        """Queue ``request``; the job is named by ``request.generation_id`` when set (the catalog's id)."""
        job = Job(request, meta=meta)
        with self._lock:
            if job.id in self._jobs:
                raise RuntimeError(f"job id {job.id} is already in use")
            if self._closed:
                raise ServiceBusy("The server is shutting down; no new generations are accepted")
            active = sum(1 for j in self._jobs.values() if not j.finished)
            if active >= self.max_jobs:
                raise ServiceBusy(f"{active} generations are queued or running (the limit is {self.max_jobs}); "
                                  "try again later")
            self._jobs[job.id] = job
            self._forget_old()
        self._pool.submit(self._run, job)
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"No generation job {job_id!r}", kind="job", id=job_id)
        return job

    def find(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job (ours only); a finished job is returned as it is."""
        job = self.get(job_id)
        if job.finished:
            return job
        job.token.cancel()
        if job.status == "queued":
            # It may start between the check and now; _run sees the token and stops.
            job._update(status="cancelled", finished_at=time.time(),
                        error={"error": "ExecutionInterrupted", "message": "Cancelled before it started"})
        return job

    def close(self, *, cancel: bool = True, wait: bool = True) -> None:
        """Stop accepting jobs; cancel the unfinished ones (their ComfyUI prompts too) and wait."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
        if cancel:
            for job in jobs:
                if not job.finished:
                    self.cancel(job.id)
        self._pool.shutdown(wait=wait, cancel_futures=True)

    # -- the worker -------------------------------------------------------------------
    def _run(self, job: Job) -> None:
        if job.token.cancelled or job.finished:
            return
        job._update(status="running", started_at=time.time())
        try:
            runner = self._runner or _default_runner()
            result = runner(job.request, settings=self.settings, on_event=job.on_event, cancel=job.token)
            job._update(status="completed", result=result, finished_at=time.time(),
                        progress={"percent": 100.0, "node": None})
        except ExecutionInterrupted as exc:
            status: JobStatus = "cancelled" if job.token.cancelled else "failed"
            job._update(status=status, error=_error_body(exc), finished_at=time.time())
        except ComfyGenError as exc:
            job._update(status="failed", error=_error_body(exc), finished_at=time.time())
        except Exception as exc:  # noqa: BLE001 - a bug must fail the job, not hang its clients
            log.exception("generation job %s failed unexpectedly", job.id)
            job._update(status="failed", finished_at=time.time(),
                        error={"error": "InternalError", "message": redact_text(f"{type(exc).__name__}: {exc}")})

    def _forget_old(self) -> None:
        # Bounded memory: drop the oldest finished jobs beyond `keep` (caller holds the lock).
        finished = [jid for jid, j in self._jobs.items() if j.finished]
        for jid in finished[: max(0, len(self._jobs) - self.keep)]:
            del self._jobs[jid]


def _error_body(exc: ComfyGenError) -> dict[str, Any]:
    data = exc.to_dict()
    data["message"] = redact_text(str(data.get("message", "")))
    return data


def _default_runner() -> Runner:
    from comfy_gen.service import generate

    return generate
