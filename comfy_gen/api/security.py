"""Who is calling and at which policy tier; the loopback rule.

* Tokens come from settings (``COMFY_GEN_API_TOKEN`` at the server's tier,
  ``COMFY_GEN_API_TOKENS`` each with its own). With none configured the API is
  open, and then it only answers on loopback (``LoopbackOnly``).
* A caller's tier is its token's; the ``X-Policy-Tier`` header and a body's
  ``policy_tier`` can only lower it (``comfy_gen.categories.effective_tier``).
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from comfy_gen.categories import effective_tier
from comfy_gen.config import Settings

POLICY_HEADER = "X-Policy-Tier"


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; False for anything else (0.0.0.0 included)."""
    if not host:
        return False
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tokens_configured(settings: Settings) -> bool:
    return settings.api_token is not None or bool(settings.api_tokens)


@dataclass(frozen=True)
class Caller:
    """The authenticated caller: its ceiling tier and whether a token was checked."""

    tier: str
    authenticated: bool = False

    def tier_for(self, *requested: str | None) -> str:
        """The tier a request runs at: each requested tier may only lower the caller's."""
        tier = self.tier
        for wanted in requested:
            if wanted:
                tier = effective_tier(tier, wanted)
        return tier


def authenticate(settings: Settings, authorization: str | None) -> Caller:
    """The caller for an ``Authorization`` header; 401 without a valid bearer token when tokens are set."""
    if not tokens_configured(settings):
        return Caller(tier=settings.policy_tier)
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "A bearer token is required (Authorization: Bearer TOKEN)",
                            headers={"WWW-Authenticate": "Bearer"})
    given = token.encode()
    # Compare against every token (constant time each), so timing tells nothing about which matched.
    tier: str | None = None
    if settings.api_token is not None and hmac.compare_digest(given, settings.api_token.get_secret_value().encode()):
        tier = settings.policy_tier
    for candidate, candidate_tier in settings.api_tokens.items():
        if hmac.compare_digest(given, candidate.encode()) and tier is None:
            tier = candidate_tier
    if tier is None:
        raise HTTPException(401, "The bearer token is not valid", headers={"WWW-Authenticate": "Bearer"})
    return Caller(tier=tier, authenticated=True)


def caller(request: Request) -> Caller:
    """FastAPI dependency: the authenticated caller (401 otherwise)."""
    settings: Settings = request.app.state.ctx.settings
    return authenticate(settings, request.headers.get("authorization"))


def header_tier(request: Request) -> str | None:
    """The ``X-Policy-Tier`` header, if any (validated where it is applied)."""
    value = request.headers.get(POLICY_HEADER)
    return value.strip().lower() if value else None


class LoopbackOnly:
    """ASGI middleware: without a token, answer only requests that arrived on a loopback address.

    ``comfy-gen serve`` refuses to bind elsewhere; this also covers
    ``uvicorn comfy_gen.api:app --host 0.0.0.0`` started by hand.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not tokens_configured(self.settings):
            server: Any = scope.get("server")
            host = server[0] if server else None
            if server is not None and not is_loopback(host):
                response = JSONResponse(
                    {"error": "Forbidden", "message": "This server has no API token: it only answers on loopback",
                     "hint": "Set COMFY_GEN_API_TOKEN to serve beyond 127.0.0.1."}, status_code=403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
