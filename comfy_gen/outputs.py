"""Finishing an output: keep the best attempt locally with its metadata, then upload.

Order matters (the original got it wrong): the image is moved to its final
local name, its metadata is embedded and its sidecar written, and only then is
it uploaded, so the stored copy carries the same metadata. A failed upload
never fails the generation: the files stay local and wait in the outbox.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from comfy_gen.config import Settings
from comfy_gen.errors import StorageError
from comfy_gen.paths import confine

log = logging.getLogger(__name__)


def adhoc_output_path(settings: Settings, output: str | None) -> Path:
    """Where a one-off render goes: ``--output`` (inside the output folder or the
    working directory) or ``<output_dir>/adhoc/<timestamp>.png``."""
    out_dir = Path(settings.output_dir).resolve()
    stamp = time.strftime("%Y%m%d_%H%M%S") + f"_{time.time_ns() % 10**6:06d}.png"
    if output:
        target = confine(output, [Path.cwd(), out_dir], base=Path.cwd())
        return target / stamp if target.is_dir() or str(output).endswith(("/", "\\")) else target
    return out_dir / "adhoc" / stamp


def store_output(
    best_file: Path,
    target: Path,
    *,
    settings: Settings,
    outcome: Any,
    workflow_name: str,
    params: Any,
    job_key: str | None,
    item: Any | None,
    recipe: str | None,
    run_id: str | None,
    flow_run_id: str | None,
    upload: bool,
    storage: Any | None = None,
    outbox: Any | None = None,
    result: dict[str, Any] | None = None,
    metadata: bool = True,
    organization: dict[str, Any] | None = None,
    generation_time: float | None = None,
    preset: str | None = None,
) -> dict[str, Any]:
    """Move ``best_file`` to ``target``, write metadata, upload; return paths/keys/url.

    ``stored["upload"]`` is ``disabled``, ``local-only`` (no storage configured),
    ``uploaded``, ``skipped`` (same object already there) or ``queued`` (failed,
    waiting in the outbox; ``upload_error`` says why).
    """
    from comfy_gen.metadata import build_metadata, embed_png_metadata, write_sidecar
    from comfy_gen.storage import atomic_copy, object_key

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    best = outcome.best
    if item is not None:
        key = object_key(recipe or "adhoc", item.id, target.suffix or ".png")
    else:
        # One-off renders: the original's "<YYYYmmdd_HHMMSS>_<output name>", so that
        # repeated `-o out.png` runs do not overwrite each other in the bucket.
        key = object_key(recipe or "adhoc", time.strftime("%Y%m%d_%H%M%S_") + target.stem, target.suffix or ".png")
    stored: dict[str, Any] = {"file": str(target), "sidecar": None, "key": None, "url": None,
                              "upload": "disabled"}
    meta: dict[str, Any] | None = None
    if metadata:
        meta = build_metadata(
            params=params, workflow_name=workflow_name, prompt_id=best.prompt_id if best else None, preset=preset,
            validation=_validation(best), attempts=[a.to_dict() for a in outcome.attempts],
            max_attempts=outcome.max_attempts, strategy=outcome.strategy, final_status=outcome.status,
            storage={"file_size_bytes": best_file.stat().st_size, "format": best_file.suffix.lstrip("."),
                     "generation_time_seconds": round(generation_time, 3) if generation_time else None},
            organization=organization, flow_run_id=flow_run_id,
            item_id=item.id if item is not None else None, recipe=recipe,
            backend=getattr(item, "backend", None),
        )
        meta["comfy_gen"].update(
            job_key=job_key, run_id=run_id, workflow=workflow_name,
            params=params.to_dict() if hasattr(params, "to_dict") else params,
            labels=dict(getattr(item, "labels", {}) or {}),
            # The result record makes the sidecar the cache/resume marker too.
            result={k: v for k, v in (result or {}).items() if k != "gpu_spans"},
        )
    # Write to a unique temp name, embed, then rename: an image under its final
    # name is complete. The sidecar comes last: it carries the job key that marks
    # the item done, so a crash in between re-renders rather than trusting a stale image.
    staging = target.with_name(f"{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        atomic_copy(best_file, staging)
        if meta is not None and best_file.suffix.lower() == ".png":
            embed_png_metadata(staging, meta)
        staging.replace(target)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    if meta is not None:
        stored["sidecar"] = str(write_sidecar(target, meta))
    if best_file.resolve() != target.resolve():
        best_file.unlink(missing_ok=True)
    if upload:
        stored.update(_upload(settings, target, key, storage, outbox))
        if meta is not None and stored.get("url"):
            # Record the link locally too (the uploaded sidecar already went up without it).
            meta["storage"].update(url=stored["url"], key=stored.get("key") or key)
            write_sidecar(target, meta)
    return stored


def _validation(best: Any) -> dict[str, Any] | None:
    """The kept attempt's verdict and scores (None when it was not validated)."""
    if best is None or not best.scores:
        return None
    return {"passed": bool(best.passed), "reason": best.reason, **best.scores}


def remove_output(target: Path) -> None:
    """Delete an unfinished output: the image, its sidecar and any staging file."""
    from comfy_gen.storage import sidecar_path

    target = Path(target)
    staging = list(target.parent.glob(f"{target.name}.*.tmp")) if target.parent.is_dir() else []
    for path in (target, sidecar_path(target), *staging):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _upload(settings: Settings, image: Path, key: str, storage: Any | None, outbox: Any | None) -> dict[str, Any]:
    from comfy_gen.storage import Outbox, get_storage, upload_with_sidecar

    try:
        storage = storage or get_storage(settings)
        if not getattr(storage, "remote", False):
            return {"upload": "local-only"}
        outbox = outbox or Outbox.from_settings(settings)
        obj = upload_with_sidecar(storage, image, key, outbox)
    except StorageError as exc:
        # Auth or bucket problems: the files are local and in the outbox; say so loudly.
        log.error("Upload of %s failed (%s); kept locally and queued in the outbox", image, exc)
        return {"upload": "queued", "key": key, "upload_error": str(exc)}
    if obj is None:
        return {"upload": "queued", "key": key}
    return {"upload": "skipped" if obj.skipped else "uploaded", "key": obj.key, "url": obj.url}
