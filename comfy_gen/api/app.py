"""The FastAPI app: routes under /api/v1 (and the bare paths as aliases), errors, security, the web page."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from comfy_gen.api.context import ApiContext
from comfy_gen.api.errors import install_error_handlers
from comfy_gen.api.security import LoopbackOnly
from comfy_gen.config import Settings, get_settings

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.catalog import Catalog

API_PREFIX = "/api/v1"
WEB_DIR = Path(__file__).with_name("web")


def create_app(settings: Settings | None = None, *, catalog: "Catalog | None" = None) -> FastAPI:
    """A new app with its own jobs manager; ``catalog`` defaults to ``Catalog.from_settings`` on first use."""
    from importlib.metadata import PackageNotFoundError, version

    from comfy_gen.api.routes import routers

    settings = settings or get_settings()
    ctx = ApiContext(settings, catalog=catalog)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            ctx.close()   # cancels unfinished generations (our prompts only)

    try:
        ver = version("comfygen-orchestrator")
    except PackageNotFoundError:
        ver = "0"
    app = FastAPI(title="comfy-gen", version=ver, lifespan=lifespan,
                  description="Compose, generate, browse and favorite images; start recipe runs. "
                              "Every path is under /api/v1 and also at the bare path.")
    app.state.ctx = ctx
    install_error_handlers(app)
    for router in routers():
        app.include_router(router, prefix=API_PREFIX)
        app.include_router(router, include_in_schema=False)   # the seed's bare paths
    _web(app)
    if settings.api_cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.api_cors_origins),
                           allow_methods=["GET", "POST", "PUT", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "X-Policy-Tier"])
    app.add_middleware(LoopbackOnly, settings=settings)   # outermost: before CORS and routing
    return app


def _web(app: FastAPI) -> None:
    """The web page: one HTML file and its script and style, no build step."""
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> Any:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-cache",
                                     # Only our own script and style; images from us (blob: for authorised fetches).
                                     "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
                                                                "connect-src 'self'; object-src 'none'; "
                                                                "base-uri 'none'; frame-ancestors 'none'"})
