"""What every request handler shares: settings, the jobs manager, the catalog, the run launcher."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comfy_gen.config import Settings
from comfy_gen.errors import ComfyGenError, NotFound, PathNotAllowed, StorageUnavailable
from comfy_gen.jobs import JobManager

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.api.launcher import RunLauncher
    from comfy_gen.categories import CategoryRegistry
    from comfy_gen.catalog import Catalog, Generation

log = logging.getLogger(__name__)


class ApiContext:
    """One per app. The catalog opens on first use, so a broken database degrades
    /health and the catalog endpoints (503) instead of stopping the server."""

    def __init__(self, settings: Settings, *, catalog: "Catalog | None" = None) -> None:
        from comfy_gen.api.launcher import RunLauncher

        self.settings = settings
        self._catalog = catalog
        self._catalog_lock = threading.Lock()
        self.jobs = JobManager(settings)
        self.launcher: RunLauncher = RunLauncher(settings)

    # -- shared resources ---------------------------------------------------------------
    def registry(self) -> "CategoryRegistry":
        from comfy_gen.categories import get_registry

        return get_registry(self.settings)

    def catalog(self) -> "Catalog":
        with self._catalog_lock:
            if self._catalog is None:
                try:
                    # The same catalog the service indexes API generations into (one per database).
                    from comfy_gen.catalog import shared_catalog

                    self._catalog = shared_catalog(self.settings)
                except ComfyGenError:
                    raise
                except Exception as exc:  # a driver's own error: the catalog is down, not the API
                    raise StorageUnavailable(f"The generation catalog cannot be opened: {exc}") from exc
            return self._catalog

    def close(self) -> None:
        self.jobs.close()
        self.launcher.close()

    # -- paths --------------------------------------------------------------------------
    @property
    def output_dir(self) -> Path:
        return Path(self.settings.output_dir).resolve()

    def output_file(self, path: str | Path) -> Path:
        """``path`` (absolute, or relative to the output folder) if it is a file inside it; else NotFound."""
        from comfy_gen.paths import confine

        candidate = Path(path)
        if not candidate.is_absolute():
            candidate = self.output_dir / candidate
        try:
            resolved = confine(candidate, [self.output_dir])
        except PathNotAllowed:
            raise NotFound("No such file in the output folder", kind="file") from None
        if not resolved.is_file():
            raise NotFound("No such file in the output folder", kind="file")
        return resolved

    def relative(self, path: str | Path | None) -> str | None:
        """A path as the API shows it: relative to the output folder (absolute paths stay on the server)."""
        if not path:
            return None
        try:
            return Path(path).resolve().relative_to(self.output_dir).as_posix()
        except ValueError:
            return None

    # -- generations --------------------------------------------------------------------
    def generation(self, generation_id: str) -> "Generation":
        """A catalog generation (job ids are catalog ids: POST /generate picks them); NotFound otherwise."""
        from comfy_gen.catalog import check_generation_id

        try:
            gid = check_generation_id(generation_id)
        except ComfyGenError:
            raise NotFound(f"No generation {generation_id[:80]!r}", kind="generation") from None
        found = self.catalog().get(gid)
        if found is None:
            raise NotFound(f"No generation {generation_id!r}", kind="generation", id=generation_id)
        return found
