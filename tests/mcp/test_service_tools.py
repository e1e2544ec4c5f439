"""The ComfyUI service tools over MCP, with a fake local ComfyUI install (the emulator behind a main.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from comfy_gen.stack import free_port
from tests.cli_ops.test_server_cmd import FAKE_MAIN
from tests.conftest import REPO_ROOT
from tests.mcp.helpers import data, mcp_session

pytestmark = pytest.mark.anyio


async def test_start_status_restart_stop(mcp_env, tmp_path: Path) -> None:
    install = tmp_path / "ComfyUI"
    install.mkdir()
    (install / "main.py").write_text(FAKE_MAIN.format(repo=str(REPO_ROOT)))
    port = free_port()
    env = {**mcp_env, "COMFY_GEN_COMFYUI_PATH": str(install), "COMFY_GEN_COMFYUI_PYTHON": sys.executable,
           "COMFY_GEN_COMFYUI_ARGS": json.dumps(["--listen", "127.0.0.1", "--port", str(port)]),
           "COMFY_GEN_COMFYUI_URL": f"http://127.0.0.1:{port}"}
    async with mcp_session(env, tmp_path) as session:
        try:
            before = data(await session.call_tool("check_comfyui_service_status", {}))
            assert before["running"] is False and before["healthy"] is False
            started = data(await session.call_tool("start_comfyui_service", {"timeout": 60}))
            assert started["running"] and started["healthy"] and started["url"] == f"http://127.0.0.1:{port}"
            assert data(await session.call_tool("get_system_status", {}))["status"] == "online"
            restarted = data(await session.call_tool("restart_comfyui_service", {"timeout": 60}))
            assert restarted["healthy"] and restarted["pid"] != started["pid"]
            assert data(await session.call_tool("check_comfyui_service_status", {}))["pid"] == restarted["pid"]
        finally:
            stopped = data(await session.call_tool("stop_comfyui_service", {"timeout": 10}))
        assert stopped == {"stopped": True}
        assert data(await session.call_tool("check_comfyui_service_status", {}))["running"] is False
        assert data(await session.call_tool("stop_comfyui_service", {}))["stopped"] is False
