"""Large recipes as subflow runs of bounded size (``render-chunk``).

``render_recipe`` hands the items to render to ``run_chunks`` when the recipe has
more than ``flow_chunk_size`` items: each chunk (``comfy_gen.chunks``) becomes a
``render-chunk`` flow run named ``<recipe> [items 1001-2000]`` under the parent,
with one ``render-item`` task run per item, exactly as a small recipe's flow run.

Keeping the GPU bound full between chunks: chunk k+1 starts when chunk k has
at most ``LEAD_WORKERS x flow_workers`` items left, not when it has ended, so the
next chunk's start-up (a flow run created, its task runner up: 1-2 s on a loaded
machine) overlaps the previous chunk's last jobs and its first jobs are waiting
at the GPU bound before those end. At most two chunks are active, so
at most two chunks' worth of task runs are in flight. All chunks share the
parent's ``BatchRun`` (one backend pool and GPU bound, one validation plan, one
run folder) and write into the parent's result list; the parent writes one run
record and one summary for the whole recipe.

A chunk's parameters are a key and its item numbers only (its items and the
run's shared state stay in this process). A chunk is resumed on its own by
running ``render-recipe`` with ``items="1001-2000"``: the cache by item id
renders only what is missing.
"""

from __future__ import annotations

import contextvars
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner

from comfy_gen import batch
from comfy_gen.chunks import Chunk
from comfy_gen.config import get_settings
from comfy_gen.results import ItemResult

#: Chunks active at once: the running one and the next, started while the first drains.
ACTIVE_CHUNKS = 2
#: The next chunk starts when this many threads' worth of items are left in the current
#: one: its start-up then overlaps at least one more round of the current one's jobs.
LEAD_WORKERS = 2


@dataclass
class _ChunkJob:
    """What one chunk's flow run needs from its parent (process-local)."""

    run_key: str
    chunk: Chunk
    results: list[ItemResult]          # the parent's list: every chunk appends to it
    progress: Any                      # the parent's reporting.Progress
    drain_at: int                      # finished items after which the next chunk starts
    draining: threading.Event = field(default_factory=threading.Event)


_JOBS: dict[str, _ChunkJob] = {}


def _chunk_run_name() -> str:
    from prefect.runtime import flow_run

    params = flow_run.parameters
    return f"{params.get('recipe', 'recipe')} [items {params.get('first')}-{params.get('last')}]"


@flow(name="render-chunk", flow_run_name=_chunk_run_name,
      task_runner=ThreadPoolTaskRunner(max_workers=get_settings().flow_workers),  # type: ignore[arg-type]
      log_prints=False)
def render_chunk(chunk_key: str, recipe: str, first: int, last: int) -> State:
    """Render the items of one chunk of a large recipe (started by ``render-recipe``).

    ``recipe``, ``first`` and ``last`` name the chunk in the UI; its items come from
    the parent flow run in this process. Ends Failed when any of its items failed.
    """
    from flows.render_recipe import _RUNS, _collect, render_item

    job = _JOBS[chunk_key]
    run = _RUNS[job.run_key]
    logger = get_run_logger()
    items = job.chunk.to_render
    logger.info("Recipe %s, %s: %d item(s) to render", recipe, job.chunk.label, len(items))
    mine: list[ItemResult] = []

    def finished(result: ItemResult) -> None:
        mine.append(result)
        job.results.append(result)
        if len(mine) >= job.drain_at:
            job.draining.set()

    try:
        futures = render_item.map([it.to_dict() for it in items], run_key=job.run_key)
        if job.drain_at == 0:  # a small chunk: the next one may start at once
            job.draining.set()
        by_future = {id(f): it for f, it in zip(futures, items)}
        _collect(futures, by_future, job.results, job.progress, logger, run, on_result=finished)
    finally:
        job.draining.set()
    failed = sum(1 for r in mine if r.verdict == "error")
    text = f"{len(mine)} item(s) of {job.chunk.label}: {len(mine) - failed} done, {failed} failed"
    return Failed(message=text) if failed else Completed(message=text)


def run_chunks(run: batch.BatchRun, chunks: list[Chunk], results: list[ItemResult], progress: Any,
               logger: Any) -> list[State]:
    """Run ``chunks`` as subflow runs of the current flow run, each next one started
    when the one before it drains; returns their final states. Results land in ``results``."""
    workers = run.settings.flow_workers
    slots = threading.Semaphore(ACTIVE_CHUNKS)
    pool = ThreadPoolExecutor(max_workers=ACTIVE_CHUNKS, thread_name_prefix="render-chunk")
    started: list[Future[State]] = []
    keys: list[str] = []
    try:
        for chunk in chunks:
            slots.acquire()
            key = f"{run.run_id}-{uuid.uuid4().hex[:8]}"
            job = _ChunkJob(run_key=run.run_id, chunk=chunk, results=results, progress=progress,
                            drain_at=max(len(chunk.to_render) - LEAD_WORKERS * workers, 0))
            _JOBS[key] = job
            keys.append(key)
            # A copy of this flow run's context per thread: the chunk's flow run is a
            # subflow of ours (a fresh thread would start a top-level flow run).
            context = contextvars.copy_context()
            future = pool.submit(context.run, render_chunk, chunk_key=key, recipe=run.recipe.name,  # type: ignore[arg-type]
                                 first=chunk.first, last=chunk.last, return_state=True)
            future.add_done_callback(lambda _f: slots.release())
            started.append(future)
            # Start the next chunk once this one is nearly done (its last items in flight).
            while not job.draining.wait(0.5):
                if future.done():
                    break
        states = [f.result() for f in started]
    except BaseException:
        # Interrupted: the caller cancels the run's jobs; queued chunks never start.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        for key in keys:
            _JOBS.pop(key, None)
    pool.shutdown(wait=True)
    failed = [s for s in states if s.is_failed()]
    if failed:
        logger.warning("%d of %d chunk(s) had failed items: %s", len(failed), len(states),
                       "; ".join(str(s.message) for s in failed))
    return states


__all__ = ["ACTIVE_CHUNKS", "LEAD_WORKERS", "render_chunk", "run_chunks"]
