"""MCP generate_image takes validation ``checks``; a bad one is a tool error naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfy_gen.emulator import Emulator
from tests.mcp.helpers import data, error, mcp_session


@pytest.mark.anyio
async def test_mcp_generate_image_takes_checks(mcp_env, emu: Emulator, tmp_path: Path) -> None:
    async with mcp_session(mcp_env, tmp_path) as session:
        result = data(await session.call_tool(
            "generate_image", {"prompt": "a lighthouse", "workflow": "tiny-sd15", "steps": 1, "seed": 3,
                               "checks": [{"name": "technical", "max_clipped": 0.9}]}))
        refused = error(await session.call_tool(
            "generate_image", {"prompt": "a lighthouse", "workflow": "tiny-sd15", "checks": ["nope"]}))
    assert result["status"] == "passed"
    assert refused["error"] == "UsageError" and "checks[0]: Unknown validator 'nope'" in refused["message"]
