"""Run history in the Prefect UI: progress, summary, table and contact sheet.

The run folder holds the same record (``comfy_gen.runrecord``: summary.json,
results.jsonl, summary.md, contact_sheet.png), so a run can be read without
the Prefect server; this module only turns it into artifacts.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Sequence
from uuid import UUID

from comfy_gen.results import ItemResult, RunSummary
from comfy_gen.runrecord import markdown_summary, public_link, table_rows

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.backends import GateActivity

log = logging.getLogger(__name__)


class Progress:
    """A progress artifact updated as items finish (at most once a second): how many
    are done, how many hold a GPU slot (rendering or queued in ComfyUI) and how many
    wait for one, so the bar never says more items run than the GPU bound allows."""

    def __init__(self, total: int, key: str, min_interval: float = 1.0) -> None:
        from prefect.artifacts import create_progress_artifact

        self.total = max(total, 1)
        self.min_interval = min_interval
        self._last = 0.0
        artifact_id = create_progress_artifact(0.0, key=_artifact_key(key),
                                               description=f"0 of {total} items done")
        assert isinstance(artifact_id, UUID)  # sync context: the call returned, not a coroutine
        self._id = artifact_id

    def update(self, done: int, activity: "GateActivity | None" = None) -> None:
        from prefect.artifacts import update_progress_artifact

        now = time.monotonic()
        if done < self.total and now - self._last < self.min_interval:
            return
        self._last = now
        update_progress_artifact(self._id, 100.0 * done / self.total,
                                 description=progress_text(done, self.total, activity))


def progress_text(done: int, total: int, activity: "GateActivity | None" = None) -> str:
    """``7 of 20 items done, 2 rendering, 4 waiting for GPU`` (the gate's own counts)."""
    text = f"{done} of {total} items done"
    if activity is not None and done < total:
        text += f", {activity.holding} rendering, {activity.waiting} waiting for GPU"
    return text


def _artifact_key(text: str) -> str:
    # Artifact keys allow lowercase letters, digits and dashes only.
    cleaned = "".join(c if c.isalnum() else "-" for c in text.lower())
    return "-".join(part for part in cleaned.split("-") if part)[:100] or "run"


def publish(summary: RunSummary, results: Sequence[ItemResult]) -> None:
    """The run record as Prefect artifacts: summary markdown, item table, contact sheet.

    Keys carry the run id: after a UI Retry each attempt keeps its own artifacts.
    """
    from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact

    from comfy_gen.config import get_settings

    settings = get_settings()   # COMFY_GEN_PUBLIC_URL: links through the web app (comfy-gen serve)
    base = f"{summary.recipe}-{summary.run_id}"
    create_markdown_artifact(markdown_summary(summary, settings=settings), key=_artifact_key(f"{base}-summary"),
                             description=f"Run summary for {summary.recipe}")
    create_table_artifact(table_rows(results, settings=settings), key=_artifact_key(f"{base}-items"),
                          description="Items: status, score, attempts, prompt, seed, output")
    sheet_url = summary.contact_sheet_url or public_link(summary.contact_sheet, settings)
    if sheet_url:
        create_image_artifact(sheet_url, key=_artifact_key(f"{base}-contact-sheet"), description="Contact sheet")
