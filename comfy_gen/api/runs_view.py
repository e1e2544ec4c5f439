"""Recipe runs as the API shows them, read from the run records in the output folder.

A finished run is its folder ``<output>/<recipe>/<run_id>/`` (summary.json,
results.jsonl, contact_sheet.png: comfy_gen.runrecord); a run this process
started and that has not finished yet comes from the launcher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.api.context import ApiContext

import json
import logging
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote as quote_path

from comfy_gen.errors import NotFound

log = logging.getLogger(__name__)

FILES = "/api/v1/images/files/"


def file_link(ctx: ApiContext, path: str | None) -> str | None:
    rel = ctx.relative(path) if path else None
    return FILES + quote_path(rel) if rel else None


def _summaries(ctx: ApiContext) -> Iterator[Path]:
    root: Path = ctx.output_dir
    if not root.is_dir():
        return
    for pattern in ("*/*/summary.json", "*/*/*/summary.json"):
        yield from root.glob(pattern)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.info("skipping unreadable run record %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) and data.get("run_id") else None


def record_view(ctx: ApiContext, data: dict[str, Any], folder: Path) -> dict[str, Any]:
    from comfy_gen.api.launcher import prefect_ui_url

    sheet = folder / "contact_sheet.png"
    flow_run_id = data.get("flow_run_id")
    errors = data.get("errors") or []
    return {
        "run_id": data["run_id"], "recipe": data.get("recipe"), "flow_run_id": flow_run_id,
        "status": "failed" if errors else "completed", "items": data.get("items"),
        "counts": data.get("counts") or {}, "rendered": data.get("rendered"), "cached": data.get("cached"),
        "jobs": data.get("jobs"), "pass_rate": data.get("pass_rate"), "wall_seconds": data.get("wall_seconds"),
        "errors": errors, "contact_sheet_url": file_link(ctx, str(sheet)) if sheet.is_file() else None,
        "prefect_url": prefect_ui_url(flow_run_id) if flow_run_id else None,
        "page": f"/#/runs/{data['run_id']}",
    }


def list_runs(ctx: ApiContext, *, recipe: str | None = None) -> list[dict[str, Any]]:
    """Finished runs (records) and this process's unfinished ones, newest first."""
    runs: list[dict[str, Any]] = []
    recorded: set[str] = set()
    for path in _summaries(ctx):
        data = _read(path)
        if data is None or (recipe and data.get("recipe") != recipe):
            continue
        view = record_view(ctx, data, path.parent)
        runs.append(view)
        if view["flow_run_id"]:
            recorded.add(str(view["flow_run_id"]))
    for launched in ctx.launcher.all():
        if launched.flow_run_id in recorded or (recipe and launched.recipe != recipe):
            continue
        ctx.launcher.refresh(launched)
        runs.append({**launched.to_dict(), "run_id": launched.to_dict()["run_id"] or launched.flow_run_id,
                     "page": f"/#/runs/{launched.flow_run_id}"})
    runs.sort(key=lambda r: str(r.get("run_id")), reverse=True)
    return runs


def get_run(ctx: ApiContext, run_id: str) -> dict[str, Any]:
    """One run by comfy-gen run id or flow run id, with its items."""
    for path in _summaries(ctx):
        data = _read(path)
        if data is None or run_id not in (data.get("run_id"), data.get("flow_run_id")):
            continue
        view = record_view(ctx, data, path.parent)
        view["item_results"] = list(_items(ctx, path.parent / "results.jsonl"))
        return view
    launched = ctx.launcher.find(run_id)
    if launched is not None:
        ctx.launcher.refresh(launched)
        return {**launched.to_dict(), "run_id": launched.flow_run_id, "item_results": []}
    raise NotFound(f"No run {run_id!r}", kind="run", id=run_id)


def _items(ctx: ApiContext, path: Path) -> Iterator[dict[str, Any]]:
    from comfy_gen.validation.report import checks_cell

    if not path.is_file():
        return
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            yield {"item_id": row.get("item_id"), "index": row.get("index"), "verdict": row.get("verdict"),
                   "source": row.get("source"), "prompt": row.get("prompt"), "seed": row.get("seed"),
                   "labels": row.get("labels") or {}, "scores": row.get("scores"), "attempts": row.get("attempts"),
                   "error": row.get("error"), "image_url": file_link(ctx, row.get("file")), "url": row.get("url"),
                   "checks": checks_cell(row.get("verdicts") or [])}
