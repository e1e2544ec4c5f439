"""`comfy-gen mcp`: the MCP server for AI agents (stdio, or streamable HTTP on loopback)."""

from __future__ import annotations

import click


@click.command("mcp")
@click.option("--http", "use_http", is_flag=True, help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="HTTP bind address; beyond loopback COMFY_GEN_MCP_TOKEN is required.")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True, help="HTTP port.")
def mcp(use_http: bool, host: str, port: int) -> None:
    """Serve comfy-gen's tools over the Model Context Protocol.

    stdio (the default) is what desktop agents start as a subprocess; --http
    serves several clients (send "Authorization: Bearer <COMFY_GEN_MCP_TOKEN>"
    when a token is set). Tools, arguments and results: docs/mcp.md.
    """
    from comfy_gen.config import get_settings

    settings = get_settings()
    try:
        from comfy_gen.mcp.server import build_server, check_http_binding, http_token, run_http, run_stdio
    except ImportError as exc:  # the SDK is a dependency; a broken install gets a hint, not a traceback
        raise click.ClickException(f"The MCP SDK cannot be imported ({exc}); install it: pip install 'mcp>=1.30,<2'")
    if use_http:
        check_http_binding(host, http_token(settings))  # refuse before building anything
        run_http(build_server(settings, host=host), host=host, port=port)
    else:
        run_stdio(build_server(settings))
