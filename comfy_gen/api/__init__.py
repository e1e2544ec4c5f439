"""The HTTP API and web page (FastAPI): ``comfy-gen serve`` or ``uvicorn comfy_gen.api:app``.

Importing this package is cheap; FastAPI loads when ``create_app`` runs or
``app`` is first read (the CLI's start-up never imports it). docs/api.md lists
the endpoints, auth and settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI

    from comfy_gen.config import Settings

_app: "FastAPI | None" = None


def create_app(settings: "Settings | None" = None, **kwargs: Any) -> "FastAPI":
    """A new app (settings default to the environment's)."""
    from comfy_gen.api.app import create_app as _create

    return _create(settings, **kwargs)


def __getattr__(name: str) -> Any:
    # `uvicorn comfy_gen.api:app`: one app per process, built from the environment's settings.
    global _app
    if name == "app":
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["create_app"]
