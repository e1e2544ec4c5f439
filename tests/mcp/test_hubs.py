"""Model hub tools over MCP against a loopback replay of the CivitAI and Hugging Face APIs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mcp.helpers import data, error, mcp_session, text
from tests.mcp.hub_replay import HubReplay

pytestmark = pytest.mark.anyio
KEY, TOKEN = "civitai-key-0123456789", "hf_token_abcdefghij"


async def test_hub_tools_are_off_unless_enabled(mcp_env, tmp_path: Path) -> None:
    async with mcp_session(mcp_env, tmp_path) as session:
        for tool, args in (("search_civitai", {"query": "film"}), ("hf_search_models", {"query": "clip"})):
            off = error(await session.call_tool(tool, args))
            assert off["error"] == "ConfigError" and "ENABLED=true" in off["hint"]


async def test_hub_tools_against_the_documented_responses(mcp_env, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with HubReplay() as hub:
        env = {**mcp_env, "COMFY_GEN_CIVITAI_ENABLED": "true", "COMFY_GEN_CIVITAI_API_URL": f"{hub.url}/api/v1",
               "COMFY_GEN_CIVITAI_API_KEY": KEY, "COMFY_GEN_HF_ENABLED": "true", "COMFY_GEN_HF_API_URL": hub.url,
               "COMFY_GEN_HF_TOKEN": TOKEN}
        async with mcp_session(env, tmp_path, log=log) as session:
            found = data(await session.call_tool("search_civitai", {"query": "film", "model_type": "LORA",
                                                                    "base_model": "SD 1.5", "limit": 5}))
            model = found["results"][0]
            assert found["count"] == 1 and found["total"] == 1
            assert (model["id"], model["name"], model["type"], model["creator"]) == (4201, "Film Grain Look", "LORA",
                                                                                   "grainmaker")
            assert model["versions"][0]["files"][0]["sha256"] == "AB" * 32
            path, query, auth = hub.requests[-1]
            assert path == "/api/v1/models" and auth == f"Bearer {KEY}"
            assert query == {"query": ["film"], "types": ["LORA"], "baseModels": ["SD 1.5"],
                             "sort": ["Most Downloaded"], "nsfw": ["false"], "limit": ["5"]}
            full = data(await session.call_tool("civitai_get_model", {"model_id": 4201}))
            assert full["description"].startswith("<p>") and full["versions"][0]["base_model"] == "SD 1.5"
            version = data(await session.call_tool("civitai_lookup_hash", {"file_hash": "AB" * 32}))
            assert (version["model_id"], version["version_id"], version["trained_words"]) == (4201, 9001,
                                                                                             ["film grain"])
            missing = error(await session.call_tool("civitai_get_model", {"model_id": 5}))
            assert missing["error"] == "HubError" and missing["status"] == 404
            busy = error(await session.call_tool("civitai_get_model", {"model_id": 429}))
            assert busy["error"] == "HubUnavailable" and busy["status"] == 429
            assert error(await session.call_tool("civitai_lookup_hash", {"file_hash": "../../etc"}))["error"] \
                == "UsageError"

            models = data(await session.call_tool("hf_search_models", {"query": "clip", "tags": ["vision"],
                                                                       "pipeline_tag": "zero-shot-image-classification"}))
            assert models["results"][0]["id"] == "openai/clip-vit-base-patch32"
            path, query, auth = hub.requests[-1]
            assert path == "/api/models" and auth == f"Bearer {TOKEN}"
            assert query["search"] == ["clip"] and query["filter"] == ["vision"] and query["sort"] == ["downloads"]
            info = data(await session.call_tool("hf_get_model_info", {"model_id": "openai/clip-vit-base-patch32"}))
            assert info["license"] == "mit" and "model.safetensors" in info["files"] and info["author"] == "openai"
            files = data(await session.call_tool("hf_list_files", {"model_id": "openai/clip-vit-base-patch32"}))
            assert [f["path"] for f in files["files"]] == [".gitattributes", "config.json", "model.safetensors"]
            weights = files["files"][2]
            assert weights["lfs"] and weights["size"] == 605157884 and files["total_size"] == 605157884 + 1519 + 4186
            escape = error(await session.call_tool("hf_get_model_info", {"model_id": "../../admin"}))
            assert escape["error"] == "UsageError"
            everything = text(await session.call_tool("civitai_get_model", {"model_id": 5}))
        assert KEY not in everything
    assert KEY not in log.read_text() and TOKEN not in log.read_text()
    assert not any("download" in p and "/api/v1/models" not in p for p, _, _ in hub.requests)  # nothing downloaded
