"""The server over stdio: its tools and schemas, tool errors, confinement, and that it keeps serving."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from comfy_gen.emulator import Emulator
from tests.conftest import REPO_ROOT
from tests.mcp.helpers import data, error, mcp_session, text

pytestmark = pytest.mark.anyio

#: Every tool the server offers (the seed's 30, its two hub servers' search tools, the batch tools).
TOOLS = {
    "generate_image", "img2img", "generate_video", "image_to_video", "validate_workflow",
    "get_progress", "get_queue", "cancel", "get_system_status", "start_comfyui_service",
    "stop_comfyui_service", "restart_comfyui_service", "check_comfyui_service_status",
    "list_models", "list_loras", "get_model_info", "suggest_model", "suggest_loras",
    "build_prompt", "suggest_negative", "analyze_prompt", "compose_recipe", "list_categories", "get_category",
    "list_images", "get_image_info", "delete_image", "get_history",
    "run_recipe", "get_run_status", "list_recipes", "validate_recipe",
    "search_civitai", "civitai_get_model", "civitai_lookup_hash", "hf_search_models", "hf_get_model_info",
    "hf_list_files",
}


def _workflows(tmp_path: Path) -> Path:
    """A workflows folder: the tiny workflow, and a copy that names a model the server lacks."""
    folder = tmp_path / "workflows"
    folder.mkdir()
    shutil.copy(REPO_ROOT / "workflows" / "tiny-sd15.json", folder)
    graph = json.loads((folder / "tiny-sd15.json").read_text())
    graph["1"]["inputs"]["ckpt_name"] = "tiny_sd15_v2.safetensors"
    (folder / "broken.json").write_text(json.dumps(graph))
    return folder


async def test_tools_are_listed_with_typed_described_schemas(mcp_env, tmp_path: Path) -> None:
    async with mcp_session(mcp_env, tmp_path) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and len(tool.description) > 20, tool.name
        assert tool.inputSchema["type"] == "object"
        assert tool.outputSchema is not None and tool.outputSchema["type"] == "object", tool.name
    schema = tools["generate_image"].inputSchema
    assert schema["required"] == ["prompt"]
    props = schema["properties"]
    assert props["model"]["enum"] == ["sd15", "sdxl", "flux"] and props["model"]["default"] == "sd15"
    assert props["seed"]["default"] == -1 and props["json_progress"]["default"] is False
    assert {"minimum": 64, "maximum": 2048} .items() <= props["width"]["anyOf"][0].items()
    assert "description" in props["output_path"] and "outside" in props["output_path"]["description"]
    assert tools["img2img"].inputSchema["properties"]["denoise"]["default"] == 0.7
    assert tools["generate_video"].inputSchema["properties"]["frames"]["default"] == 81


async def test_errors_are_tool_errors_and_the_server_keeps_serving(mcp_env, emu: Emulator, tmp_path: Path) -> None:
    env = {**mcp_env, "COMFY_GEN_WORKFLOWS_DIR": str(_workflows(tmp_path))}
    async with mcp_session(env, tmp_path) as session:
        # A bad argument: the schema's range, named.
        bad = await session.call_tool("generate_image", {"prompt": "x", "workflow": "tiny-sd15", "steps": 0})
        assert bad.isError and "steps" in text(bad)
        # A value only the core can check (not divisible by 8): the errors tree's own document.
        odd = error(await session.call_tool("generate_image", {"prompt": "x", "workflow": "tiny-sd15",
                                                               "width": 100}))
        assert odd["error"] == "UsageError" and "width" in odd["message"]
        # Paths that leave the server's folders are refused, and nothing is rendered.
        before = emu.stats()["jobs_completed"]
        escape = error(await session.call_tool("generate_image", {"prompt": "x", "workflow": "tiny-sd15",
                                                                  "output_path": "../../escaped.png"}))
        assert escape["error"] == "PathNotAllowed"
        absolute = error(await session.call_tool("generate_image", {"prompt": "x", "workflow": "tiny-sd15",
                                                                    "output_path": str(tmp_path / "x.png")}))
        assert absolute["error"] == "PathNotAllowed"
        wf = error(await session.call_tool("validate_workflow", {"workflow": str(REPO_ROOT / "workflows" / "tiny-sd15.json")}))
        assert wf["error"] == "PathNotAllowed"
        image = error(await session.call_tool("get_image_info", {"image_name": "../../etc/passwd"}))
        assert image["error"] == "PathNotAllowed"
        gone = error(await session.call_tool("delete_image", {"image_name": "/etc/hostname"}))
        assert gone["error"] == "PathNotAllowed"
        recipe = error(await session.call_tool("validate_recipe", {"recipe": "/etc/passwd"}))
        assert recipe["error"] == "PathNotAllowed"
        assert emu.stats()["jobs_completed"] == before
        # An unknown tool is an error too.
        assert (await session.call_tool("no_such_tool", {})).isError

        # validate_workflow: a dry run that names the missing model and suggests the installed one.
        report = data(await session.call_tool("validate_workflow", {"workflow": "broken"}))
        assert report["status"] == "invalid" and not report["is_valid"]
        missing = report["missing_models"][0]
        assert missing["input_name"] == "ckpt_name" and "tiny_sd15.safetensors" in missing["suggestions"]
        ok = data(await session.call_tool("validate_workflow", {"workflow": "tiny-sd15", "width": 256,
                                                                "height": 256}))
        assert ok == {**ok, "status": "valid", "is_valid": True, "errors": [], "workflow_file": "tiny-sd15"}
        assert emu.stats()["jobs_completed"] == before  # a dry run queues nothing

        # Still serving after all of that.
        result = data(await session.call_tool("generate_image", {"prompt": "a kite", "workflow": "tiny-sd15",
                                                                 "steps": 2}))
        assert result["status"] == "unvalidated" and Path(result["local_path"]).is_file()
        assert Path(result["local_path"]).is_relative_to(tmp_path / "output" / "adhoc")


def test_every_tool_is_documented() -> None:
    doc = (REPO_ROOT / "docs" / "mcp.md").read_text()
    assert not [name for name in TOOLS if f"| `{name}` |" not in doc]
