"""Output storage: the local store first, then object storage (S3/MinIO) with an outbox.

    settings = get_settings()
    storage = get_storage(settings)               # S3Storage, or LocalOnlyStorage if unset
    outbox = Outbox.from_settings(settings)
    results = upload_files(storage, [(png, key), (sidecar, key + ".json")], outbox)

``minio`` is imported only when an ``S3Storage`` is built.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from comfy_gen.errors import StorageError
from comfy_gen.storage.base import (CONTENT_TYPES, LocalOnlyStorage, ObjectInfo, Storage, StoredObject,
                                    check_key, content_type_for)
from comfy_gen.storage.local import (ADHOC, LocalStore, atomic_copy, atomic_write_bytes,
                                     atomic_write_json, new_run_id, object_key, sidecar_key, sidecar_path)
from comfy_gen.storage.outbox import Outbox, OutboxEntry, SyncReport, upload_files

log = logging.getLogger(__name__)


def get_storage(settings: Any, **kwargs: Any) -> Storage:
    """``S3Storage`` when ``minio_endpoint`` is set, else ``LocalOnlyStorage``."""
    if getattr(settings, "minio_endpoint", None):
        from comfy_gen.storage.s3 import S3Storage

        return S3Storage.from_settings(settings, **kwargs)
    return LocalOnlyStorage(settings.output_dir)


def upload_with_sidecar(storage: Storage, image: str | Path, key: str, outbox: Outbox | None, *,
                        workers: int = 2) -> StoredObject | None:
    """Upload an image and, when present, its ``<image>.json`` sidecar as ``<key>.json``."""
    files: list[tuple[str | Path, str]] = [(image, key)]
    side = sidecar_path(image)
    if side.is_file():
        files.append((side, sidecar_key(key)))
    return upload_files(storage, files, outbox, workers=workers)[0]


def upload_to_minio(file_path: str, object_name: str, *, settings: Any = None) -> str | None:
    """Seed facade: upload ``file_path`` as ``object_name``; the public URL, or None.

    None means "not uploaded now": storage is not configured, or the upload
    failed (it then waits in the outbox; the error is logged, never raised).
    """
    from comfy_gen.config import get_settings

    settings = settings or get_settings()
    try:
        storage = get_storage(settings)
        if not storage.remote:
            log.info("No object storage configured; %s stays local", file_path)
            return None
        result = upload_files(storage, [(file_path, object_name)], Outbox.from_settings(settings),
                              workers=1)[0]
    except StorageError as exc:  # includes auth/bucket errors, already queued in the outbox
        log.error("Upload of %s failed: %s", object_name, exc)
        return None
    except Exception as exc:  # ConfigError and friends: the seed API never raised here
        log.error("Upload of %s not attempted: %s", object_name, exc)
        return None
    return result.url if result is not None else None


__all__ = [
    "ADHOC", "CONTENT_TYPES", "LocalOnlyStorage", "LocalStore", "ObjectInfo", "Outbox", "OutboxEntry",
    "Storage", "StoredObject", "SyncReport", "atomic_copy", "atomic_write_bytes", "atomic_write_json",
    "check_key", "content_type_for", "get_storage", "new_run_id", "object_key", "sidecar_key",
    "sidecar_path", "upload_files", "upload_to_minio", "upload_with_sidecar",
]
