"""Batch rendering of recipe items: the plain functions behind the Prefect flow.

``BatchRun`` holds what one run shares across its items (the backend pool,
the prepared validation plan, storage, the outbox); ``run_item`` renders one
item from cache check to upload and returns an ``ItemResult`` (paths, keys and
scores, never image bytes). The flow in ``flows/`` wraps these in tasks;
``comfy_gen.runs`` plans a run before and records it after.

Deciding what renders comes first: ``triage`` checks every item against its
sidecar (job key and image, no server, no model) and splits the run into items
stored earlier, stored items still to publish, and items to render. Only the
last need preflight, ComfyUI and loaded validators; stored items are re-judged
by ``ValidationPlan.rejudger`` (current thresholds, no model).

Caching and resume: an item's output is stored under a name derived from its
id (``<output>/<recipe>/items/<item_id>.png``) next to a sidecar recording the
``job_key``: a hash of the fully composed workflow (graph + seed + inputs).
An item whose sidecar has the same job_key and whose image exists is done and
is never sent again, whichever process or run rendered it. Prompt ids are
derived from the job_key, so a run that was killed mid-batch and started again
adopts jobs ComfyUI already queued or finished instead of rendering them twice.

Order: ``submission_order`` groups the items to render by the models they load
(``comfy_gen.affinity``) and sets ``BatchRun.turns``, so each item's first job
reaches the GPU gate in that order; ids, job keys and names do not change.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from comfy_gen import observe
from comfy_gen.affinity import Signatures, TurnOrder, affinity_order
from comfy_gen.backends import BackendPool, backend_failed, short_reason
from comfy_gen.catalog import index_kept
from comfy_gen.comfyui.events import Event, ExecutionError, ExecutionInterrupted as InterruptedEvent
from comfy_gen.comfyui.events import ExecutionStart, ExecutionSuccess
from comfy_gen.config import Settings
from comfy_gen.errors import ComfyGenError, ExecutionInterrupted
from comfy_gen.generation import Outcome, run_attempts
from comfy_gen.hashing import digest
from comfy_gen.outputs import (KeptOutput, OutputContext, Publication, build_output_metadata, keep_output,
                               object_key_for, publish_output)
from comfy_gen.params import resolve_seed
from comfy_gen.pipeline import StageRunner, direct_stage
from comfy_gen.results import ItemResult, ItemVerdict, Span, as_verdict
from comfy_gen.storage import LocalStore, sidecar_path
from comfy_gen.validation.plan import PreparedPlan

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.chunks import Chunk
    from comfy_gen.enhance import Enhanced, Enhancer
    from comfy_gen.recipes import Recipe, RecipeItem
    from comfy_gen.storage import Outbox, Storage

log = logging.getLogger(__name__)

JOB_KEY_VERSION = "j1"  # bump when the job-key recipe changes


@dataclass
class BatchRun:
    """Per-run shared state (process-local; never sent to Prefect)."""

    settings: Settings
    recipe: "Recipe"
    run_id: str
    force: bool = False
    upload: bool = False
    flow_run_id: str | None = None
    validation: PreparedPlan | None = None   # set by preflight when the items ask for validation
    storage: "Storage | None" = None
    outbox: "Outbox | None" = None
    layout: tuple[str | None, str | None] = (None, None)   # contact-sheet rows/cols axes
    cancelled: threading.Event = field(default_factory=threading.Event)
    stage: StageRunner = direct_stage   # how each item's stages run (the flow: nested task runs)
    enhancer: "Enhancer | None" = None   # set by preflight when the items ask for prompt enhancement
    backends: BackendPool = field(init=False)
    #: Item id -> the backends that passed preflight for it (set by preflight;
    #: items not listed may use every backend the recipe names).
    eligible: dict[str, tuple[str, ...]] = field(default_factory=dict)
    turns: TurnOrder | None = None   # first-job order at the GPU gates (set by submission_order)
    _signatures: Signatures | None = None
    _outstanding: dict[str, str] = field(default_factory=dict)   # prompt id -> backend
    _workflows: dict[str, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.backends = BackendPool(self.settings, cancelled=self.cancelled)

    @property
    def validation_skipped(self) -> bool:
        return self.validation is not None and self.validation.skipped

    # -- folders (the layout is defined once, in comfy_gen.storage.LocalStore) ---
    @functools.cached_property
    def store(self) -> LocalStore:
        # Once per run: resolving the output folder per call cost ~20 % of triaging 20,000 items.
        return LocalStore.from_settings(self.settings)

    @property
    def folder(self) -> str:
        return self.recipe.output.dir or self.recipe.name

    @property
    def items_dir(self) -> Path:
        return self.store.items_dir(self.folder)

    @property
    def run_dir(self) -> Path:
        return self.store.run_dir(self.folder, self.run_id)

    def item_image(self, item_id: str, ext: str | None = None) -> Path:
        """The item's stable file: ``<id><ext>``; without ``ext``, the one an earlier
        run kept (a video item keeps its own extension), else ``<id>.png``."""
        if ext is None:
            found = self.store.find_existing(self.folder, item_id)
            return found if found is not None else self.store.item_path(self.folder, item_id)
        return self.store.item_path(self.folder, item_id, ext)

    def models_of(self, item: "RecipeItem") -> tuple[str, ...]:
        """The checkpoints and LoRAs ``item`` loads (``affinity.ModelSignature``), memoised;
        () when its graph cannot be composed (the item fails later with its own error)."""
        with self._lock:
            if self._signatures is None:
                self._signatures = Signatures(self.workflow)
            signatures = self._signatures
        try:
            return signatures(item.workflow, item.params)
        except ComfyGenError:
            return ()

    # -- shared resources ----------------------------------------------------
    def workflow(self, name: str) -> dict[str, Any]:
        with self._lock:
            if name not in self._workflows:
                from comfy_gen.workflow import load_workflow

                self._workflows[name] = load_workflow(name, workflows_dir=self.settings.workflows_dir)
            return self._workflows[name]

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
            return dict(report.to_dict())
        return None

    # -- cancellation (Ctrl-C / a cancelled flow run) ---------------------------
    def track(self, prompt_id: str, backend: str) -> None:
        """Record a job we queued. A job whose POST was in flight while the run
        was cancelled missed ``cancel_all``'s snapshot: it is cancelled here."""
        with self._lock:
            self._outstanding[prompt_id] = backend
            late = self.cancelled.is_set()
        if late:
            self._cancel(prompt_id, backend)

    def untrack(self, prompt_ids: list[str]) -> None:
        with self._lock:
            for pid in prompt_ids:
                self._outstanding.pop(pid, None)

    def cancel_all(self) -> int:
        """Stop the run: items not started yet fail fast, and our jobs still in
        ComfyUI are deleted or interrupted (never anyone else's). Finished items stay."""
        # Set under the lock: a job tracked after this point is cancelled by track().
        with self._lock:
            self.cancelled.set()
            outstanding = dict(self._outstanding)
        self.backends.wake()   # items waiting for a free backend stop waiting
        return sum(self._cancel(pid, backend) for pid, backend in outstanding.items())

    def _cancel(self, prompt_id: str, backend: str) -> bool:
        try:
            return self.backends.get(backend).client.cancel(prompt_id, retry=False) != "not_found"
        except ComfyGenError as exc:
            log.warning("Could not cancel job %s: %s", prompt_id, exc)
            return False

    def close(self) -> None:
        self.backends.close()
        if self.validation is not None:
            self.validation.close()


def submission_order(run: BatchRun, items: "tuple[RecipeItem, ...] | list[RecipeItem]") -> "tuple[RecipeItem, ...]":
    """``items`` in the order to render them: grouped by model signature when
    ``settings.model_affinity`` is on, and the run's turn order set to match
    (one lane for the run, a group per signature). Off: recipe order, no turn order."""
    if not run.settings.model_affinity:
        return tuple(items)
    ordered = tuple(affinity_order(items, run.models_of))
    # One lane per run: items are dispatched to whichever backend is free, so a
    # group opens once every item of the groups before it has queued its job.
    run.turns = TurnOrder.of(ordered, item_id=lambda it: it.id, lane=lambda it: "run",
                             group=run.models_of, cancelled=run.cancelled)
    return ordered


def chunk_order(run: BatchRun, chunks: "Sequence[Chunk]") -> "list[Chunk]":
    """A large recipe's chunks with each chunk's items grouped by models, and the
    run's turn order to match. Grouped within a chunk only: a chunk's later group
    must never wait for items of a chunk that has not started."""
    if not run.settings.model_affinity:
        run.turns = None
        return list(chunks)
    ordered = [dataclasses.replace(c, to_render=tuple(affinity_order(c.to_render, run.models_of))) for c in chunks]
    run.turns = TurnOrder.of([it for c in ordered for it in c.to_render], item_id=lambda it: it.id,
                             lane=lambda it: "run", group=run.models_of, cancelled=run.cancelled)
    return ordered


@dataclass(frozen=True)
class Triage:
    """A run's items split before any work: what is stored, what to publish, what to render."""

    stored: tuple[ItemResult, ...] = ()                       # done earlier, nothing to do
    to_publish: tuple[tuple["RecipeItem", ItemResult], ...] = ()   # stored, upload still missing
    to_render: tuple["RecipeItem", ...] = ()

    @property
    def render_count(self) -> int:
        return len(self.to_render)


def triage(run: BatchRun, items: "list[RecipeItem] | tuple[RecipeItem, ...]") -> Triage:
    """Split ``items`` by a cheap cache check (job key vs sidecar, image present).

    Reads local files only: no server is contacted and no model loaded; stored
    items are judged by ``run.validation`` (a ``rejudger`` is enough). With
    ``run.force`` every item renders.
    """
    if run.force:
        return Triage(to_render=tuple(items))
    stored: list[ItemResult] = []
    publish: list[tuple["RecipeItem", ItemResult]] = []
    render: list["RecipeItem"] = []
    for item in items:
        resolved, key = resolve_item(run, item)
        hit = cached_result(run, resolved, key)
        if hit is None:
            render.append(item)
        elif run.upload and not hit.url:
            publish.append((item, hit))
        else:
            stored.append(hit)
    return Triage(stored=tuple(stored), to_publish=tuple(publish), to_render=tuple(render))


def publish_stored(run: BatchRun, item: "RecipeItem", hit: ItemResult) -> ItemResult:
    """Upload a stored item an earlier run kept local (or left in the outbox)."""
    published = upload_cached(run, item, Path(hit.file or ""))
    return hit.replace(upload=published.state, key=published.key, url=published.url,
                       upload_error=published.error)


def resolve_item(run: BatchRun, item: "RecipeItem") -> tuple["RecipeItem", str]:
    """``item`` with its seed fixed (from its id, when random) and its job key."""
    workflow = run.workflow(item.workflow)
    if item.params.seed in (None, -1):
        # Fix the seed from the item id so the job key names exactly what is rendered.
        item = dataclasses.replace(item, params=item.params.replace(
            seed=resolve_seed(None, random.Random(item.id))))
    return item, job_key(workflow, item, settings=run.settings)


def job_key(workflow: dict[str, Any], item: "RecipeItem", *, settings: Settings | None = None) -> str:
    """Hash of the fully composed job: graph + seed + inputs (not the prompt id).
    An enhanced item's graph holds the original prompt; the enhancer's style,
    backend and model (from ``settings``) join it, so changing them re-renders."""
    from comfy_gen.workflow import apply_params

    graph = apply_params(workflow, item.params, rng=random.Random(item.id))
    if item.enhance.enabled:  # the original prompt's graph, plus what rewrites its prompt
        from comfy_gen.enhance.apply import job_key_part

        return JOB_KEY_VERSION + ":" + digest([graph, job_key_part(item.enhance, settings)],
                                              24, ascii_only=True)
    return JOB_KEY_VERSION + ":" + digest(graph, 24, ascii_only=True)


def cached_result(run: BatchRun, item: "RecipeItem", key: str) -> ItemResult | None:
    """The stored result for ``item`` if an identical job already produced it."""
    image = run.item_image(item.id)
    sidecar = sidecar_path(image)
    if not (image.exists() and sidecar.exists()):
        return None
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    info = meta.get("comfy_gen") or {}
    if info.get("job_key") != key:
        return None
    record = dict(info.get("result") or {})
    record.setdefault("item_id", item.id)
    record.setdefault("index", item.index)
    stored = ItemResult.from_dict(record)
    storage = meta.get("storage") or {}
    return stored.replace(
        index=item.index, labels=dict(item.labels), grid=item.grid, source="cached",
        verdict=_reevaluate(run, item, stored), file=str(image), sidecar=str(sidecar),
        key=storage.get("key"), url=storage.get("url"), jobs=0, gpu_spans=(), elapsed_seconds=0.0)


def upload_cached(run: BatchRun, item: "RecipeItem", image: Path) -> Publication:
    """Publish a stored item that an earlier run kept local (or left in the outbox)."""
    from comfy_gen.storage import object_key

    if run.storage is None:
        return Publication("local-only")
    kept = KeptOutput(file=image, key=object_key(run.recipe.output.prefix or run.recipe.name, item.id, image.suffix))
    return publish_output(kept, run.storage, run.outbox)


def _reevaluate(run: BatchRun, item: "RecipeItem", stored: ItemResult) -> ItemVerdict:
    """The stored image judged by the item's *current* thresholds (no GPU work):
    changing a threshold re-judges, it does not re-render."""
    if run.validation is None or not run.validation.plan.enabled or not stored.scores:
        return stored.verdict
    verdicts = run.validation.rejudge([v.to_dict() for v in stored.verdicts] or dict(stored.scores))
    return "passed" if all(v.passed for v in verdicts) else "best_effort"


class _SpanRecorder:
    """GPU time of our jobs, measured on the server's own clock (ms timestamps)."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._started: dict[str, float] = {}

    def __call__(self, event: Event) -> None:
        ts = getattr(event, "timestamp", None)
        if ts is None:
            return
        prompt_id = str(getattr(event, "prompt_id", ""))
        if isinstance(event, ExecutionStart):
            self._started[prompt_id] = ts / 1000.0
        elif isinstance(event, (ExecutionSuccess, ExecutionError, InterruptedEvent)):
            begin = self._started.pop(prompt_id, None)
            if begin is not None:
                self.spans.append((begin, ts / 1000.0))


def run_item(run: BatchRun, item: "RecipeItem") -> ItemResult:
    """Render one recipe item (unless cached), validate, refine, store, upload."""
    turns = run.turns
    if turns is None:
        return _run_item(run, item)
    turns.started(item.id)
    try:
        return _run_item(run, item)
    finally:
        turns.passed(item.id)  # cached, failed or done: the next item of its lane may go


def _run_item(run: BatchRun, item: "RecipeItem") -> ItemResult:
    from comfy_gen.enhance import refining_with
    from comfy_gen.enhance.apply import refiner_for

    started = time.monotonic()
    if run.cancelled.is_set():
        raise ExecutionInterrupted("The run was cancelled before this item started")
    workflow = run.workflow(item.workflow)
    item, key = resolve_item(run, item)
    if not run.force:
        # Checked again: another run may have stored the item since the triage.
        hit = cached_result(run, item, key)
        if hit is not None:
            return publish_stored(run, item, hit) if run.upload and not hit.url else hit
    # Stable for the whole run (Prefect retries of this item included), so a retry
    # adopts the job its first try queued instead of queueing a duplicate.
    nonce = f"/force-{run.run_id}" if run.force else ""
    spans = _SpanRecorder()
    refinement = item.refinement
    original = item.params.prompt   # validators judge against what the recipe asked for
    item, enhanced = enhance_item(run, item)
    submitted: list[str] = []
    failed: list[str] = []   # backends that died under this item
    candidates = run.eligible.get(item.id, item.candidates)
    while True:
        if run.turns is not None:
            # Model affinity: wait for this item's group before taking a lease, so
            # items of a later group never hold a backend's capacity while they wait.
            run.turns.wait(item.id)
        # Dispatch: whichever eligible backend has a free slot, least busy first.
        lease = run.backends.lease(candidates, models=run.models_of(item), exclude=failed)
        backend = lease.backend

        def on_submitted(prompt_id: str, backend_name: str = backend.name) -> None:
            submitted.append(prompt_id)
            run.track(prompt_id, backend_name)
            if run.turns is not None:
                run.turns.passed(item.id)  # queued: the next job may follow it into ComfyUI's queue

        try:
            with refining_with(refiner_for(run.enhancer, enhanced)):  # the prompt_enhance strategy's variants
                outcome: Outcome = run_attempts(
                    backend.client, workflow, item.params,
                    # Attempts land in this run's folder: overlapping runs never share files.
                    dest_dir=run.run_dir, name=item.id, validation=run.validation,
                    strategy=refinement.strategy, max_attempts=refinement.max_attempts,
                    validation_prompt=original, job_key=key + nonce, on_event=spans,
                    gate=observe.watch_gate(lease.gate, item.id,
                                            validating=run.validation is not None and run.validation.active),
                    timeout=run.settings.job_timeout,
                    rng=random.Random(f"{item.id}{nonce}"), on_submitted=on_submitted, stage=run.stage,
                )
            break
        except ComfyGenError as exc:
            if not backend_failed(exc):
                raise
            # The server is gone (past the client's retries and outage grace).
            run.backends.mark_down(backend.name, short_reason(exc))
            if failed or set(candidates) <= {backend.name}:
                # Resubmitted elsewhere once already, or nowhere else to go: the
                # transient error stands (the flow's retries, then a lease decides).
                raise
            failed.append(backend.name)
            log.warning("Item %s: backend %s failed (%s); rendering it on another backend",
                        item.id, backend.name, exc.message)
        finally:
            run.untrack(submitted)
            lease.close()
    return finalize_item(run, item, key, outcome, tuple(spans.spans), time.monotonic() - started,
                         backend=backend.name, submitted=len(set(submitted)), enhanced=enhanced)


def enhance_item(run: BatchRun, item: "RecipeItem") -> tuple["RecipeItem", "Enhanced | None"]:
    """``item`` with its prompt enhanced (cached per prompt/style/model; unchanged when off or failed)."""
    from comfy_gen.enhance.apply import enhance_params

    if run.enhancer is None or not item.enhance.enabled:
        return item, None
    params, enhanced = enhance_params(run.enhancer, item.enhance, item.params)
    if enhanced is not None and enhanced.warning:
        log.warning("Item %s: %s", item.id, enhanced.warning)
    return dataclasses.replace(item, params=params), enhanced


def finalize_item(run: BatchRun, item: "RecipeItem", key: str, outcome: Outcome,
                  spans: tuple[Span, ...], elapsed: float, *, backend: str | None = None,
                  submitted: int = 0, enhanced: "Enhanced | None" = None) -> ItemResult:
    """Keep the best attempt under the item's stable name, write metadata, upload.

    ``submitted``: distinct ComfyUI jobs queued for the item, which exceeds its
    attempts when a job lost to a server restart was queued again."""
    best = outcome.best
    result = ItemResult(
        item_id=item.id, index=item.index, verdict=as_verdict(outcome.status), source="rendered",
        prompt=item.params.prompt, seed=best.params.seed if best else item.params.seed,
        labels=dict(item.labels), grid=item.grid, backend=backend or item.backend,
        attempts=len(outcome.attempts), best_attempt=best.number if best else None,
        scores=best.scores if best else None, reason=best.reason if best else None,
        verdicts=tuple(best.verdicts) if best else (),
        prompt_id=best.prompt_id if best else None,
        jobs=max(len(outcome.attempts) + len(outcome.errors), submitted), gpu_spans=spans,
        elapsed_seconds=round(elapsed, 3), validation_skipped=run.validation_skipped,
    )
    if best is None or not best.files:
        return result.replace(verdict="error", error="The job produced no output")
    context = OutputContext(
        workflow_name=item.workflow, params=best.params, job_key=key, run_id=run.run_id,
        flow_run_id=run.flow_run_id, recipe=run.recipe.name, item_id=item.id, backend=result.backend,
        labels=dict(item.labels), result=result.to_record(), recipe_hash=f"sha256:{run.recipe.sha256}",
        categories=tuple(item.categories), key_prefix=run.recipe.output.prefix, enhancement=enhanced)
    target = run.item_image(item.id, best.files[0].suffix or ".png")

    def store() -> tuple[KeptOutput, Publication]:
        kept = keep_output(best.files[0], target, key=object_key_for(context, target),
                           metadata=build_output_metadata(context, outcome))
        if not run.upload:
            return kept, Publication()
        return kept, (Publication("local-only") if run.storage is None else
                      publish_output(kept, run.storage, run.outbox))

    kept, published = run.stage("upload" if run.upload else "store", store)
    index_kept(run.settings, kept)  # after publishing: the row carries the object URL
    return result.replace(file=str(kept.file), sidecar=str(kept.sidecar) if kept.sidecar else None,
                          key=published.key, url=published.url, upload=published.state,
                          upload_error=published.error)
