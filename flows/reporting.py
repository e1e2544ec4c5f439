"""Run history in the Prefect UI: progress, summary, table and contact sheet.

Everything is also written to the run folder (``summary.json``,
``results.jsonl``, ``summary.md``, ``contact_sheet.png``) so a run can be read
without the Prefect server.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from uuid import UUID
from typing import Any

log = logging.getLogger(__name__)


class Progress:
    """A progress artifact updated as items finish (at most once a second)."""

    def __init__(self, total: int, key: str, min_interval: float = 1.0) -> None:
        from prefect.artifacts import create_progress_artifact

        self.total = max(total, 1)
        self.min_interval = min_interval
        self._last = 0.0
        artifact_id = create_progress_artifact(0.0, key=_artifact_key(key),
                                               description=f"Items finished (of {total})")
        assert isinstance(artifact_id, UUID)  # sync context: the call returned, not a coroutine
        self._id = artifact_id

    def update(self, done: int) -> None:
        from prefect.artifacts import update_progress_artifact

        now = time.monotonic()
        if done < self.total and now - self._last < self.min_interval:
            return
        self._last = now
        update_progress_artifact(self._id, 100.0 * done / self.total,
                                 description=f"{done} of {self.total} items finished")


def _artifact_key(text: str) -> str:
    # Artifact keys allow lowercase letters, digits and dashes only.
    cleaned = "".join(c if c.isalnum() else "-" for c in text.lower())
    return "-".join(part for part in cleaned.split("-") if part)[:100] or "run"


def table_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        scores = r.get("scores") or {}
        rows.append({
            "item": r.get("item_id"), "labels": ", ".join(f"{k}={v}" for k, v in (r.get("labels") or {}).items()),
            "prompt": (r.get("prompt") or "")[:80], "seed": r.get("seed"),
            "status": str(r.get("status")) + (f" ({r['outcome']})" if r.get("cached") and r.get("outcome") else ""),
            "attempts": r.get("attempts"),
            "clip": None if scores.get("positive_score") is None else round(scores["positive_score"], 2),
            "delta": None if scores.get("score_delta") is None else round(scores["score_delta"], 2),
            "output": r.get("url") or r.get("file") or r.get("error") or "",
        })
    return rows


def markdown_summary(summary: dict[str, Any], sheet: str | None) -> str:
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(summary["counts"].items()))
    busy = summary.get("gpu_busy_fraction")
    rate = summary.get("pass_rate")
    lines = [
        f"# Recipe `{summary['recipe']}` run {summary['run_id']}", "",
        "| metric | value |", "|---|---|",
        f"| items | {summary['items']} ({counts}) |",
        f"| rendered / cached | {summary['rendered']} / {summary['cached']} |",
        f"| ComfyUI jobs (all attempts) | {summary['jobs']} |",
        f"| validation pass rate | {'n/a' if rate is None else f'{100 * rate:.1f} %'} |",
        f"| GPU busy (server clock) | {'n/a' if busy is None else f'{100 * busy:.1f} %'} |",
        f"| wall time | {summary['wall_seconds']:.1f} s |",
        f"| outputs | `{summary['items_dir']}` |",
    ]
    if summary.get("validation_skipped"):
        lines += ["", "**Validation was skipped: the CLIP model could not be loaded.**"]
    if sheet:
        lines += ["", "## Contact sheet", "", f"![contact sheet]({sheet})", "", f"[{sheet}]({sheet})"]
    if summary.get("errors"):
        lines += ["", "## Errors", ""] + [f"- `{e['item_id']}`: {e['error']}" for e in summary["errors"]]
    return "\n".join(lines) + "\n"


def contact_sheet(run: Any, results: list[dict[str, Any]]) -> Path | None:
    """Thumbnails with labels; rows x columns when the recipe is a 2-axis matrix."""
    from comfy_gen.recipes.contact_sheet import make_contact_sheet

    entries: list[tuple[Path | str | None, dict[str, Any]]] = []
    for r in results:
        path = r.get("file")
        score = (r.get("scores") or {}).get("positive_score")
        caption = r.get("status", "") + ("" if score is None else f" {score:.1f}")
        entries.append((Path(path) if path and Path(path).exists() else None,
                        {**(r.get("labels") or {}), "_grid": r.get("grid"), "_caption": caption}))
    if not entries:
        return None
    rows_axis, cols_axis = getattr(run, "layout", (None, None))
    image = make_contact_sheet(entries, rows_axis=rows_axis, cols_axis=cols_axis)
    target = run.run_dir / "contact_sheet.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target)
    return target


def publish(run: Any, results: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """Write the run record to disk and to the Prefect UI."""
    from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact

    run.run_dir.mkdir(parents=True, exist_ok=True)
    sheet_path = None
    try:
        if getattr(getattr(run.recipe, "output", None), "contact_sheet", True):
            sheet_path = contact_sheet(run, results)
    except Exception as exc:  # noqa: BLE001 - a drawing failure must not fail the run
        log.warning("Could not draw the contact sheet: %s", exc)
    sheet_link = None
    if sheet_path is not None:
        sheet_link = sheet_path.resolve().as_uri()
        summary["contact_sheet"] = str(sheet_path)
        if run.upload and run.storage is not None:
            try:
                stored = run.storage.put(sheet_path, f"{run.recipe.name}/runs/{run.run_id}/contact_sheet.png")
                sheet_link = stored.url
                create_image_artifact(stored.url, key=_artifact_key(f"{run.recipe.name}-contact-sheet"),
                                      description="Contact sheet")
            except Exception as exc:  # noqa: BLE001 - stays local, linked by path
                log.warning("Contact sheet upload failed, kept locally: %s", exc)
    with open(run.run_dir / "results.jsonl", "w") as fh:
        for r in results:
            fh.write(json.dumps(r, default=str) + "\n")
    (run.run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    markdown = markdown_summary(summary, sheet_link)
    (run.run_dir / "summary.md").write_text(markdown)
    create_markdown_artifact(markdown, key=_artifact_key(f"{run.recipe.name}-summary"),
                             description=f"Run summary for {run.recipe.name}")
    create_table_artifact(table_rows(results), key=_artifact_key(f"{run.recipe.name}-items"),
                          description="Items: prompt, seed, attempts, scores, output")
