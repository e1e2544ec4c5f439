"""Batch tools: list_recipes, validate_recipe, run_recipe, get_run_status.

A recipe path from a client is confined to the recipe folders
(``plan_run(confine=True)``; the flow checks it again as its own input). A run
goes to Prefect: the ``render-recipe/on-demand`` deployment when the configured
Prefect server has it (a worker renders it), else the flow in a background
thread of this server, reporting to the configured Prefect API or to a local
Prefect server started on first use and stopped with the MCP server. Either way
the tool returns at once with the flow run id and its UI link; ``get_run_status``
follows it.
"""

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from comfy_gen.errors import BatchFailed, ComfyGenError, RecipeError, UsageError
from comfy_gen.mcp.state import blocking

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.mcp.server import App

log = logging.getLogger(__name__)

Json = dict[str, Any]
DEPLOYMENT = "render-recipe/on-demand"
RecipeArg = Annotated[str, Field(description="A recipe name in the recipes folder (demo) or a path inside the "
                                             "allowed recipe folders.", min_length=1, max_length=1024)]
MaxItems = Annotated[int | None, Field(description="Render only the first N items.", ge=1)]
#: How long the server waits for its background runs when it shuts down.
SHUTDOWN_WAIT = 10.0
#: list_recipes reads descriptions only from files up to this size (validate_recipe reads any).
MAX_LISTED_RECIPE = 1 << 20


@dataclass
class LocalRun:
    """A flow run this server executes in a background thread."""

    flow_run_id: str
    recipe: str
    done: threading.Event = field(default_factory=threading.Event)
    summary: Json | None = None
    error: Json | None = None


def register(app: "App") -> None:
    mcp = app.mcp

    @mcp.tool()
    async def list_recipes() -> Json:
        """Recipe files in the recipe folders: recipes [{name, path, description}], count, folders."""
        return await blocking(lambda: _list(app))

    @mcp.tool()
    async def validate_recipe(recipe: RecipeArg, max_items: MaxItems = None) -> Json:
        """Load and expand a recipe without rendering. Returns valid, and either name, path, items,
        backends, upload, workflows and the first items (id, prompt, seed), or errors
        (file:line: path: message)."""
        return await blocking(lambda: _validate(app, recipe, max_items))

    @mcp.tool()
    async def run_recipe(
        recipe: RecipeArg,
        force: Annotated[bool, Field(description="Render items again even when already stored.")] = False,
        upload: Annotated[bool | None, Field(description="Override the recipe's output.upload.")] = None,
        backend: Annotated[str | None, Field(description="Render every item on this named backend.")] = None,
        max_items: MaxItems = None,
    ) -> Json:
        """Start rendering a recipe through Prefect and return at once: flow_run_id, ui_url, mode
        (deployment | in-process), recipe, items. Follow it with get_run_status."""
        return await blocking(lambda: _start(app, recipe, force=force, upload=upload, backend=backend,
                                             max_items=max_items))

    @mcp.tool()
    async def get_run_status(
        flow_run_id: Annotated[str, Field(description="The id run_recipe returned.", min_length=1,
                                          max_length=100)],
    ) -> Json:
        """A recipe run's state: flow_run_id, state (SCHEDULED, RUNNING, COMPLETED, FAILED, ...),
        state_name, message, finished, ui_url, and when it has finished the run summary (items,
        counts by verdict, pass rate, run folder, errors)."""
        return await blocking(lambda: _status(app, flow_run_id))


def _allowed(settings: Any) -> list[Path]:
    from comfy_gen.recipes import default_allowed_dirs

    return default_allowed_dirs(settings)


def _list(app: Any) -> Json:
    from comfy_gen.safeyaml import load_data

    folders = [Path(app.settings.recipes_dir), *app.settings.recipe_dirs]
    rows, seen = [], set()
    for folder in folders:
        for path in sorted(Path(folder).glob("*.y*ml")) if Path(folder).is_dir() else []:
            if path.suffix not in (".yaml", ".yml") or path.resolve() in seen:
                continue
            seen.add(path.resolve())
            try:
                if path.stat().st_size > MAX_LISTED_RECIPE:
                    raise UsageError(f"larger than {MAX_LISTED_RECIPE} bytes")
                data = load_data(path.read_text(encoding="utf-8"))
                description = str(data.get("description") or "") if isinstance(data, dict) else ""
            except (ComfyGenError, OSError, ValueError) as exc:
                description = f"(unreadable: {exc})"
            rows.append({"name": path.stem, "path": str(path), "description": description})
    return {"recipes": rows, "count": len(rows), "folders": [str(f) for f in folders]}


def recipe_path(app: "App", recipe: str) -> Path:
    """A client's recipe inside the recipe folders (relative paths from the recipes folder).

    Stricter than the flow's own rule, which also allows its working directory: the
    server's working directory is not a folder an agent was given.
    """
    from comfy_gen.paths import confine
    from comfy_gen.recipes import resolve_recipe_path

    folders = [Path(app.settings.recipes_dir), *app.settings.recipe_dirs]
    candidate = Path(recipe)
    if not candidate.suffix and len(candidate.parts) == 1:  # a bare name: the recipes folder's file
        found = resolve_recipe_path(recipe, settings=app.settings)
        if found.is_file():
            candidate = found
    return confine(candidate, folders, base=folders[0])


def _plan(app: "App", recipe: str, **kwargs: Any) -> Any:
    from comfy_gen.runs import plan_run

    return plan_run(recipe_path(app, recipe), settings=app.settings, confine=True, **kwargs)


def _validate(app: Any, recipe: str, max_items: int | None) -> Json:
    try:
        plan = _plan(app, recipe, max_items=max_items, migrate=False)
    except RecipeError as exc:
        return {"valid": False, "recipe": recipe, "errors": [str(p) for p in exc.problems] or [exc.message]}
    items = plan.items
    return {"valid": True, "name": plan.recipe.name, "path": str(plan.recipe.path),
            "description": plan.recipe.description, "items": len(items), "backends": plan.backends,
            "upload": plan.upload, "workflows": sorted({it.workflow for it in items}),
            "rows_axis": plan.rows_axis, "cols_axis": plan.cols_axis,
            "first_items": [{"id": it.id, "prompt": it.params.prompt, "seed": it.params.seed,
                             "labels": it.labels} for it in items[:5]]}


# --- starting and following runs ---------------------------------------------------------------


def _ensure_prefect(app: Any) -> str:
    """The Prefect API URL: the configured one, else a local server we start once."""
    from comfy_gen.config import prefect_api_configured, prefect_defaults, prefect_home

    with app.lock:
        if prefect_api_configured():
            return os.environ["PREFECT_API_URL"]
        from comfy_gen.stack import Stack, free_port

        for key, value in prefect_defaults(app.settings).items():
            os.environ.setdefault(key, value)
        home = prefect_home(app.settings)
        home.mkdir(parents=True, exist_ok=True)
        stack = Stack(home=home, port=free_port())
        stack.start_server(ui=True)
        app.prefect_stack = stack
        # Prefect's client reads its API URL from the environment, in every thread.
        os.environ["PREFECT_API_URL"] = stack.api_url
        return stack.api_url


def _ui_link(api_url: str, flow_run_id: str) -> str:
    from prefect.settings import PREFECT_UI_URL

    base = PREFECT_UI_URL.value() or api_url.rstrip("/").removesuffix("/api")
    return f"{str(base).rstrip('/')}/runs/flow-run/{flow_run_id}"


def _start(app: Any, recipe: str, **options: Any) -> Json:
    plan = _plan(app, recipe, backend=options["backend"], max_items=options["max_items"],
                 upload=options["upload"], migrate=False)  # every problem now, before any process starts
    parameters = {"recipe": str(plan.recipe.path), **options}
    api_url = _ensure_prefect(app)
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as prefect_client:
        try:
            prefect_client.read_deployment_by_name(DEPLOYMENT)
            has_deployment = True
        except ObjectNotFound:
            has_deployment = False
        if has_deployment:
            from prefect.deployments import run_deployment

            flow_run: Any = run_deployment(DEPLOYMENT, parameters=parameters, timeout=0)
            mode = "deployment"
        else:
            from flows.render_recipe import render_recipe

            flow_run = prefect_client.create_flow_run(render_recipe, parameters=parameters)
            mode = "in-process"
    run_id = str(flow_run.id)
    if mode == "in-process":
        _run_in_thread(app, flow_run, parameters)
    return {"flow_run_id": run_id, "ui_url": _ui_link(api_url, run_id), "mode": mode,
            "recipe": plan.recipe.name, "items": len(plan.items)}


def _run_in_thread(app: Any, flow_run: Any, parameters: Json) -> None:
    from flows.render_recipe import render_recipe

    run = LocalRun(flow_run_id=str(flow_run.id), recipe=parameters["recipe"])
    with app.lock:
        app.runs[run.flow_run_id] = run

    def work() -> None:
        from prefect.flow_engine import run_flow

        try:
            run.summary = run_flow(render_recipe, flow_run=flow_run, parameters=parameters)  # type: ignore[assignment]
        except BatchFailed as exc:  # some items failed: the summary still says which
            run.error, run.summary = exc.to_dict(), exc.summary
        except ComfyGenError as exc:
            run.error = exc.to_dict()
        except BaseException as exc:  # the thread must record every end; Prefect has the details
            log.warning("Flow run %s ended with %s: %s", run.flow_run_id, type(exc).__name__, exc)
            run.error = {"error": type(exc).__name__, "message": str(exc)}
        finally:
            run.done.set()

    threading.Thread(target=work, name=f"mcp-run-{run.flow_run_id[:8]}", daemon=True).start()


def _status(app: Any, flow_run_id: str) -> Json:
    import uuid

    try:
        run_uuid = uuid.UUID(flow_run_id)
    except ValueError:
        raise UsageError(f"{flow_run_id!r} is not a flow run id (a UUID from run_recipe)") from None
    api_url = _ensure_prefect(app)
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as prefect_client:
        try:
            flow_run = prefect_client.read_flow_run(run_uuid)
        except ObjectNotFound:
            raise UsageError(f"No flow run {flow_run_id} on the Prefect server at {api_url}") from None
    state = flow_run.state
    local = app.runs.get(flow_run_id)
    finished = bool(state and state.is_final()) and (local is None or local.done.is_set())
    data: Json = {"flow_run_id": flow_run_id, "name": flow_run.name,
                  "state": state.type.value if state else None, "state_name": state.name if state else None,
                  "message": state.message if state else None, "finished": finished,
                  "ui_url": _ui_link(api_url, flow_run_id),
                  "start_time": flow_run.start_time.isoformat() if flow_run.start_time else None,
                  "end_time": flow_run.end_time.isoformat() if flow_run.end_time else None}
    if finished:
        summary = local.summary if local is not None else None
        if local is not None and local.error is not None:
            data["error"] = local.error
        data["summary"] = summary or _summary_on_disk(app, flow_run_id)
    return data


def _summary_on_disk(app: Any, flow_run_id: str) -> Json | None:
    """The run record a worker wrote (summary.json names its flow run)."""
    import json

    root = Path(app.settings.output_dir)
    for path in sorted(root.glob("*/*/summary.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("flow_run_id") == flow_run_id:
            return data
    return None


def shutdown(app: Any) -> None:
    """Give background runs a bounded time to finish, then stop a Prefect server we started."""
    for run in list(app.runs.values()):
        if not run.done.wait(SHUTDOWN_WAIT):
            log.warning("Flow run %s still running at shutdown; it is left to Prefect", run.flow_run_id)
    stack, app.prefect_stack = app.prefect_stack, None
    if stack is not None:
        stack.stop()
