"""The run record: a run's results written next to its images, readable without Prefect.

``<output>/<recipe>/<run_id>/``: ``results.jsonl`` (one ``ItemResult`` a line),
``summary.json`` (the ``RunSummary``), ``summary.md`` (the same as markdown, also
the Prefect summary artifact) and ``contact_sheet.png``. The flow's artifacts
(flows/reporting.py) are built from the same rows and markdown.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from comfy_gen.results import VERDICT_LABELS, ItemResult, RunSummary

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.batch import BatchRun
    from comfy_gen.config import Settings

log = logging.getLogger(__name__)


def public_link(path: str | Path | None, settings: "Settings | None") -> str | None:
    """The web app's URL of a file in the output folder, when ``COMFY_GEN_PUBLIC_URL`` names the API
    server (browsers refuse file:// links from the Prefect UI); None otherwise."""
    from urllib.parse import quote

    base = getattr(settings, "public_url", None)
    if not base or not path:
        return None
    try:
        rel = Path(path).resolve().relative_to(Path(settings.output_dir).resolve())  # type: ignore[union-attr]
    except (ValueError, OSError):
        return None
    return f"{base}/api/v1/images/files/{quote(rel.as_posix())}"


def table_rows(results: Sequence[ItemResult], *, settings: "Settings | None" = None) -> list[dict[str, Any]]:
    """One row per item: verdict and score first (what a person scans), paths last."""
    rows = []
    for r in results:
        scores = r.scores or {}
        positive, delta = scores.get("positive_score"), scores.get("score_delta")
        rows.append({
            "status": VERDICT_LABELS[r.verdict] + (" (stored earlier)" if r.cached else ""),
            "clip": None if positive is None else round(float(positive), 2),
            "delta": None if delta is None else round(float(delta), 2),
            # Every validator's verdict ("clip ok, person FAIL"); the reason names the first failure.
            "checks": ", ".join(f"{v.validator} {'ok' if v.passed else 'FAIL'}" for v in r.verdicts),
            "attempts": r.attempts,
            "labels": ", ".join(f"{k}={v}" for k, v in r.labels.items()),
            "prompt": (r.prompt or "")[:80], "seed": r.seed, "item": r.item_id,
            "output": r.url or public_link(r.file, settings) or r.file or r.error or "",
        })
    return rows


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def markdown_summary(summary: RunSummary, *, settings: "Settings | None" = None) -> str:
    """The run summary as markdown. An uploaded contact sheet (or one the web app
    serves, COMFY_GEN_PUBLIC_URL) is shown; a local one is named rather than shown
    as a broken image."""
    sheet = summary.contact_sheet_url or public_link(summary.contact_sheet, settings) or summary.contact_sheet
    counts = ", ".join(f"{VERDICT_LABELS.get(k, k).lower()}: {v}" for k, v in sorted(summary.counts.items()))
    lines = [
        f"# Recipe `{summary.recipe}` run {summary.run_id}", "",
        "| metric | value |", "|---|---|",
        f"| items | {summary.items} ({counts}) |",
        f"| rendered now / stored earlier / failed | {summary.rendered} / {summary.cached} / {summary.failed} |",
        f"| ComfyUI jobs (all attempts) | {summary.jobs} |",
        f"| validation pass rate | {_pct(summary.pass_rate)} |",
        f"| GPU busy (server clock) | {_pct(summary.gpu_busy_fraction)} |",
        f"| wall time | {summary.wall_seconds:.1f} s |",
        f"| outputs | `{summary.items_dir}` |",
    ]
    if getattr(settings, "public_url", None) and summary.run_id:
        lines += ["", f"[Open this run in the web app]({settings.public_url}/#/runs/{summary.run_id})"]  # type: ignore[union-attr]
    if summary.validation_skipped:
        lines += ["", "**Validation was skipped: the CLIP model could not be loaded.**"]
    if sheet and sheet.startswith(("http://", "https://")):
        lines += ["", "## Contact sheet", "", f"![contact sheet]({sheet})", "", f"[{sheet}]({sheet})"]
    elif sheet:
        # Browsers refuse file:// links from an http page: name the file instead of a broken image.
        lines += ["", "## Contact sheet", "", f"Saved on the worker at `{sheet}`.",
                  "Browsers do not open local files from this page: open it there, or enable uploads "
                  "(`output.upload` with S3/MinIO configured) to see it here."]
    if summary.errors:
        lines += ["", "## Errors", ""] + [f"- {e.describe()}" for e in summary.errors]
    return "\n".join(lines) + "\n"


def contact_sheet(run: "BatchRun", results: Sequence[ItemResult]) -> Path | None:
    """Thumbnails with labels; rows x columns when the recipe is a 2-axis matrix."""
    from comfy_gen.recipes.contact_sheet import make_contact_sheet

    entries: list[tuple[Path | str | None, dict[str, Any]]] = []
    for r in results:
        score = (r.scores or {}).get("positive_score")
        caption = r.verdict + ("" if score is None else f" {float(score):.1f}")
        path = Path(r.file) if r.file and Path(r.file).exists() else None
        entries.append((path, {**r.labels, "_grid": list(r.grid) if r.grid else None, "_caption": caption}))
    if not entries:
        return None
    rows_axis, cols_axis = run.layout
    image = make_contact_sheet(entries, rows_axis=rows_axis, cols_axis=cols_axis)
    target = run.run_dir / "contact_sheet.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target)
    return target


def write_record(run: "BatchRun", results: Sequence[ItemResult], summary: RunSummary) -> RunSummary:
    """Write the run folder's files; returns the summary with the contact sheet's location."""
    run.run_dir.mkdir(parents=True, exist_ok=True)
    sheet_path = None
    if run.recipe.output.contact_sheet:
        try:
            sheet_path = contact_sheet(run, results)
        except Exception as exc:  # noqa: BLE001 - a drawing failure must not fail the run
            log.warning("Could not draw the contact sheet: %s", exc)
    if sheet_path is not None:
        summary = summary.replace(contact_sheet=str(sheet_path.resolve()))
        if run.upload and run.storage is not None and run.storage.remote:
            try:
                key = f"{run.recipe.name}/runs/{run.run_id}/contact_sheet.png"
                summary = summary.replace(contact_sheet_url=run.storage.put(sheet_path, key).url)
            except Exception as exc:  # noqa: BLE001 - stays local, named by path
                log.warning("Contact sheet upload failed, kept locally: %s", exc)
    with open(run.run_dir / "results.jsonl", "w", encoding="utf-8") as fh:
        for r in results:
            fh.write(json.dumps(r.to_dict(), default=str) + "\n")
    (run.run_dir / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2, default=str))
    (run.run_dir / "summary.md").write_text(markdown_summary(summary, settings=run.settings))
    return summary
