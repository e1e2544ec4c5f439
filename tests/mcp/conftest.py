"""Fixtures for the MCP tests: the shared emulator and a folder for the server's files."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfy_gen.emulator import Emulator


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def mcp_env(emu: Emulator, tmp_path: Path) -> dict[str, str]:
    """Server environment: the shared emulator as ComfyUI, output/state/recipes in tmp_path."""
    from tests.mcp.helpers import server_env

    (tmp_path / "recipes").mkdir()
    return server_env(COMFY_GEN_COMFYUI_URL=emu.url, COMFY_GEN_RECIPES_DIR=str(tmp_path / "recipes"))
