"""Drive the MCP server through the real protocol: a subprocess and the SDK's own client."""

from __future__ import annotations

import json
import os
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult

from tests.conftest import REPO_ROOT


def server_env(**extra: str) -> dict[str, str]:
    """The test's environment (COMFY_GEN_* set by the fixtures) plus ``extra``, for the server process."""
    env = {k: v for k, v in os.environ.items()}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@asynccontextmanager
async def mcp_session(env: dict[str, str], cwd: Path, *, log: Path | None = None) -> AsyncIterator[ClientSession]:
    """``comfy-gen mcp`` as a subprocess on stdio, initialised; its stderr goes to ``log``."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "comfy_gen.cli", "mcp"], env=env,
                                   cwd=str(cwd))
    errlog = open(log or cwd / "mcp-server.log", "a", encoding="utf-8")
    try:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session
    finally:
        errlog.close()


def data(result: CallToolResult) -> dict[str, Any]:
    """The structured result of a successful call (fails the test on a tool error)."""
    assert not result.isError, text(result)
    assert result.structuredContent is not None
    return result.structuredContent


def text(result: CallToolResult) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


def error(result: CallToolResult) -> dict[str, Any]:
    """A tool error's details: the JSON line the server appends (the errors tree's to_dict())."""
    assert result.isError, f"expected a tool error, got {text(result)}"
    body = text(result)
    return json.loads(body.splitlines()[-1])
