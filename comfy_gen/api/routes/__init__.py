"""The API's routers, one module per area; ``ROUTERS`` is mounted under /api/v1 and at the bare paths."""

from __future__ import annotations

from fastapi import APIRouter


def routers() -> list[APIRouter]:
    from comfy_gen.api.routes import catalog, compose, generate, health, images, runs

    return [health.router, compose.router, generate.router, catalog.router, images.router, runs.router]
