"""The generation catalog: an index (SQLite or PostgreSQL) over the stored outputs' sidecars.

Usage::

    from comfy_gen.catalog import Catalog
    with Catalog.from_settings(settings) as cat:
        cat.list(recipe="coastlines", limit=20)
        cat.set_favorite(generation_id, rating=5, tags=["portfolio"])
        cat.rebuild()          # re-index the output folder (user fields are kept)

``Catalog`` (and SQLAlchemy with it) is imported on first use, so the generate
path can import ``index_kept`` cheaply and a catalog that cannot even be
imported still costs only a warning. See docs/catalog.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from comfy_gen.catalog.hooks import close_shared, index_kept, shared_catalog
from comfy_gen.catalog.records import (Favorite, Generation, check_generation_id, new_generation_id,
                                       normalize_id, read_generation)

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.catalog._engine import SCHEMA_HEAD
    from comfy_gen.catalog.store import Catalog

_LAZY = {"Catalog": "comfy_gen.catalog.store", "SCHEMA_HEAD": "comfy_gen.catalog._engine"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SCHEMA_HEAD", "Catalog", "Favorite", "Generation", "check_generation_id", "close_shared", "index_kept",
    "new_generation_id", "normalize_id", "read_generation", "shared_catalog",
]
