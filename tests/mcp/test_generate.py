"""Generation over MCP: the stdio server against the emulator, progress, errors, paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfy_gen.emulator import Emulator
from tests.mcp.helpers import data, error, mcp_session, text

pytestmark = pytest.mark.anyio
TINY = "tiny-sd15"


async def test_generate_image_reports_progress_and_keeps_the_image(mcp_env, emu: Emulator, tmp_path: Path) -> None:
    notes: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notes.append((progress, total, message))

    async with mcp_session(mcp_env, tmp_path) as session:
        result = data(await session.call_tool(
            "generate_image", {"prompt": "a lighthouse on a hill", "workflow": TINY, "steps": 4, "seed": 42,
                               "output_path": "mcp/light.png", "json_progress": True},
            progress_callback=on_progress))
    image = tmp_path / "output" / "mcp" / "light.png"
    assert result["status"] == "unvalidated" and result["local_path"] == str(image) and image.is_file()
    assert result["metadata"]["seed"] == 42 and result["metadata"]["steps"] == 4
    assert result["generation_id"] and result["prompt_id"] and result["attempt"] == 1
    kinds = [u["type"] for u in result["progress_updates"]]
    assert kinds[0] == "connected" and "start" in kinds and kinds[-1] == "complete"
    steps = [u for u in result["progress_updates"] if u["type"] == "progress"]
    assert [u["step"] for u in steps] == [1, 2, 3, 4] and steps[-1]["percent"] == 100
    values = [n[0] for n in notes]
    assert values == sorted(values) and len(set(values)) == len(values)  # MCP: progress always grows
    assert any(n[2] == "Sampling: 4/4 steps (100%)" and n[0] == n[1] for n in notes)
