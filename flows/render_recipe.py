"""Prefect flows: render a recipe (on demand) and the nightly batch.

Tasks are thin wrappers over ``comfy_gen.batch``; orchestration policy lives on
the decorators here. Granularity: one task run per item (compose, queue,
await, validate, refine and upload happen inside it, as plain functions), so a
2,000-item recipe is 2,000 task runs, which the server records without the
event-queue overflow that 6 chained ``.map`` stages (12,000 runs) cause, and
validation of one item overlaps the rendering of the next (the GPU bound is
held only while a job is queued or rendering).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.runtime import task_run as runtime_task_run
from prefect.task_runners import ThreadPoolTaskRunner

from comfy_gen import batch
from comfy_gen.config import get_settings
from comfy_gen.errors import BatchFailed, is_transient
from flows import reporting

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
def render_item(item: dict[str, Any], run_key: str) -> dict[str, Any]:
    """compose -> queue -> await -> validate -> refine -> upload for one item."""
    from comfy_gen.recipes import RecipeItem

    return batch.run_item(_RUNS[run_key], RecipeItem.from_dict(item))


def _flow_run_name() -> str:
    from prefect.runtime import flow_run

    return "recipe-" + Path(str(flow_run.parameters.get("recipe", "recipe"))).stem


@flow(name="render-recipe", flow_run_name=_flow_run_name,
      # Read when the flow module is imported: each worker run is a fresh process.
      task_runner=ThreadPoolTaskRunner(max_workers=get_settings().flow_workers),  # type: ignore[arg-type]
      log_prints=False)
def render_recipe(recipe: str, force: bool = False, upload: bool | None = None,
                  backend: str | None = None, max_items: int | None = None) -> dict[str, Any]:
    """Render every item of ``recipe`` (a path to a recipe YAML).

    ``force`` re-renders items that are already stored; ``upload`` overrides the
    recipe's output.upload; ``backend`` overrides the recipe's backend.
    """
    from comfy_gen.recipes import default_allowed_dirs, expand_recipe, load_recipe

    logger = get_run_logger()
    settings = get_settings()
    started = time.monotonic()
    # A deployment parameter is user input: only recipes in the allowed folders.
    recipe_obj = load_recipe(recipe, settings=settings, allowed_dirs=default_allowed_dirs(settings))
    expansion = expand_recipe(recipe_obj, settings=settings)
    items = expansion.items
    if backend:
        settings.backend_url(backend)  # unknown names fail here, before any work
        items = [dataclasses.replace(it, backend=backend) for it in items]
    if max_items is not None:
        items = items[:max_items]
    run = batch.BatchRun(settings=settings, recipe=recipe_obj, run_id=_run_id(), force=force,
                         upload=_want_upload(recipe_obj, upload, settings))
    from prefect.runtime import flow_run

    run.flow_run_id = str(flow_run.id) if flow_run.id else None
    run.layout = (expansion.rows_axis, expansion.cols_axis)
    run_key = run.run_id
    _RUNS[run_key] = run
    payload = [it.to_dict() for it in items]
    logger.info("Recipe %s: %d items, backend(s) %s", recipe_obj.name, len(items),
                ", ".join(sorted({it.backend for it in items})))
    try:
        synced = run.open_storage()
        if synced:
            logger.info("Outbox from earlier runs: %s", synced)
        check = preflight_task(run_key, payload)
        for line in check.get("warnings", []):
            logger.warning(line)
        progress = reporting.Progress(total=len(items), key=f"{recipe_obj.name}-progress")
        futures = render_item.map(payload, run_key=run_key)
        by_future = {id(f): p for f, p in zip(futures, payload)}
        results: list[dict[str, Any]] = []
        try:
            _collect(futures, by_future, results, progress, logger)
        except BaseException:
            # Ctrl-C or a cancelled flow run: cancel our outstanding ComfyUI jobs and
            # let queued items fail fast; finished items are kept (a re-run resumes).
            cancelled = run.cancel_all()
            logger.warning("Run interrupted: %d outstanding job(s) cancelled; %d of %d items finished "
                           "and are kept", cancelled, len(results), len(items))
            raise
        results.sort(key=lambda r: r.get("index", 0))
        summary = batch.summarize(results, wall_seconds=time.monotonic() - started)
        summary.update(recipe=recipe_obj.name, run_id=run.run_id, run_dir=str(run.run_dir),
                       items_dir=str(run.items_dir), flow_run_id=run.flow_run_id,
                       validation_skipped=run.validation_skipped)
        reporting.publish(run, results, summary)
        logger.info("Done: %s", {k: summary[k] for k in ("items", "rendered", "cached", "jobs",
                                                         "pass_rate", "gpu_busy_fraction")})
        if summary["counts"].get("error"):
            raise BatchFailed(f"{summary['counts']['error']} of {len(items)} items of recipe "
                              f"{recipe_obj.name!r} failed; the others are stored. Details: "
                              f"{run.run_dir / 'summary.json'}", summary=summary)
        return summary
    finally:
        _RUNS.pop(run_key, None)
        run.close()


def _collect(futures: Any, by_future: dict[int, dict[str, Any]], results: list[dict[str, Any]],
             progress: Any, logger: Any) -> None:
    """Gather item results as they finish; a failed item is recorded, the run goes on."""
    for future in as_completed(list(futures)):
        item = by_future[id(future)]
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 - recorded per item
            result = {"item_id": item["id"], "index": item["index"], "status": "error",
                      "labels": item.get("labels"), "grid": item.get("grid"),
                      "prompt": item["params"].get("prompt"), "seed": item["params"].get("seed"),
                      "error": str(exc), "error_detail": batch.describe_error(exc)}
            logger.error("Item %s failed: %s", item["id"], exc)
        results.append(result)
        progress.update(len(results))


@flow(name="render-nightly", log_prints=False)
def render_nightly(recipes: list[str] | None = None, force: bool = False) -> list[dict[str, Any]]:
    """Render the recipes listed, or every recipe in the recipes folder marked ``nightly: true``."""
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


def _run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def _want_upload(recipe_obj: Any, upload: bool | None, settings: Any) -> bool:
    if upload is not None:
        return upload
    wanted = bool(getattr(getattr(recipe_obj, "output", None), "upload", False))
    return wanted and settings.storage_configured


__all__ = ["find_nightly_recipes", "render_nightly", "render_recipe"]
