"""Starting recipe runs for the API: the deployment when Prefect has it, else in this process.

``RunLauncher.start(path)`` plans the run first (``plan_run(confine=True)``: a
bad recipe is a 422 before anything starts), then

* with ``PREFECT_API_URL`` set, a server that answers and a
  ``render-recipe/on-demand`` deployment: ``run_deployment(..., timeout=0)``
  (a worker renders it);
* otherwise: a flow run created through the Prefect client (so its id is known
  at once) and executed by ``run_flow`` on a background thread of this process.

Either way the answer carries the flow run id and its Prefect UI link.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfy_gen.config import Settings

log = logging.getLogger(__name__)

DEPLOYMENT = "render-recipe/on-demand"


@dataclass
class LaunchedRun:
    """A run this API process started (the run record appears when it finishes)."""

    flow_run_id: str
    recipe: str
    recipe_path: str
    mode: str                      # "deployment" | "in-process"
    created_at: float = field(default_factory=time.time)
    status: str = "scheduled"      # scheduled | running | completed | failed
    error: str | None = None
    summary: dict[str, Any] | None = None
    prefect_url: str | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"flow_run_id": self.flow_run_id, "recipe": self.recipe, "mode": self.mode,
                "created_at": self.created_at, "status": self.status, "error": self.error,
                "prefect_url": self.prefect_url, "run_id": (self.summary or {}).get("run_id")}


def prefect_ui_url(flow_run_id: str) -> str | None:
    """The Prefect UI page of a flow run, when a UI is known (PREFECT_UI_URL or the API URL's host)."""
    try:
        from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

        base = PREFECT_UI_URL.value() or ""
        if not base:
            api = PREFECT_API_URL.value() or ""
            base = api[:-4] if api.endswith("/api") else ""
    except Exception:  # noqa: BLE001 - a link is a convenience
        return None
    return f"{base.rstrip('/')}/runs/flow-run/{flow_run_id}" if base else None


class RunLauncher:
    """Starts runs and remembers those it started (thread-safe)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._runs: dict[str, LaunchedRun] = {}
        self._lock = threading.Lock()

    def all(self) -> list[LaunchedRun]:
        with self._lock:
            return list(self._runs.values())

    def find(self, flow_run_id: str) -> LaunchedRun | None:
        with self._lock:
            return self._runs.get(flow_run_id)

    def start(self, recipe_path: Path, *, force: bool = False, max_items: int | None = None,
              upload: bool | None = None) -> LaunchedRun:
        from comfy_gen.config import prefect_api_url
        from comfy_gen.runs import plan_run

        plan = plan_run(recipe_path, settings=self.settings, max_items=max_items, upload=upload, confine=True,
                        migrate=False)
        parameters: dict[str, Any] = {"recipe": str(recipe_path), "force": force}
        if max_items is not None:
            parameters["max_items"] = max_items
        if upload is not None:
            parameters["upload"] = upload
        launched = None
        if prefect_api_url():
            launched = self._via_deployment(plan.recipe.name, parameters)
        if launched is None:
            launched = self._in_process(plan.recipe.name, parameters)
        launched.prefect_url = prefect_ui_url(launched.flow_run_id)
        with self._lock:
            self._runs[launched.flow_run_id] = launched
        return launched

    def _via_deployment(self, recipe: str, parameters: dict[str, Any]) -> LaunchedRun | None:
        """The deployment's flow run, or None when the server or the deployment is not there."""
        from prefect import get_client
        from prefect.deployments import run_deployment
        from prefect.exceptions import ObjectNotFound

        try:
            with get_client(sync_client=True) as client:
                if client.api_healthcheck() is not None:
                    return None
                client.read_deployment_by_name(DEPLOYMENT)
        except ObjectNotFound:
            log.info("No %s deployment on the Prefect server; running in-process", DEPLOYMENT)
            return None
        except Exception as exc:  # noqa: BLE001 - unreachable server: in-process instead
            log.info("Prefect server not reachable (%s); running in-process", exc)
            return None
        flow_run = run_deployment(DEPLOYMENT, parameters=parameters, timeout=0)
        return LaunchedRun(flow_run_id=str(flow_run.id), recipe=recipe,  # type: ignore[union-attr]
                           recipe_path=parameters["recipe"], mode="deployment")

    def _in_process(self, recipe: str, parameters: dict[str, Any]) -> LaunchedRun:
        from prefect import get_client

        from flows.render_recipe import render_recipe

        with get_client(sync_client=True) as client:
            flow_run = client.create_flow_run(render_recipe, parameters=parameters)
        launched = LaunchedRun(flow_run_id=str(flow_run.id), recipe=recipe, recipe_path=parameters["recipe"],
                               mode="in-process")
        thread = threading.Thread(target=self._execute, args=(launched, flow_run, parameters),
                                  name=f"comfy-gen-run-{recipe}", daemon=True)
        launched.thread = thread
        thread.start()
        return launched

    def _execute(self, launched: LaunchedRun, flow_run: Any, parameters: dict[str, Any]) -> None:
        from prefect.flow_engine import run_flow

        from flows.render_recipe import render_recipe

        launched.status = "running"
        try:
            summary = run_flow(render_recipe, flow_run=flow_run, parameters=parameters)
            launched.summary = summary if isinstance(summary, dict) else None
            launched.status = "completed"
        except Exception as exc:  # noqa: BLE001 - recorded for GET /runs/{id}
            launched.summary = getattr(exc, "summary", None)
            launched.status = "failed"
            launched.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("Run of %s failed: %s", launched.recipe, launched.error)

    def refresh(self, launched: LaunchedRun) -> LaunchedRun:
        """A deployment run's state from the Prefect server (best effort)."""
        if launched.mode != "deployment" or launched.status in ("completed", "failed"):
            return launched
        try:
            from prefect import get_client

            with get_client(sync_client=True) as client:
                state = client.read_flow_run(launched.flow_run_id).state  # type: ignore[arg-type]
            if state is not None:
                kind = state.type.value.lower()
                launched.status = {"completed": "completed", "failed": "failed", "crashed": "failed",
                                   "cancelled": "failed", "running": "running"}.get(kind, "scheduled")
        except Exception as exc:  # noqa: BLE001 - the last known state stays
            log.debug("could not read flow run %s: %s", launched.flow_run_id, exc)
        return launched

    def wait(self, flow_run_id: str, timeout: float | None = None) -> bool:
        """Join an in-process run's thread (tests, shutdown)."""
        launched = self.find(flow_run_id)
        if launched is None or launched.thread is None:
            return True
        launched.thread.join(timeout)
        return not launched.thread.is_alive()

    def close(self) -> None:
        """In-process runs are daemon threads: they end with the process (a re-run resumes them)."""
