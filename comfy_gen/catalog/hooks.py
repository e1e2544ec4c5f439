"""Indexing a kept output from the generate path and the flow, without ever failing them.

The sidecar is the truth and ``comfy-gen catalog rebuild`` repairs the index, so a
catalog that cannot be opened or written costs a warning, never a generation.
One ``Catalog`` per database per process is kept open (the flow indexes from many
item threads; opening checks the schema once).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from comfy_gen.urls import redact_text

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.catalog.records import Generation
    from comfy_gen.catalog.store import Catalog
    from comfy_gen.config import Settings
    from comfy_gen.outputs import KeptOutput

log = logging.getLogger(__name__)

_lock = threading.Lock()
_open: dict[tuple[int, str, str], "Catalog"] = {}


def shared_catalog(settings: "Settings") -> "Catalog":
    """This process's catalog for ``settings`` (opened, and migrated, on first use)."""
    from comfy_gen.catalog.store import Catalog, default_catalog_url

    url = default_catalog_url(settings)
    # The pid is part of the key: a forked child must not share its parent's connections.
    key = (os.getpid(), url, str(Path(settings.output_dir).expanduser().resolve()))
    with _lock:
        catalog = _open.get(key)
        if catalog is None:
            catalog = _open[key] = Catalog(url, output_dir=settings.output_dir)
        return catalog


def close_shared() -> None:
    """Close every catalog ``shared_catalog`` opened (tests; long-lived processes on reload)."""
    with _lock:
        catalogs = list(_open.values())
        _open.clear()
    for catalog in catalogs:
        catalog.close()


def index_kept(settings: "Settings", kept: "KeptOutput") -> "Generation | None":
    """Index a kept output in the catalog; None (and a warning) when that fails or is off."""
    if not settings.catalog_enabled or kept.sidecar is None:
        return None  # no sidecar (metadata off): nothing the index could be rebuilt from
    try:
        return shared_catalog(settings).record_sidecar(kept.sidecar)
    except Exception as exc:  # noqa: BLE001 - the index must never fail a generation
        log.warning("Could not index %s in the generation catalog (%s); "
                    "`comfy-gen catalog rebuild` repairs the index", kept.file, redact_text(str(exc)))
        return None
