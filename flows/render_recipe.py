"""Prefect flows: render a recipe (on demand) and the nightly batch.

Tasks are thin wrappers over ``comfy_gen.batch``; orchestration policy lives on
the decorators here. What renders is decided first (``batch.triage``: job key
vs sidecar, local files only), so an unchanged re-run contacts no ComfyUI and
loads no model. Granularity: one task run per item to render (compose, queue,
await, validate, refine and upload happen inside it, as plain functions), so a
2,000-item recipe is 2,000 task runs, which the server records without the
event-queue overflow that 6 chained ``.map`` stages (12,000 runs) cause, and
validation of one item overlaps the rendering of the next (the GPU bound is
held only while a job is queued or rendering). Small runs also show each
item's stages as nested task runs (``flows.stages``, ``stage_tasks``).
A recipe of more than ``flow_chunk_size`` items renders as subflow runs of at
most that many items each (``flows.chunks``); smaller ones are one flow run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.runtime import task_run as runtime_task_run
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner

from comfy_gen import batch, observe
from comfy_gen.config import get_settings
from comfy_gen.errors import (AllBackendsDown, BatchFailed, ComfyGenError, HintContext, current_hint_context, hint_context,
                              is_transient)
from comfy_gen.results import VERDICT_LABELS, ItemResult, error_result
from comfy_gen.runs import finish_run, plan_run, stage_tasks_wanted
from comfy_gen.storage import new_run_id
from flows import reporting
from flows.stages import StageTasks, one_line

def _ship_library_logs() -> None:
    """Send comfy_gen's own log records to the Prefect run log too (what
    PREFECT_LOGGING_EXTRA_LOGGERS=comfy_gen does, without asking users to set it).
    Records from threads outside a run (the socket listener, upload pools) stay local."""
    import logging

    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.logging.handlers import APILogHandler

    class InRun(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return FlowRunContext.get() is not None or TaskRunContext.get() is not None

    library = logging.getLogger("comfy_gen")
    if not any(isinstance(h, APILogHandler) for h in library.handlers):
        handler = APILogHandler()
        handler.addFilter(InRun())
        library.addHandler(handler)
    library.setLevel(logging.INFO)


_ship_library_logs()

# Per-run shared state (clients, gates, scorer) stays in this process; tasks get
# only a key, so their parameters remain small and serialisable.
_RUNS: dict[str, batch.BatchRun] = {}


def _retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry an item only for transient failures (server down, restart, timeout)."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - we classify, not handle
        return is_transient(exc)
    return False


def _item_run_name() -> str:
    item = runtime_task_run.parameters.get("item", {})
    label = " ".join(f"{k}={v}" for k, v in (item.get("labels") or {}).items())
    return f"item-{item.get('index', 0):04d}-{str(item.get('id', ''))[:12]}" + (f" [{label}]" if label else "")


@task(name="preflight", cache_policy=NO_CACHE, persist_result=False)
def preflight_task(run_key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Check every distinct workflow against the backend and the validator before GPU work."""
    from comfy_gen.preflight import preflight_batch

    return preflight_batch(_RUNS[run_key], items)


@task(name="render-item", task_run_name=_item_run_name, cache_policy=NO_CACHE, persist_result=False,
      retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_retry_transient)
def render_item(item: dict[str, Any], run_key: str) -> State:
    """compose -> queue -> await -> validate -> refine -> upload for one item.

    Returns a Completed state named for the verdict ("Passed", "Best effort",
    "Unvalidated", ...) with a one-line message, so the flow graph and the task
    page tell them apart without an extra task run or artifact per item.
    An expected failure (a ComfyGenError that retrying cannot fix) is a Failed
    state with a one-line message and the error record as its data, not a
    raise: the run log gets one line, not a traceback per layer. Transient
    errors raise, so the retry policy above applies.
    """
    from comfy_gen.recipes import RecipeItem

    recipe_item = RecipeItem.from_dict(item)
    try:
        result = batch.run_item(_RUNS[run_key], recipe_item)
    except ComfyGenError as exc:
        if is_transient(exc):
            raise
        result = error_result(recipe_item, exc)
        return Failed(message=one_line(exc), data=result)
    if result.verdict == "error":
        return Failed(message=result.headline().splitlines()[0], data=result)
    return Completed(name=VERDICT_LABELS[result.verdict], message=result.headline(), data=result)


def _hint_context() -> HintContext:
    """"deployment" when a deployment started this flow run (read from the run context:
    ``prefect.runtime.deployment.id`` asks the API), else the caller's context."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context else None
    return "deployment" if run is not None and run.deployment_id else current_hint_context()


def _flow_run_name() -> str:
    from prefect.runtime import flow_run

    stem = Path(str(flow_run.parameters.get("recipe", "recipe"))).stem
    started = flow_run.scheduled_start_time
    when = started.strftime("%Y%m%d-%H%M%S") if started else time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"recipe-{stem}-{when}"


@flow(name="render-recipe", flow_run_name=_flow_run_name,
      # Read when the flow module is imported: each worker run is a fresh process.
      task_runner=ThreadPoolTaskRunner(max_workers=get_settings().flow_workers),  # type: ignore[arg-type]
      log_prints=False)
def render_recipe(recipe: str, force: bool = False, upload: bool | None = None,
                  backend: str | None = None, max_items: int | None = None,
                  items: str | None = None) -> dict[str, Any]:
    """Render every item of ``recipe`` (a path to a recipe YAML).

    ``force`` re-renders items that are already stored; ``upload`` overrides the
    recipe's output.upload; ``backend`` overrides the recipe's backend; ``items``
    ("1001-2000", item numbers from 1) renders only those items, e.g. one chunk.
    """
    from prefect.runtime import flow_run

    # A deployment has no CLI flags: its errors name settings and recipe fields.
    # (A sub-flow of a deployed nightly run inherits the context.)
    with hint_context(_hint_context()):
        return _render(recipe, force=force, upload=upload, backend=backend, max_items=max_items,
                       items=items, flow_run_id=str(flow_run.id) if flow_run.id else None)


def _render(recipe: str, *, force: bool, upload: bool | None, backend: str | None, max_items: int | None,
            items: str | None, flow_run_id: str | None) -> dict[str, Any]:
    import dataclasses

    from comfy_gen.chunks import plan_chunks, select_items
    from comfy_gen.preflight import setup_rejudging

    logger = get_run_logger()
    settings = get_settings()
    started = time.monotonic()
    # A deployment parameter is user input: only recipes in the allowed folders.
    plan = plan_run(recipe, settings=settings, backend=backend, max_items=max_items, upload=upload)
    if items:
        plan = dataclasses.replace(plan, items=select_items(plan.items, items))
    run = batch.BatchRun(settings=settings, recipe=plan.recipe, run_id=new_run_id(), force=force,
                         upload=plan.upload, layout=(plan.rows_axis, plan.cols_axis))
    run.flow_run_id = flow_run_id
    run_key = run.run_id
    _RUNS[run_key] = run
    observe.run_started(run.run_id, plan.recipe.name, len(plan.items))
    if plan.migrated:
        logger.info("%d stored item(s) renamed to the current id scheme; none is rendered again", plan.migrated)
    try:
        # What must render, decided from local files before any server or model is touched.
        setup_rejudging(run, plan.items)
        triage = batch.triage(run, plan.items)
        logger.info("Recipe %s: %d items: %d to render, %d stored earlier%s; backend(s) %s", plan.recipe.name,
                    len(plan.items), triage.render_count, len(triage.stored),
                    f", {len(triage.to_publish)} to upload" if triage.to_publish else "",
                    ", ".join(plan.backends))
        synced = run.open_storage()
        if synced:
            logger.info("Outbox from earlier runs: %s", synced)
        results: list[ItemResult] = list(triage.stored)
        results += [batch.publish_stored(run, item, hit) for item, hit in triage.to_publish]
        for stored in results:
            observe.item_finished(stored)
        progress = reporting.Progress(total=len(plan.items), key=f"{plan.recipe.name}-{run.run_id}-progress")
        progress.update(len(results))
        if triage.to_render:
            to_render = batch.submission_order(run, triage.to_render)  # grouped by models (affinity)
            payload = [it.to_dict() for it in to_render]
            check = preflight_task(run_key, payload)  # the items to render only: servers, models
            for line in check.get("warnings", []):
                logger.warning(line)
            if stage_tasks_wanted(plan.recipe, settings, triage.render_count):
                run.stage = StageTasks()
            try:
                if len(plan.items) > settings.flow_chunk_size:
                    # One subflow run per chunk: no flow run holds more than a chunk's task runs.
                    from flows.chunks import run_chunks

                    chunks = batch.chunk_order(run, plan_chunks(plan.items, triage.to_render,
                                                                settings.flow_chunk_size))
                    logger.info("%d items in %d chunk(s) of up to %d to render as subflow runs", len(plan.items),
                                len(chunks), settings.flow_chunk_size)
                    run_chunks(run, chunks, results, progress, logger)
                else:
                    futures = render_item.map(payload, run_key=run_key)
                    by_future = {id(f): it for f, it in zip(futures, to_render)}
                    _collect(futures, by_future, results, progress, logger, run)
            except BaseException:
                # Ctrl-C or a cancelled flow run: cancel our outstanding ComfyUI jobs and
                # let queued items fail fast; finished items are kept (a re-run resumes).
                cancelled = run.cancel_all()
                logger.warning("Run interrupted: %d outstanding job(s) cancelled; %d of %d items finished "
                               "and are kept", cancelled, len(results), len(plan.items))
                raise
        summary = finish_run(run, results, wall_seconds=time.monotonic() - started)
        reporting.publish(summary, sorted(results, key=lambda r: r.index))
        logger.info("Done: %d items, %d rendered, %d stored earlier, %d ComfyUI jobs, pass rate %s, GPU busy %s",
                    summary.items, summary.rendered, summary.cached, summary.jobs, summary.pass_rate,
                    summary.gpu_busy_fraction)
        if summary.failed and run.backends.all_down(plan.backends):
            # Fail fast, as a lease did: retrying cannot help until a server is back.
            raise AllBackendsDown(
                f"Every backend of recipe {plan.recipe.name!r} is down ({', '.join(plan.backends)}): "
                f"{summary.items - summary.failed} of {summary.items} items are stored, {summary.failed} "
                f"were not rendered. Details: {run.run_dir / 'summary.json'}", backends=tuple(plan.backends),
                hint="Start the ComfyUI server(s) and run again: stored items are not rendered again.")
        if summary.failed:
            raise BatchFailed(f"{summary.failed} of {summary.items} items of recipe {plan.recipe.name!r} "
                              f"failed; the others are stored. Details: {run.run_dir / 'summary.json'}",
                              summary=summary.to_dict())
        return summary.to_dict()
    finally:
        _RUNS.pop(run_key, None)
        run.close()


def _collect(futures: Any, by_future: dict[int, Any], results: list[ItemResult],
             progress: Any, logger: Any, run: batch.BatchRun,
             on_result: Callable[[ItemResult], None] | None = None) -> None:
    """Gather item results as they finish; a failed item is recorded, the run goes on.
    ``on_result`` (a chunk: its own count) replaces appending to ``results``."""
    for future in as_completed(list(futures)):
        item = by_future[id(future)]
        try:
            # A Failed state of an expected failure carries its error record as data.
            result = future.result(raise_on_failure=False)
            if not isinstance(result, ItemResult):
                raise result if isinstance(result, BaseException) else RuntimeError(f"No result for {item.id}")
        except Exception as exc:  # noqa: BLE001 - recorded per item
            result = error_result(item, exc)
        if result.verdict == "error":
            # One line: the task run's state message (and, for a crash, its log) has the rest.
            logger.error("Item %s failed: %s", item.id, result.headline().splitlines()[0])
        if on_result is None:
            results.append(result)
        else:
            on_result(result)
        observe.item_finished(result)
        progress.update(len(results), run.backends.activity())


def _nightly_run_name() -> str:
    from prefect.runtime import flow_run

    started = flow_run.scheduled_start_time
    when = started.strftime("%Y-%m-%d-%H%M") if started else time.strftime("%Y-%m-%d-%H%M", time.gmtime())
    return f"nightly-{when}"


@flow(name="render-nightly", flow_run_name=_nightly_run_name, log_prints=False)
def render_nightly(recipes: list[str] | None = None, force: bool = False) -> list[dict[str, Any]]:
    """Render the recipes listed, or every recipe in the recipes folder marked ``nightly: true``."""
    with hint_context(_hint_context()):
        return _nightly(recipes, force)


def _nightly(recipes: list[str] | None, force: bool) -> list[dict[str, Any]]:
    logger = get_run_logger()
    paths = recipes or [str(p) for p in find_nightly_recipes(Path(get_settings().recipes_dir))]
    logger.info("Nightly batch: %d recipe(s)", len(paths))
    summaries: list[dict[str, Any]] = []
    failed: list[str] = []
    for path in paths:
        # One failing recipe must not stop the others: collect, then report.
        state = render_recipe(recipe=path, force=force, return_state=True)
        try:
            summaries.append(state.result())
        except Exception as exc:  # noqa: BLE001 - recorded, raised once at the end
            logger.error("Recipe %s failed: %s", path, exc)
            failed.append(f"{path}: {exc}")
            summary = getattr(exc, "summary", None)
            if summary:
                summaries.append(summary)
    if failed:
        raise BatchFailed(f"{len(failed)} of {len(paths)} nightly recipe(s) failed: " + "; ".join(failed))
    return summaries


def find_nightly_recipes(folder: Path) -> list[Path]:
    """Recipes in ``folder`` that set ``nightly: true`` (invalid files are reported by the run)."""
    import yaml

    found = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and data.get("nightly") is True:
            found.append(path)
    return found


__all__ = ["find_nightly_recipes", "render_nightly", "render_recipe"]
