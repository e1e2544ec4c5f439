"""generate_image over MCP (the SDK's own client, the stdio server) with enhance_style."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfy_gen.emulator import Emulator
from tests.enhance.conftest import ChatServer
from tests.mcp.helpers import data, mcp_session, server_env

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_generate_image_enhances_the_prompt(emu: Emulator, use_chat_server: ChatServer, tmp_path: Path) -> None:
    (tmp_path / "recipes").mkdir()
    env = server_env(COMFY_GEN_COMFYUI_URL=emu.url, COMFY_GEN_RECIPES_DIR=str(tmp_path / "recipes"))
    async with mcp_session(env, tmp_path) as session:
        result = data(await session.call_tool(
            "generate_image", {"prompt": "a red kite", "workflow": "tiny-sd15", "steps": 2, "seed": 1,
                               "enhance_style": "minimal", "output_path": "mcp/kite.png"}))
    sidecar = json.loads((tmp_path / "output" / "mcp" / "kite.png.json").read_text())
    assert result["status"] == "unvalidated"
    assert sidecar["input"]["original_prompt"] == "a red kite"
    assert sidecar["input"]["prompt"].startswith("a red kite, cinematic lighting")  # the loopback server's answer
    assert sidecar["input"]["enhancement"]["style"] == "minimal" and use_chat_server.chats == 1
