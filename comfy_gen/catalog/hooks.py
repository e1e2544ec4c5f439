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
import time
from collections import OrderedDict
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
_open: "OrderedDict[tuple[int, str, str], Catalog]" = OrderedDict()
#: Catalogs kept open per process; the least recently used beyond this is closed (each holds
#: a few connections; a process that switches settings often must not collect file handles).
MAX_OPEN = 4
#: After a catalog fails to open, the hook skips it this long (s): a flow of a thousand items
#: must not wait for an unreachable database's connect timeout on every one of them.
RETRY_OPEN_AFTER = 60.0
_failed_open: dict[tuple[int, str, str], float] = {}


def shared_catalog(settings: "Settings") -> "Catalog":
    """This process's catalog for ``settings`` (opened, and migrated, on first use)."""
    from comfy_gen.catalog.store import Catalog

    key = _key(settings)
    url = key[1]
    with _lock:
        catalog = _open.get(key)
        if catalog is not None:
            _open.move_to_end(key)
            return catalog
        catalog = _open[key] = Catalog(url, output_dir=settings.output_dir)
        evicted = [_open.popitem(last=False)[1] for _ in range(len(_open) - MAX_OPEN)]
    for old in evicted:
        old.close()  # a call still using it finishes on its own connection
    return catalog


def close_shared() -> None:
    """Close every catalog ``shared_catalog`` opened (tests; long-lived processes on reload)."""
    with _lock:
        catalogs = list(_open.values())
        _open.clear()
        _failed_open.clear()
    for catalog in catalogs:
        catalog.close()


def _key(settings: "Settings") -> tuple[int, str, str]:
    from comfy_gen.catalog.store import default_catalog_url

    # The pid is part of the key: a forked child must not share its parent's connections.
    return (os.getpid(), default_catalog_url(settings), str(Path(settings.output_dir).expanduser().resolve()))


def index_kept(settings: "Settings", kept: "KeptOutput") -> "Generation | None":
    """Index a kept output in the catalog; None (and a warning) when that fails or is off."""
    if not settings.catalog_enabled or kept.sidecar is None:
        return None  # no sidecar (metadata off): nothing the index could be rebuilt from
    try:
        key = _key(settings)
        failed = _failed_open.get(key)
        if failed is not None and time.monotonic() - failed < RETRY_OPEN_AFTER:
            log.debug("Catalog unavailable (retried after %.0f s); not indexing %s", RETRY_OPEN_AFTER, kept.file)
            return None
        try:
            catalog = shared_catalog(settings)
        except Exception:
            _failed_open[key] = time.monotonic()
            raise
        _failed_open.pop(key, None)
        return catalog.record_sidecar(kept.sidecar)
    except Exception as exc:  # noqa: BLE001 - the index must never fail a generation
        log.warning("Could not index %s in the generation catalog (%s); "
                    "`comfy-gen catalog rebuild` repairs the index", kept.file, redact_text(str(exc)))
        return None
