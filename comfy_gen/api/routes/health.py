"""GET /health: version and whether ComfyUI, storage, the catalog and Prefect answer.

Never a 500: a check that fails (or raises) makes the answer ``degraded`` with
its reason. Public (no token), and URLs in reasons are redacted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.api.context import ApiContext

from typing import Any, Callable

from fastapi import APIRouter, Request

from comfy_gen.urls import redact_text, redact_url

router = APIRouter(tags=["health"])


def _check(fn: Callable[[Any], dict[str, Any]], ctx: ApiContext) -> dict[str, Any]:
    try:
        return fn(ctx)
    except Exception as exc:  # noqa: BLE001 - a health check reports, it never fails
        return {"ok": False, "reason": redact_text(f"{type(exc).__name__}: {exc}".splitlines()[0])}


def _comfyui(ctx: ApiContext) -> dict[str, Any]:
    from comfy_gen.comfyui import ComfyUIClient

    with ComfyUIClient.from_settings(ctx.settings) as client:
        ok = client.is_available()
        url = redact_url(client.base_url)
    return {"ok": ok, "url": url} if ok else {"ok": False, "url": url, "reason": f"ComfyUI does not answer at {url}"}


def _storage(ctx: ApiContext) -> dict[str, Any]:
    from comfy_gen.storage import get_storage

    if not ctx.settings.storage_configured:
        return {"ok": True, "mode": "local", "output_dir_writable": ctx.output_dir.parent.exists()}
    ok = bool(get_storage(ctx.settings).check())
    return {"ok": ok, "mode": "s3"} if ok else {"ok": False, "mode": "s3", "reason": "object storage check failed"}


def _catalog(ctx: ApiContext) -> dict[str, Any]:
    catalog = ctx.catalog()
    return {"ok": True, "generations": catalog.count()}


def _prefect(ctx: ApiContext) -> dict[str, Any]:
    import httpx

    from comfy_gen.config import prefect_api_url

    url = prefect_api_url()
    if not url:
        return {"ok": True, "mode": "in-process", "detail": "PREFECT_API_URL is not set: runs start in this process"}
    response = httpx.get(url.rstrip("/") + "/health", timeout=3.0)
    ok = response.status_code == 200
    shown = redact_url(url)
    return {"ok": ok, "url": shown} if ok else {"ok": False, "url": shown,
                                                "reason": f"Prefect answered {response.status_code}"}


@router.get("/health", summary="Version and reachability of ComfyUI, storage, catalog and Prefect")
def health(request: Request) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    ctx = request.app.state.ctx
    try:
        ver = version("comfygen-orchestrator")
    except PackageNotFoundError:
        ver = "unknown"
    checks = {name: _check(fn, ctx) for name, fn in
              (("comfyui", _comfyui), ("storage", _storage), ("catalog", _catalog), ("prefect", _prefect))}
    reasons = [f"{name}: {c.get('reason', 'unavailable')}" for name, c in checks.items() if not c["ok"]]
    jobs = ctx.jobs.all()
    return {"status": "degraded" if reasons else "healthy", "version": ver, "reasons": reasons,
            "checks": checks, "comfyui_available": checks["comfyui"]["ok"],
            "catalog_available": checks["catalog"]["ok"],
            "jobs": {"active": sum(1 for j in jobs if not j.finished), "workers": ctx.jobs.workers}}
