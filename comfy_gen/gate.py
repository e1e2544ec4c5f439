"""The GPU bound: at most N jobs outstanding on one ComfyUI backend.

N = 2 by default: one job renders while the next waits in ComfyUI's own queue,
so the GPU never waits for the orchestrator and is never flooded.

Two layers, both held from "queue" until the job finishes:

* an in-process ``threading.Semaphore`` (hand-off in microseconds; measured
  99.6 % GPU busy where Prefect's server-side limits gave 30-57 %), and
* a cross-process layer so several flows (nightly + on-demand, two workers'
  subprocesses) share the bound:
  - ``local`` (default): N lock files per backend, each taken with a
    non-blocking ``filelock`` try (``flock`` on POSIX, ``LockFileEx`` via
    ``msvcrt`` on Windows). The OS releases a lock when its holder dies, so a
    SIGKILLed flow never leaks a slot (a Prefect GCL lease would hold it for
    60-300 s, or forever after a server restart with in-memory lease storage).
    Waiters poll every few ms.
  - ``postgres``: N PostgreSQL session advisory locks per backend
    (``comfy_gen.pggate``), for flows on several hosts: the server drops a
    dead holder's locks with its connection (measured in bench/README.md).
  - ``prefect``: a Prefect global concurrency limit ``<prefix>:<backend>``,
    created if missing and always acquired with ``strict=True`` (a missing
    limit would otherwise mean no limit at all). For flows on several hosts.
  - ``none``: in-process only.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Literal

from filelock import FileLock, Timeout

from comfy_gen.errors import ConfigError
from comfy_gen.urls import normalize_url

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.config import Settings
    from comfy_gen.pggate import PostgresSlots

log = logging.getLogger(__name__)

GateMode = Literal["local", "postgres", "prefect", "none"]

_process_semaphores: dict[tuple[str, int], threading.BoundedSemaphore] = {}
_registry_lock = threading.Lock()


def _process_semaphore(key: str, limit: int) -> threading.BoundedSemaphore:
    with _registry_lock:
        sem = _process_semaphores.get((key, limit))
        if sem is None:
            sem = _process_semaphores[(key, limit)] = threading.BoundedSemaphore(limit)
        return sem


class GpuGate:
    """A reusable context manager: ``with gate: queue + wait``."""

    def __init__(self, backend_url: str, limit: int = 2, *, mode: GateMode = "local",
                 lock_dir: Path | None = None, prefect_name: str | None = None,
                 poll: float = 0.004, database_url: str | None = None,
                 database_setting: str = "COMFY_GEN_GPU_GATE_DATABASE_URL", connect_timeout: float = 5.0) -> None:
        if limit < 1:
            raise ConfigError(f"GPU limit must be >= 1 (got {limit})")
        self.backend_url = normalize_url(backend_url)  # one bound per server, however the URL is typed
        self.limit = limit
        self.mode = mode
        self.poll = poll
        key = hashlib.sha256(self.backend_url.encode()).hexdigest()[:16]
        self._sem = _process_semaphore(key, limit)
        self._lock_dir = Path(lock_dir or Path.home() / ".cache" / "comfy-gen" / "locks") / key
        self._prefect_name = prefect_name
        self._held = threading.local()
        self._ensure_lock = threading.Lock()
        self._limit_ready = False
        if mode == "prefect" and not prefect_name:
            raise ConfigError("GPU gate mode 'prefect' needs a concurrency limit name")
        self._pg: PostgresSlots | None = None
        if mode == "postgres":
            from comfy_gen.pggate import PostgresSlots

            if not database_url:
                raise ConfigError(f"GPU gate mode 'postgres' needs a PostgreSQL URL ({database_setting})")
            self._pg = PostgresSlots(database_url, self.backend_url, limit, setting=database_setting,
                                     connect_timeout=connect_timeout)

    # -- context manager -------------------------------------------------------
    def __enter__(self) -> "GpuGate":
        self._sem.acquire()
        try:
            stack = contextlib.ExitStack()
            if self.mode == "local":
                stack.enter_context(self._file_slot())
            elif self.mode == "postgres":
                assert self._pg is not None
                stack.enter_context(self._pg.slot())
            elif self.mode == "prefect":
                stack.enter_context(self._prefect_slot())
        except BaseException:
            self._sem.release()
            raise
        self._held.stack = stack
        return self

    def __exit__(self, *exc: object) -> None:
        stack: contextlib.ExitStack = self._held.stack
        try:
            stack.close()
        finally:
            self._sem.release()

    # -- cross-process layers ----------------------------------------------------
    @contextlib.contextmanager
    def _file_slot(self) -> Iterator[int]:
        self._lock_dir.mkdir(parents=True, exist_ok=True)
        while True:
            for index in range(self.limit):
                # A fresh lock object per try: each holds its own file handle, so
                # threads of one process exclude each other like processes do.
                lock = FileLock(self._lock_dir / f"slot-{index}.lock", mode=0o600, thread_local=False)
                try:
                    lock.acquire(blocking=False)
                except Timeout:
                    continue
                try:
                    yield index
                finally:
                    lock.release()
                return
            time.sleep(self.poll)

    @contextlib.contextmanager
    def _prefect_slot(self) -> Iterator[None]:
        from prefect.concurrency.sync import concurrency

        assert self._prefect_name
        with self._ensure_lock:
            if not self._limit_ready:
                ensure_prefect_limit(self._prefect_name, self.limit)
                self._limit_ready = True
        with concurrency(self._prefect_name, occupy=1, strict=True, lease_duration=60):
            yield


def gate_for(settings: "Settings", url: str, name: str = "default", *, limit: int | None = None) -> GpuGate:
    """The GPU gate of backend ``name`` at ``url`` as the settings configure it
    (``limit``: the backend's capacity, default gpu_limit; gpu_gate and, for
    ``postgres``, the gate's database)."""
    database_url, setting = settings.gate_database_url() if settings.gpu_gate == "postgres" else (None, "")
    return GpuGate(url, limit or settings.gpu_limit, mode=settings.gpu_gate,
                   prefect_name=f"{settings.prefect_concurrency_name}:{name}",
                   database_url=database_url, database_setting=setting or "COMFY_GEN_GPU_GATE_DATABASE_URL",
                   connect_timeout=settings.connect_timeout)


def ensure_prefect_limit(name: str, limit: int) -> None:
    """Create the Prefect global concurrency limit ``name`` if it does not exist
    (or fix its limit), instead of assuming someone created it by hand."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
    )
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            existing = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))
                log.info("Created Prefect concurrency limit %s = %d", name, limit)
                return
            except ObjectAlreadyExists:  # another process created it first
                existing = client.read_global_concurrency_limit_by_name(name)
        if existing.limit != limit or not existing.active:
            client.update_global_concurrency_limit(
                name, GlobalConcurrencyLimitUpdate(limit=limit, active=True))
