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


SEGMENT = "GroundingDinoSAMSegment (segment anything)"
PACK_URL = "https://github.com/storyicon/comfyui_segment_anything"


async def test_generate_image_transparent_keeps_an_rgba_png(mcp_env, emu: Emulator, tmp_path: Path) -> None:
    import httpx
    from PIL import Image

    async with mcp_session(mcp_env, tmp_path) as session:
        result = data(await session.call_tool(
            "generate_image", {"prompt": "a teapot on a wooden table", "workflow": TINY, "steps": 1, "seed": 3,
                               "width": 128, "height": 128, "transparent": True, "transparent_subject": "teapot",
                               "output_path": "mcp/teapot.png"}))
        # A subject without the switch is refused as the CLI refuses it, and the server keeps serving.
        refused = error(await session.call_tool(
            "generate_image", {"prompt": "a teapot", "workflow": TINY, "transparent_subject": "teapot"}))
        tools = {t.name: t for t in (await session.list_tools()).tools}
    image = tmp_path / "output" / "mcp" / "teapot.png"
    assert result["local_path"] == str(image)
    with Image.open(image) as img:
        assert img.mode == "RGBA" and img.size == (128, 128)
        assert img.getpixel((0, 0))[3] == 0 and img.getpixel((64, 64))[3] == 255  # corner cut, subject kept
    history = httpx.get(f"{emu.url}/history/{result['prompt_id']}").json()[result["prompt_id"]]
    graph = history["prompt"][2]
    assert [n["inputs"]["prompt"] for n in graph.values() if n["class_type"] == SEGMENT] == ["teapot"]
    assert refused["error"] == "UsageError" and "transparent_subject applies to transparent" in refused["message"]
    schema = tools["generate_image"].inputSchema["properties"]
    assert schema["transparent"]["type"] == "boolean" and "segment" in schema["transparent"]["description"]
    assert "transparent_subject" in schema


async def test_generate_image_transparent_without_the_nodes_is_a_tool_error(tmp_path: Path) -> None:
    from tests.mcp.helpers import server_env

    with Emulator(step_time=0.01, data_dir=tmp_path / "bare", custom_nodes=False) as bare:
        env = server_env(COMFY_GEN_COMFYUI_URL=bare.url)
        async with mcp_session(env, tmp_path) as session:
            result = await session.call_tool(
                "generate_image", {"prompt": "a teapot", "workflow": TINY, "steps": 1, "transparent": True})
            assert (await session.call_tool("list_models", {})).isError is False  # still serving
        details = error(result)
        assert details["error"] == "PreflightError" and PACK_URL in text(result)
        assert f"node class '{SEGMENT}' is not installed on the server" in text(result)
        assert bare.stats()["jobs_completed"] == 0
