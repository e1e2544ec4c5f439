"""`comfy-gen mcp --http`: one streamable-HTTP session with a bearer token, and the binding rules."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from comfy_gen.emulator import Emulator
from comfy_gen.stack import free_port
from tests.generate.helpers import run_cli
from tests.mcp.helpers import data

pytestmark = pytest.mark.anyio
TOKEN = "s3cret-mcp-token"


def _wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the MCP server exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


@pytest.fixture
def http_server(mcp_env, tmp_path: Path):
    port = free_port()
    env = {**mcp_env, "COMFY_GEN_MCP_TOKEN": TOKEN}
    with open(tmp_path / "http.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "comfy_gen.cli", "mcp", "--http", "--port", str(port)],
                                env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_listening(proc, port)
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            proc.terminate()
            proc.wait(timeout=30)


async def test_streamable_http_session_with_token(http_server: str, emu: Emulator, tmp_path: Path) -> None:
    # No token, or a wrong one: refused before the protocol starts.
    async with httpx.AsyncClient() as plain:
        assert (await plain.post(http_server, json={})).status_code == 401
        wrong = await plain.post(http_server, json={}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and TOKEN not in wrong.text
    notes: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notes.append(progress)

    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
        async with streamable_http_client(http_server, http_client=client) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                names = {t.name for t in (await session.list_tools()).tools}
                assert {"generate_image", "run_recipe", "get_progress"} <= names
                result = data(await session.call_tool("generate_image", {"prompt": "a red kite", "steps": 3,
                                                                         "workflow": "tiny-sd15"},
                                                      progress_callback=on_progress))
    assert result["status"] == "unvalidated" and Path(result["local_path"]).is_file()
    assert notes and notes == sorted(notes)
    assert TOKEN not in (tmp_path / "http.log").read_text()


def test_beyond_loopback_needs_a_token() -> None:
    code, _, err = run_cli("mcp", "--http", "--host", "0.0.0.0", "--port", str(free_port()))
    assert code == 2 and "without a token" in err and "COMFY_GEN_MCP_TOKEN" in err
