"""`comfy-gen serve`: the HTTP API and web page (uvicorn).

Binding to anything but loopback needs an API token (COMFY_GEN_API_TOKEN or
COMFY_GEN_API_TOKENS); without one the command refuses to start (exit 2).
"""

from __future__ import annotations

import os

import click

from comfy_gen.config import get_settings, prefect_defaults
from comfy_gen.errors import ConfigError


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; beyond loopback only with an API token set.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(host: str, port: int, log_level: str) -> None:
    """Serve the HTTP API (/api/v1, OpenAPI at /docs) and the web page (/)."""
    from comfy_gen.api.security import is_loopback, tokens_configured

    settings = get_settings()
    if not is_loopback(host) and not tokens_configured(settings):
        raise ConfigError(f"Refusing to serve on {host}: without an API token the server only binds to loopback",
                          hint="Set COMFY_GEN_API_TOKEN (callers send Authorization: Bearer TOKEN), "
                               "or use --host 127.0.0.1.")
    # In-process recipe runs keep their Prefect history where `comfy-gen run` keeps it.
    for key, value in prefect_defaults(settings).items():
        os.environ.setdefault(key, value)
    import uvicorn

    from comfy_gen.api import create_app

    click.echo(f"comfy-gen API and web page on http://{host}:{port}/ (OpenAPI: /docs)", err=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)
