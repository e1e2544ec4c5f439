"""Finishing an output, in two steps: keep it, then publish it.

``keep_output`` moves the kept attempt to its final local name with its
metadata embedded and its sidecar written; ``publish_output`` uploads that
(or queues it in the outbox). The image is kept before it is published so the
stored copy carries the same metadata, and a failed upload never fails the
generation: the files stay local and wait in the outbox.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping

from comfy_gen.config import Settings
from comfy_gen.errors import StorageError, UsageError
from comfy_gen.params import GenerationParams
from comfy_gen.paths import PathTrust, user_path

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.generation import Attempt, Outcome
    from comfy_gen.storage import Outbox, Storage

log = logging.getLogger(__name__)

#: disabled (no upload asked) | local-only (no object storage configured) | uploaded |
#: skipped (the same object is already there) | queued (failed; waiting in the outbox)
UploadState = Literal["disabled", "local-only", "uploaded", "skipped", "queued"]

#: Re-embedding the metadata with the final size can change the size's own digits;
#: a few rounds always settle it (the size grows by at most one digit per round).
_SIZE_ROUNDS = 4


def utc_stamp() -> str:
    """``YYYYmmdd_HHMMSS`` in UTC (output names and one-off object keys)."""
    return time.strftime("%Y%m%d_%H%M%S", time.gmtime())


def adhoc_output_path(settings: Settings, output: str | None, *, trust: PathTrust = "confined") -> Path:
    """Where a one-off render goes: ``output`` or ``<output_dir>/adhoc/<timestamp>.png``.

    ``trusted`` (a local CLI user's ``--output``): any path, relative to the
    current directory. ``confined``: inside the output folder, relative to it.
    A folder (existing, or written with a trailing slash) gets a timestamped name.
    """
    out_dir = Path(settings.output_dir).expanduser().resolve()
    stamp = f"{utc_stamp()}_{time.time_ns() % 10**6:06d}.png"
    if output:
        target = user_path(output, trust=trust, allowed=[out_dir], base=None if trust == "trusted" else out_dir)
        return target / stamp if target.is_dir() or str(output).endswith(("/", "\\")) else target
    return out_dir / "adhoc" / stamp


def check_output_folder(folder: str | Path, *, what: str = "output folder") -> Path:
    """Fail now (UsageError, exit 2) if images cannot be written under ``folder``.

    Called before anything is rendered: a folder that is a file, sits under a
    file, or cannot be written would otherwise fail after the GPU work. The
    folder need not exist yet; its nearest existing ancestor must be a folder we
    can create files in. Writability is probed with a real file because
    ``os.access`` says yes to root and ignores read-only mounts.
    """
    folder = Path(folder).expanduser().absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a dangling link: mkdir would fail later
            raise UsageError(f"Cannot write to the {what} {folder}: {existing} is a broken symlink")
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"Cannot write to the {what} {folder}: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".comfy-gen-write-check-", dir=existing)
    except OSError as exc:
        raise UsageError(f"Cannot write to the {what} {folder}: {existing} is not writable "
                         f"({exc.strerror or exc})") from exc
    os.close(fd)
    os.unlink(probe)
    return folder


#: sections and fields holding user text, never paths
_TEXT_KEYS = frozenset({"input", "prompt", "negative_prompt"})


def localise_paths(meta: Any, base: Path) -> Any:
    """``meta`` with every absolute local path made relative to ``base`` (the image's folder).

    The document travels with the image (PNG chunk, uploaded sidecar): a path like
    ``/home/alice/wf.json`` names a user and a machine. Only strings that are
    absolute *and* exist here are rewritten, so a prompt that starts with ``/``
    is left alone; a path on another drive (Windows) keeps only its file name.
    """
    if isinstance(meta, dict):
        return {k: v if k in _TEXT_KEYS else localise_paths(v, base) for k, v in meta.items()}
    if isinstance(meta, list):
        return [localise_paths(v, base) for v in meta]
    if isinstance(meta, str) and "\x00" not in meta and len(meta) < 4096 and os.path.isabs(meta) \
            and "://" not in meta and os.path.exists(meta):
        try:
            return Path(os.path.relpath(meta, base)).as_posix()
        except ValueError:
            return Path(meta).name
    return meta


@dataclass(frozen=True)
class OutputContext:
    """What an output's metadata records about where it came from."""

    workflow_name: str
    params: GenerationParams
    preset: str | None = None
    organization: Mapping[str, str | None] = field(default_factory=dict)
    generation_time: float | None = None
    job_key: str | None = None
    run_id: str | None = None
    flow_run_id: str | None = None
    recipe: str | None = None
    item_id: str | None = None
    backend: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    #: the catalog's id for this output (a new uuid4 hex when None)
    generation_id: str | None = None
    #: what the output was composed from: the recipe file's sha256 or a composition's recipe_hash
    recipe_hash: str | None = None
    categories: tuple[str, ...] = ()
    #: the recipe's ``output.prefix``: the first part of recipe items' object keys
    key_prefix: str | None = None
    #: the item's result record: it makes the sidecar the cache/resume marker too
    result: Mapping[str, object] = field(default_factory=dict)
    #: the prompt enhancement (comfy_gen.enhance.Enhanced): input.original_prompt, input.enhancement
    enhancement: Any = None


@dataclass(frozen=True)
class KeptOutput:
    """An image under its final local name; ``key`` is where it would be published."""

    file: Path
    key: str
    sidecar: Path | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class Publication:
    """The outcome of publishing a kept output."""

    state: UploadState = "disabled"
    key: str | None = None
    url: str | None = None
    error: str | None = None


def object_key_for(context: OutputContext, target: Path) -> str:
    """The object key: ``<prefix>/<item>`` for recipe items (``output.prefix``, by
    default the recipe name); one-off renders get ``adhoc/<UTC time>_<name>`` so
    repeated ``-o out.png`` never overwrite each other."""
    from comfy_gen.storage import object_key

    suffix = target.suffix or ".png"
    if context.item_id is not None:
        return object_key(context.key_prefix or context.recipe or "adhoc", context.item_id, suffix)
    return object_key(context.recipe or "adhoc", f"{utc_stamp()}_{target.stem}", suffix)


def build_output_metadata(context: OutputContext, outcome: "Outcome") -> dict[str, Any]:
    """The metadata document for the kept attempt of ``outcome`` (size filled in on keeping)."""
    from comfy_gen.metadata import build_metadata

    best = outcome.best
    # One id for the top-level field and comfy_gen's: the catalog keys its rows on it.
    generation_id = context.generation_id or uuid.uuid4().hex
    meta = build_metadata(
        params=context.params, workflow_name=context.workflow_name,
        prompt_id=best.prompt_id if best else None, preset=context.preset,
        verdicts=best.verdicts if best else None, attempts=[a.to_dict() for a in outcome.attempts],
        max_attempts=outcome.max_attempts, strategy=outcome.strategy, final_status=outcome.status,
        storage={"file_size_bytes": None, "format": None,
                 "generation_time_seconds": round(context.generation_time, 3) if context.generation_time else None},
        organization=dict(context.organization) or None, flow_run_id=context.flow_run_id,
        item_id=context.item_id, recipe=context.recipe, backend=context.backend, generation_id=generation_id,
    )
    if context.enhancement is not None:
        from comfy_gen.enhance.apply import input_record

        meta["input"].update(input_record(context.enhancement))
    meta["comfy_gen"].update(
        generation_id=generation_id, recipe_hash=context.recipe_hash, categories=list(context.categories),
        job_key=context.job_key, run_id=context.run_id, workflow=context.workflow_name,
        params=context.params.to_dict(), labels=dict(context.labels),
        result={k: v for k, v in context.result.items() if k != "gpu_spans"},
    )
    return meta


def keep_output(source: Path, target: Path, *, key: str, metadata: dict[str, Any] | None,
                embed: bool = True) -> KeptOutput:
    """Move ``source`` to ``target`` with ``metadata`` embedded (PNG; not with
    ``embed=False``) and in a sidecar.

    The image is written under a unique temporary name and renamed, so a file
    under its final name is complete. The sidecar comes last: it carries the
    job key that marks an item done, so a crash in between re-renders rather
    than trusting a stale image. ``file_size_bytes`` is the stored file's size.
    """
    from comfy_gen.metadata import write_sidecar
    from comfy_gen.storage import atomic_copy

    source, target = Path(source), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if metadata is not None:
        metadata = localise_paths(metadata, target.parent.resolve())
    meta = None if metadata is None else {**metadata, "storage": dict(metadata.get("storage") or {})}
    staging = target.with_name(f"{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        atomic_copy(source, staging)
        if meta is not None:
            meta["storage"]["format"] = source.suffix.lstrip(".")
            _record_media(staging, meta)
            _embed_with_size(staging, meta, is_png=embed and source.suffix.lower() == ".png")
        staging.replace(target)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    sidecar = write_sidecar(target, meta) if meta is not None else None
    if source.resolve() != target.resolve():
        source.unlink(missing_ok=True)
    return KeptOutput(file=target, key=key, sidecar=sidecar, metadata=meta)


def _record_media(path: Path, meta: dict[str, Any]) -> None:
    """A video or animation gets ``storage.media`` (kind, size, frames, fps, duration);
    its metadata lives in the sidecar only (only PNG carries embedded chunks)."""
    from comfy_gen.media import media_info

    try:
        info = media_info(path)
    except OSError:
        return  # not an image Pillow reads: nothing to add
    if info.moving:
        meta["storage"]["media"] = info.to_dict()


def _embed_with_size(path: Path, meta: dict[str, Any], *, is_png: bool) -> None:
    """Record the file's size as stored, i.e. after the metadata itself went in."""
    from comfy_gen.metadata import embed_png_metadata

    meta["storage"]["file_size_bytes"] = path.stat().st_size
    if not is_png:
        return
    for _ in range(_SIZE_ROUNDS):
        embed_png_metadata(path, meta)
        size = path.stat().st_size
        if size == meta["storage"]["file_size_bytes"]:
            return
        meta["storage"]["file_size_bytes"] = size


def publish_output(kept: KeptOutput, storage: "Storage", outbox: "Outbox | None") -> Publication:
    """Upload the kept image and its sidecar; a failure queues them in ``outbox``.

    ``local-only`` when ``storage`` is not remote. With a URL, the local sidecar
    records it too (the uploaded sidecar went up before the URL was known).
    """
    from comfy_gen.metadata import write_sidecar
    from comfy_gen.storage import upload_with_sidecar

    if not storage.remote:
        return Publication("local-only")
    try:
        obj = upload_with_sidecar(storage, kept.file, kept.key, outbox)
    except StorageError as exc:
        # Auth or bucket problems: the files are local and in the outbox; say so loudly.
        log.error("Upload of %s failed (%s); kept locally and queued in the outbox", kept.file, exc)
        return Publication("queued", key=kept.key, error=str(exc))
    if obj is None:
        return Publication("queued", key=kept.key)
    publication = Publication("skipped" if obj.skipped else "uploaded", key=obj.key, url=obj.url)
    if kept.metadata is not None and obj.url:
        kept.metadata["storage"].update(url=obj.url, key=obj.key or kept.key)
        write_sidecar(kept.file, kept.metadata)
    elif obj.url:
        # Published later than it was kept (a cached item, an earlier local-only run):
        # the sidecar on disk is the record to update.
        from comfy_gen.storage.outbox import record_url

        record_url(kept.file, obj)
    return publication


def publish_with_settings(kept: KeptOutput, settings: Settings, *, storage: "Storage | None" = None,
                          outbox: "Outbox | None" = None) -> Publication:
    """``publish_output`` to the configured storage and outbox (a storage that
    cannot even be set up counts as a failed upload: ``queued``)."""
    from comfy_gen.storage import Outbox, get_storage

    try:
        storage = storage or get_storage(settings)
        if storage.remote:
            outbox = outbox or Outbox.from_settings(settings)
    except StorageError as exc:
        log.error("Upload of %s failed (%s); kept locally", kept.file, exc)
        return Publication("queued", key=kept.key, error=str(exc))
    return publish_output(kept, storage, outbox)


def remove_output(target: Path) -> None:
    """Delete an unfinished output: the image, its sidecar and any staging file."""
    from comfy_gen.storage import sidecar_path

    target = Path(target)
    staging = list(target.parent.glob(f"{target.name}.*.tmp")) if target.parent.is_dir() else []
    for path in (target, sidecar_path(target), *staging):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
