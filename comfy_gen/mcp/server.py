"""The server object, the one error mapping, and the two transports.

Errors: FastMCP turns any exception a tool raises into a tool result with
``isError`` set, so a failing tool never stops the server. ``ComfyGenMCP.call_tool``
rewrites that text once, here: a ``ComfyGenError`` becomes its class and message
plus its ``to_dict()`` as JSON (the same document the API and ``--json`` give), a
bad argument names the field, anything else is logged with its traceback and
reported as an internal error. Secrets are masked on the way out
(``comfy_gen.urls.redact_text``).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError

from comfy_gen.config import Settings, get_settings
from comfy_gen.errors import ComfyGenError, ConfigError
from comfy_gen.urls import redact_text

log = logging.getLogger(__name__)

SERVER_NAME = "comfy-gen"
INSTRUCTIONS = (
    "comfy-gen renders images on ComfyUI. Start with validate_workflow or list_models, then "
    "generate_image (progress is reported; cancel the call to cancel the job). Paths you pass "
    "(output_path, recipes, image names) are confined to the server's folders. Batches: "
    "list_recipes, validate_recipe, run_recipe, then get_run_status."
)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class ComfyGenMCP(FastMCP):
    """FastMCP with comfy-gen's error mapping applied to every tool call."""

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        try:
            return await super().call_tool(name, arguments)
        except ToolError as exc:
            raise ToolError(error_text(name, exc.__cause__ or exc)) from exc


def error_text(tool: str, exc: BaseException) -> str:
    """The text of a tool error: what failed and what to do, then the details as JSON."""
    from pydantic import ValidationError

    if isinstance(exc, ComfyGenError):
        data = exc.to_dict()
        text = f"{data['error']}: {exc}\n{json.dumps(data, default=str)}"
    elif isinstance(exc, ValidationError):
        problems = [f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
                    for err in exc.errors(include_url=False)]
        data = {"error": "UsageError", "message": f"Invalid arguments for {tool}", "problems": problems}
        text = f"UsageError: Invalid arguments for {tool}: " + "; ".join(problems) + "\n" + json.dumps(data)
    elif isinstance(exc, ToolError):
        text = str(exc)  # the SDK's own (unknown tool, ...)
    else:
        log.error("Tool %s failed unexpectedly", tool, exc_info=exc)
        data = {"error": "InternalError", "message": f"{type(exc).__name__}: {exc}"}
        text = f"InternalError: {tool} failed: {type(exc).__name__}: {exc}\n{json.dumps(data, default=str)}"
    return redact_text(text)


@dataclass
class App:
    """The server plus what its tools share: settings and the batch runs it started."""

    settings: Settings
    mcp: ComfyGenMCP
    runs: dict[str, Any] = field(default_factory=dict)   # flow run id -> batches.LocalRun
    lock: threading.Lock = field(default_factory=threading.Lock)
    prefect_stack: Any = None                             # a local Prefect server we started

    def tool_names(self) -> list[str]:
        return sorted(t.name for t in self.mcp._tool_manager.list_tools())

    def close(self) -> None:
        """Wait a bounded time for background runs, then stop a Prefect server we started."""
        from comfy_gen.mcp import batches

        batches.shutdown(self)


def build_server(settings: Settings | None = None, *, host: str = "127.0.0.1") -> App:
    """Every tool registered on one server; ``host`` decides FastMCP's DNS-rebinding guard."""
    from comfy_gen.mcp import batches, generation, hubs, images, models, prompts, state

    settings = settings or get_settings()
    mcp = ComfyGenMCP(SERVER_NAME, instructions=INSTRUCTIONS, host=host, log_level="WARNING")
    app = App(settings=settings, mcp=mcp)
    for module in (generation, state, models, prompts, images, batches, hubs):
        module.register(app)
    return app


# --- transports -------------------------------------------------------------------------------


def run_stdio(app: App) -> None:
    """Serve on stdin/stdout until the client closes stdin.

    The protocol owns file descriptor 1: it is duplicated for the protocol, and fd 1
    (and ``sys.stdout``) then point at stderr, so nothing else in this process or its
    children (a Prefect server, a library that prints) can corrupt the stream.
    """
    import io

    import anyio
    from mcp.server.stdio import stdio_server

    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    out = anyio.wrap_file(io.TextIOWrapper(os.fdopen(protocol_fd, "wb", buffering=0), encoding="utf-8",
                                           write_through=True))

    async def serve() -> None:
        server = app.mcp._mcp_server
        async with stdio_server(stdout=out) as (read, write):
            await server.run(read, write, server.create_initialization_options())

    try:
        anyio.run(serve)
    finally:
        app.close()


def http_token(settings: Settings) -> str | None:
    """The bearer token HTTP clients must send: COMFY_GEN_MCP_TOKEN, else a shared API token."""
    for name in ("mcp_token", "api_token"):
        value: Any = getattr(settings, name, None)
        secret = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        if secret:
            return str(secret)
    return None


def check_http_binding(host: str, token: str | None) -> None:
    """Beyond loopback a token is required (ConfigError before anything listens)."""
    if host not in LOOPBACK_HOSTS and not token:
        raise ConfigError(f"Refusing to serve MCP on {host} without a token",
                          hint="Set COMFY_GEN_MCP_TOKEN (clients send 'Authorization: Bearer <token>'), "
                               "or bind to 127.0.0.1.")


class BearerAuth:
    """ASGI middleware: every HTTP request needs ``Authorization: Bearer <token>``."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self._token = app, token.encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not self._authorized(scope.get("headers") or []):
            body = json.dumps({"error": "unauthorized", "message": "Bearer token required"}).encode()
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"www-authenticate", b'Bearer realm="comfy-gen"')]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    def _authorized(self, headers: Sequence[tuple[bytes, bytes]]) -> bool:
        for name, value in headers:
            if name.lower() == b"authorization" and value[:7].lower() == b"bearer ":
                # Constant time: the comparison must not tell how much of a guess was right.
                return hmac.compare_digest(value[7:].strip(), self._token)
        return False


def run_http(app: App, *, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve streamable HTTP at ``http://host:port/mcp`` (token required beyond loopback)."""
    import uvicorn

    token = http_token(app.settings)
    check_http_binding(host, token)
    asgi: Any = app.mcp.streamable_http_app()
    if token:
        asgi = BearerAuth(asgi, token)
    config = uvicorn.Config(asgi, host=host, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    log.warning("comfy-gen MCP server on http://%s:%d/mcp%s", host, port, " (bearer token required)" if token else "")
    try:
        server.run()
    finally:
        app.close()
