"""The one table from the comfy_gen.errors tree to HTTP statuses, and the handlers.

Every error body is the exception's ``to_dict()`` (``error``, ``message``,
``hint`` and the class's own fields: ``violations``, ``problems``...), the same
document the CLI prints with ``--json`` and the MCP server returns.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from comfy_gen import errors
from comfy_gen.categories import UnknownCategory
from comfy_gen.urls import redact_text

log = logging.getLogger(__name__)

#: Most specific class first; the first isinstance match wins.
STATUS_CODES: list[tuple[type[BaseException], int]] = [
    (errors.NotFound, 404),
    (errors.GenerationNotFound, 404),     # FavoriteNotFound too
    (errors.CatalogUnavailable, 503),
    (errors.CatalogError, 503),
    (UnknownCategory, 404),
    (errors.PolicyViolation, 403),
    (errors.PathNotAllowed, 403),
    (errors.CompositionError, 400),
    (errors.ValidatorUnavailable, 503),
    (errors.EnhancerUnavailable, 503),    # the server's enhancer, not the client's request
    (errors.EnhancementFailed, 503),      # caught by the service (original prompt kept); mapped for completeness
    (errors.ConfigError, 422),
    (errors.ServiceBusy, 503),
    (errors.ComfyUIUnavailable, 503),
    (errors.AllBackendsDown, 503),
    (errors.ComfyUITimeout, 504),
    (errors.PromptRejected, 422),
    (errors.ExecutionInterrupted, 409),
    (errors.JobLost, 503),             # the server restarted under the job: retry
    (errors.ComfyUIError, 502),
    (errors.ValidationFailed, 422),
    (errors.MetadataNotFound, 404),
    (errors.StorageUnavailable, 503),
    (errors.StorageError, 502),
    (errors.HubUnavailable, 503),
    (errors.GpuGateUnavailable, 503),
    (errors.HubError, 502),
    (errors.ComfyGenError, 500),
]


def status_for(exc: BaseException) -> int:
    for cls, status in STATUS_CODES:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(exc: errors.ComfyGenError) -> dict[str, Any]:
    data = exc.to_dict()
    # Messages may name URLs (a ComfyUI or storage endpoint): never with credentials.
    for key in ("message", "hint"):
        if isinstance(data.get(key), str):
            data[key] = redact_text(data[key])
    return data


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.ComfyGenError)
    async def _comfy_gen_error(request: Request, exc: errors.ComfyGenError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.warning("%s %s -> %d: %s", request.method, request.url.path, status, redact_text(str(exc)))
        headers = {"Retry-After": "5"} if isinstance(exc, errors.TransientError) else None
        return JSONResponse(error_body(exc), status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(part) for part in err.get("loc", ()))
            problems.append({"field": where, "message": str(err.get("msg", "invalid value"))})
        message = "; ".join(f"{p['field']}: {p['message']}" for p in problems) or "Invalid request"
        return JSONResponse({"error": "RequestValidationError", "message": message, "problems": problems},
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        names = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed"}
        return JSONResponse({"error": names.get(exc.status_code, "HTTPError"), "message": str(exc.detail)},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"error": "InternalError", "message": "Internal server error (see the server log)"},
                            status_code=500)
