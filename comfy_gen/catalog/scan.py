"""Finding the sidecars in an output folder (what ``Catalog.rebuild`` re-indexes)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from comfy_gen.catalog.records import SIDECAR_SUFFIX


def iter_sidecars(root: Path) -> Iterator[Path]:
    """Every ``<image>.json`` under ``root`` whose image exists, in a stable order.

    Hidden folders (``.outbox``) and staging files are skipped, and symlinked
    folders are not followed (an output folder never needs them; a loop would
    never end). Run records (``summary.json``) have no image of their name.
    """
    root = Path(root)
    if not root.is_dir():
        return
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        names = set(files)
        for name in sorted(files):
            if not name.endswith(SIDECAR_SUFFIX) or name.endswith(".tmp"):
                continue
            image = name[: -len(SIDECAR_SUFFIX)]
            if image in names and not image.endswith(SIDECAR_SUFFIX):
                yield Path(folder) / name
