"""Batch rendering of recipe items: the plain functions behind the Prefect flow.

``BatchRun`` holds what one run shares across its items (clients, GPU gates,
the batching CLIP scorer, storage, the outbox); ``run_item`` renders one item
from cache check to upload and returns a small JSON-safe dict (paths, keys and
scores, never image bytes). The flow in ``flows/`` wraps these in tasks.

Caching and resume: an item's output is stored under a name derived from its
id (``<output>/<recipe>/items/<item_id>.png``) next to a sidecar recording the
``job_key``: a hash of the fully composed workflow (graph + seed + inputs).
An item whose sidecar has the same job_key and whose image exists is done and
is never sent again, whichever process or run rendered it. Prompt ids are
derived from the job_key, so a run that was killed mid-batch and started again
adopts jobs ComfyUI already queued or finished instead of rendering them twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfy_gen.config import Settings
from comfy_gen.errors import ComfyGenError, ExecutionInterrupted, is_transient
from comfy_gen.generation import Outcome, Thresholds, judge, run_attempts
from comfy_gen.params import resolve_seed
from comfy_gen.validation.base import default_positive_threshold

log = logging.getLogger(__name__)

JOB_KEY_VERSION = "j1"  # bump when the job-key recipe changes


@dataclass
class BatchRun:
    """Per-run shared state (process-local; never sent to Prefect)."""

    settings: Settings
    recipe: Any                     # comfy_gen.recipes.Recipe
    run_id: str
    force: bool = False
    upload: bool = False
    flow_run_id: str | None = None
    scorer: Any | None = None       # BatchingScorer or None
    validation_skipped: bool = False
    clients: dict[str, Any] = field(default_factory=dict)
    gates: dict[str, Any] = field(default_factory=dict)
    storage: Any | None = None
    outbox: Any | None = None
    layout: tuple[str | None, str | None] = (None, None)   # contact-sheet rows/cols axes
    cancelled: threading.Event = field(default_factory=threading.Event)
    _outstanding: dict[str, str] = field(default_factory=dict)   # prompt id -> backend
    _workflows: dict[str, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- folders (the layout is defined once, in comfy_gen.storage.LocalStore) ---
    @property
    def store(self) -> Any:
        from comfy_gen.storage import LocalStore

        return LocalStore.from_settings(self.settings)

    @property
    def folder(self) -> str:
        output = getattr(self.recipe, "output", None)
        return getattr(output, "dir", None) or self.recipe.name

    @property
    def items_dir(self) -> Path:
        return self.store.items_dir(self.folder)

    @property
    def run_dir(self) -> Path:
        return self.store.run_dir(self.folder, self.run_id)

    def item_image(self, item_id: str) -> Path:
        return self.store.item_path(self.folder, item_id)

    # -- shared resources ----------------------------------------------------
    def workflow(self, name: str) -> dict[str, Any]:
        with self._lock:
            if name not in self._workflows:
                from comfy_gen.workflow import load_workflow

                self._workflows[name] = load_workflow(name, workflows_dir=self.settings.workflows_dir)
            return self._workflows[name]

    def client(self, backend: str) -> Any:
        with self._lock:
            if backend not in self.clients:
                from comfy_gen.comfyui import ComfyUIClient

                self.clients[backend] = ComfyUIClient.from_settings(self.settings, backend=backend)
            return self.clients[backend]

    def gate(self, backend: str) -> Any:
        return _CancellableGate(self._gate(backend), self.cancelled)

    def _gate(self, backend: str) -> Any:
        with self._lock:
            if backend not in self.gates:
                from comfy_gen.gate import GpuGate

                s = self.settings
                self.gates[backend] = GpuGate(
                    s.backend_url(backend), s.gpu_limit, mode=s.gpu_gate,
                    prefect_name=f"{s.prefect_concurrency_name}:{backend}")
            return self.gates[backend]

    def open_storage(self) -> dict[str, Any] | None:
        """Set up uploads and retry what earlier runs left in the outbox."""
        if not self.upload:
            return None
        from comfy_gen.storage import Outbox, get_storage

        self.storage = get_storage(self.settings)
        self.storage.check()  # wrong keys / no bucket: exit 2 before rendering; an outage only warns
        self.outbox = Outbox.from_settings(self.settings)
        if self.outbox.count():
            report = self.outbox.sync(self.storage, workers=self.settings.upload_workers)
            return report.to_dict()
        return None

    # -- cancellation (Ctrl-C / a cancelled flow run) ---------------------------
    def track(self, prompt_id: str, backend: str) -> None:
        with self._lock:
            self._outstanding[prompt_id] = backend

    def untrack(self, prompt_ids: list[str]) -> None:
        with self._lock:
            for pid in prompt_ids:
                self._outstanding.pop(pid, None)

    def cancel_all(self) -> int:
        """Stop the run: items not started yet fail fast, and our jobs still in
        ComfyUI are deleted or interrupted (never anyone else's). Finished items stay."""
        self.cancelled.set()
        with self._lock:
            outstanding = dict(self._outstanding)
        cancelled = 0
        for pid, backend in outstanding.items():
            try:
                if self.client(backend).cancel(pid, retry=False) != "not_found":
                    cancelled += 1
            except ComfyGenError as exc:
                log.warning("Could not cancel job %s: %s", pid, exc)
        return cancelled

    def close(self) -> None:
        # After a cancel, items still in flight learn of their interrupted jobs
        # through these clients: keep them open (the process is exiting anyway).
        if not self.cancelled.is_set():
            for client in self.clients.values():
                client.close()
        if self.scorer is not None and hasattr(self.scorer, "close"):
            self.scorer.close()


class _CancellableGate:
    """The GPU gate, refusing to let a job through once the run is cancelled
    (items already waiting for a slot must not queue new jobs after a Ctrl-C)."""

    def __init__(self, gate: Any, cancelled: threading.Event) -> None:
        self._gate = gate
        self._cancelled = cancelled

    def __enter__(self) -> Any:
        self._gate.__enter__()
        if self._cancelled.is_set():
            self._gate.__exit__(None, None, None)
            raise ExecutionInterrupted("The run was cancelled before this job was queued")
        return self

    def __exit__(self, *exc: object) -> None:
        self._gate.__exit__(*exc)


def job_key(workflow: dict[str, Any], item: Any) -> str:
    """Hash of the fully composed job: graph + seed + inputs (not the prompt id)."""
    from comfy_gen.workflow import apply_params

    graph = apply_params(workflow, item.params, rng=random.Random(item.id))
    blob = json.dumps(graph, sort_keys=True, separators=(",", ":"))
    return JOB_KEY_VERSION + ":" + hashlib.sha256(blob.encode()).hexdigest()[:24]


def cached_result(run: BatchRun, item: Any, key: str) -> dict[str, Any] | None:
    """The stored result for ``item`` if an identical job already produced it."""
    image = run.item_image(item.id)
    sidecar = image.with_name(image.name + ".json")
    if not (image.exists() and sidecar.exists()):
        return None
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    info = meta.get("comfy_gen") or {}
    if info.get("job_key") != key:
        return None
    result = dict(info.get("result") or {})
    storage = meta.get("storage") or {}
    result["outcome"] = _reevaluate(run, item, result)
    result.update(status="cached", cached=True, previous_status=result.get("status"),
                  file=str(image), sidecar=str(sidecar), key=storage.get("key"), url=storage.get("url"),
                  gpu_spans=[])
    return result


def upload_cached(run: BatchRun, item: Any) -> dict[str, Any]:
    """Upload a stored item that an earlier run kept local (or left in the outbox)."""
    from comfy_gen.storage import object_key, upload_with_sidecar

    image = run.item_image(item.id)
    key = object_key(run.recipe.name, item.id, image.suffix)
    if run.storage is None or not getattr(run.storage, "remote", False):
        return {"upload": "local-only"}
    obj = upload_with_sidecar(run.storage, image, key, run.outbox)
    if obj is None:
        return {"upload": "queued", "key": key}
    return {"upload": "skipped" if obj.skipped else "uploaded", "key": obj.key, "url": obj.url}


def _reevaluate(run: BatchRun, item: Any, result: dict[str, Any]) -> str | None:
    """The stored image judged by the item's *current* thresholds (no GPU work):
    changing a threshold re-judges, it does not re-render."""
    validation = dict(getattr(item, "validation", None) or {})
    scores = result.get("scores")
    if not validation.get("enabled") or not scores:
        return result.get("status")
    positive = validation.get("positive_threshold")
    if positive is None:
        positive = default_positive_threshold(run.settings.clip_model)
    passed, _ = judge(scores, Thresholds(positive=positive, delta=validation.get("delta_threshold")))
    return "passed" if passed else "best_effort"


def run_item(run: BatchRun, item: Any) -> dict[str, Any]:
    """Render one recipe item (unless cached), validate, refine, store, upload."""
    started = time.monotonic()
    if run.cancelled.is_set():
        raise ExecutionInterrupted("The run was cancelled before this item started")
    workflow = run.workflow(item.workflow)
    if item.params.seed in (None, -1):
        # Fix the seed from the item id so the job key names exactly what is rendered.
        item = dataclasses.replace(item, params=item.params.replace(
            seed=resolve_seed(None, random.Random(item.id))))
    key = job_key(workflow, item)
    if not run.force:
        hit = cached_result(run, item, key)
        if hit is not None:
            if run.upload and not hit.get("url"):
                hit.update(upload_cached(run, item))
            return hit
    # Stable for the whole run (Prefect retries of this item included), so a retry
    # adopts the job its first try queued instead of queueing a duplicate.
    nonce = f"/force-{run.run_id}" if run.force else ""
    spans: list[list[float]] = []
    span_start: dict[str, float] = {}

    def on_event(event: Any) -> None:
        # GPU time measured on the server's own clock (ms timestamps).
        kind = type(event).__name__
        ts = getattr(event, "timestamp", None)
        if ts is None:
            return
        if kind == "ExecutionStart":
            span_start[event.prompt_id] = ts / 1000.0
        elif kind in ("ExecutionSuccess", "ExecutionError", "ExecutionInterrupted"):
            begin = span_start.pop(event.prompt_id, None)
            if begin is not None:
                spans.append([begin, ts / 1000.0])

    validation = dict(getattr(item, "validation", None) or {})
    refinement = dict(getattr(item, "refinement", None) or {})
    scorer = run.scorer if validation.get("enabled") and not run.validation_skipped else None
    thresholds = Thresholds(positive=validation.get("positive_threshold"),
                            delta=validation.get("delta_threshold"))
    work_dir = run.run_dir   # attempts land in this run's folder; overlapping runs never share files
    submitted: list[str] = []

    def on_submitted(prompt_id: str) -> None:
        submitted.append(prompt_id)
        run.track(prompt_id, item.backend)

    try:
        outcome: Outcome = run_attempts(
            run.client(item.backend), workflow, item.params, dest_dir=work_dir, name=item.id,
            scorer=scorer, thresholds=thresholds,
            strategy=refinement.get("strategy", "progressive"),
            max_attempts=int(refinement.get("max_attempts", 1)),
            validation_prompt=item.params.prompt, job_key=key + nonce, on_event=on_event,
            gate=run.gate(item.backend), timeout=run.settings.job_timeout,
            rng=random.Random(f"{item.id}{nonce}"), on_submitted=on_submitted,
        )
    finally:
        run.untrack(submitted)
    return finalize_item(run, item, key, outcome, spans, time.monotonic() - started)


def finalize_item(run: BatchRun, item: Any, key: str, outcome: Outcome,
                  spans: list[list[float]], elapsed: float) -> dict[str, Any]:
    """Keep the best attempt under the item's stable name, write metadata, upload."""
    from comfy_gen.outputs import store_output

    best = outcome.best
    result: dict[str, Any] = {
        "item_id": item.id, "index": item.index, "status": outcome.status,
        "attempts": len(outcome.attempts), "best_attempt": best.number if best else None,
        "scores": best.scores if best else None, "prompt": item.params.prompt,
        "seed": best.params.seed if best else item.params.seed,
        "labels": dict(getattr(item, "labels", {}) or {}),
        "grid": list(item.grid) if getattr(item, "grid", None) else None,
        "prompt_id": best.prompt_id if best else None, "gpu_spans": spans,
        "elapsed_seconds": round(elapsed, 3), "cached": False,
        "validation_skipped": run.validation_skipped,
    }
    if best is None or not best.files:
        result["status"] = "error"
        result["error"] = "The job produced no output"
        return result
    stored = store_output(
        best.files[0], run.item_image(item.id), settings=run.settings, outcome=outcome,
        workflow_name=item.workflow, params=best.params, job_key=key, item=item,
        recipe=run.recipe.name, run_id=run.run_id, flow_run_id=run.flow_run_id,
        upload=run.upload, storage=run.storage, outbox=run.outbox, result=result,
    )
    result.update(stored)
    return result


def summarize(results: list[dict[str, Any]], *, wall_seconds: float) -> dict[str, Any]:
    """Counts, pass rate and GPU busy fraction for the run summary."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.get("status", "error")] = counts.get(r.get("status", "error"), 0) + 1
    rendered = [r for r in results if not r.get("cached")]
    validated = [r for r in rendered if r.get("status") in ("passed", "best_effort")]
    passed = sum(1 for r in validated if r["status"] == "passed")
    spans = sorted(s for r in rendered for s in r.get("gpu_spans") or [])
    busy = None
    if spans:
        total = sum(end - start for start, end in spans)
        window = max(end for _, end in spans) - spans[0][0]
        busy = round(total / window, 4) if window > 0 else 1.0
    return {
        "items": len(results), "counts": counts, "rendered": len(rendered),
        "cached": len(results) - len(rendered),
        "jobs": sum(int(r.get("attempts") or 0) for r in rendered),
        "pass_rate": round(passed / len(validated), 4) if validated else None,
        "gpu_busy_fraction": busy, "wall_seconds": round(wall_seconds, 3),
        "errors": [{"item_id": r.get("item_id"), "error": r.get("error")}
                   for r in results if r.get("status") == "error"],
    }


def describe_error(exc: BaseException) -> dict[str, Any]:
    """A JSON-safe error record for an item that failed."""
    if isinstance(exc, ComfyGenError):
        data = exc.to_dict()
    else:
        data = {"error": type(exc).__name__, "message": str(exc)}
    data["transient"] = is_transient(exc)
    return data
