"""The other tools over MCP against the emulator: img2img with a real upload, the video tools'
missing workflow, LoRA presets and categories, models and catalog suggestions, prompts and
categories, images and history, system status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from comfy_gen.emulator import Emulator
from tests.generate.helpers import chunks
from tests.mcp.helpers import data, error, mcp_session

pytestmark = pytest.mark.anyio


def _loaded_image(image: Path) -> str:
    """The input image name in the graph ComfyUI ran (embedded in the PNG it wrote)."""
    graph = json.loads(chunks(image)["prompt"])
    return next(n["inputs"]["image"] for n in graph.values() if n["class_type"] == "LoadImage")


async def test_generation_tools(mcp_env, emu: Emulator, tmp_path: Path) -> None:
    photo = tmp_path / "output" / "inputs" / "photo.png"
    photo.parent.mkdir(parents=True)
    Image.new("RGB", (96, 64), (200, 80, 30)).save(photo)
    async with mcp_session(mcp_env, tmp_path) as session:
        # img2img: the input image is uploaded to ComfyUI and the LoadImage node points at it.
        result = data(await session.call_tool("img2img", {"input_image": "inputs/photo.png",
                                                          "prompt": "the same scene at night", "steps": 3,
                                                          "seed": 5, "output_path": "i2i.png"}))
        uploaded = _loaded_image(Path(result["local_path"]))
        assert uploaded.startswith("input_") and (emu.input_dir / uploaded).is_file()
        assert result["metadata"]["denoise"] == 0.7 and result["workflow"] == "sd15-img2img"
        outside = error(await session.call_tool("img2img", {"input_image": str(Path.home() / "x.png"),
                                                            "prompt": "x"}))
        assert outside["error"] == "PathNotAllowed"

        # The video tools render through the shipped LTX-Video workflows (animated WEBP).
        for tool, args in (("generate_video", {"prompt": "waves", "frames": 9, "fps": 8}),
                           ("image_to_video", {"input_image": "inputs/photo.png", "prompt": "waves",
                                               "frames": 9, "fps": 8})):
            video = data(await session.call_tool(tool, args))
            assert video["status"] == "unvalidated" and video["local_path"].endswith(".webp"), video
            assert video["workflow"] == ("ltxv-t2v" if tool == "generate_video" else "ltxv-i2v")

        # A LoRA preset from the catalog and a preset's sampler settings, below explicit arguments.
        styled = data(await session.call_tool("generate_image", {
            "prompt": "an old street", "workflow": "tiny-sd15", "lora_preset": "film_look", "preset": "draft",
            "steps": 2, "loras": ["tiny_sd15_lora.safetensors:0.5"]}))
        meta = styled["metadata"]
        assert [(x["name"], x["strength_model"]) for x in meta["loras"]] == [
            ("film_grain.safetensors", 0.4), ("detail_tweaker.safetensors", 0.3), ("tiny_sd15_lora.safetensors", 0.5)]
        assert (meta["steps"], meta["cfg"], meta["sampler"]) == (2, 5.0, "euler")
        # Categories composed into the prompt and settings (the server's tier), the workflow given.
        composed = data(await session.call_tool("generate_image", {
            "prompt": "a harbour", "workflow": "tiny-sd15", "categories": ["night"], "steps": 2,
            "width": 64, "height": 64}))
        assert "a harbour" in composed["metadata"]["prompt"] and composed["metadata"]["prompt"] != "a harbour"
        assert composed["metadata"]["steps"] == 2
        unknown = error(await session.call_tool("generate_image", {"prompt": "x", "workflow": "tiny-sd15",
                                                                   "lora_preset": "nope"}))
        assert "Unknown LoRA preset" in unknown["message"]


async def test_model_prompt_and_category_tools(mcp_env, tmp_path: Path) -> None:
    async with mcp_session(mcp_env, tmp_path) as session:
        models = data(await session.call_tool("list_models", {}))
        assert "tiny_sd15.safetensors" in models["checkpoints"] and models["count"] >= len(models["checkpoints"])
        loras = {x["name"]: x for x in data(await session.call_tool("list_loras", {}))["loras"]}
        assert loras["film_grain.safetensors"]["recommended_strength"] == 0.4
        assert loras["film_grain.safetensors"]["in_catalog"] is True
        info = data(await session.call_tool("get_model_info", {"model_name": "detail_tweaker.safetensors"}))
        assert info["type"] == "loras" and info["installed"] and "detail" in info["tags"]
        assert "simple_image" not in info["scenarios"]
        checkpoint = data(await session.call_tool("get_model_info", {"model_name": "v1-5-pruned-emaonly.safetensors"}))
        assert checkpoint["type"] == "checkpoints" and "simple_image" in checkpoint["scenarios"]
        nothing = error(await session.call_tool("get_model_info", {"model_name": "tiny_sd15"}))
        assert "tiny_sd15.safetensors" in nothing["hint"]

        video = data(await session.call_tool("suggest_model", {"task": "text-to-video"}))
        assert video["workflow"] == "wan22-t2v-vhs" and video["source"] == "catalog"
        portrait = data(await session.call_tool("suggest_model", {"task": "portrait", "style": "noir"}))
        assert portrait["source"] == "table" and portrait["recommended"] == "v1-5-pruned-emaonly.safetensors"
        assert "noir" in portrait["reason"]
        suggested = data(await session.call_tool("suggest_loras", {
            "prompt": "vintage film street photography", "model": "v1-5-pruned-emaonly.safetensors"}))
        assert suggested["suggestions"][0]["name"] == "film_grain.safetensors"
        assert suggested["suggestions"][0]["score"] == 2 * 2 + 3  # tags film, vintage; one use case

        built = data(await session.call_tool("build_prompt", {"subject": "a red fox", "style": "oil painting",
                                                              "setting": "snowy forest"}))
        assert built["prompt"].startswith("a red fox, oil painting, snowy forest, ")
        negative = data(await session.call_tool("suggest_negative", {"model_type": "flux"}))
        assert negative["default"] == "" and "portrait" in negative["suggestions"]
        analysis = data(await session.call_tool("analyze_prompt", {"prompt": "cat"}))["analysis"]
        assert analysis["word_count"] == 1 and analysis["issues"]
        rich = data(await session.call_tool("analyze_prompt", {
            "prompt": "cinematic photo of a lighthouse at sunset, highly detailed, 35mm"}))["analysis"]
        assert {"style", "lighting", "quality", "camera"} <= set(rich["detected_elements"])

        recipe = data(await session.call_tool("compose_recipe", {"input_text": "@portrait of a sailor at @night"}))
        assert {"portrait", "night"} <= set(recipe["recipe"]["categories"]) and recipe["policy_tier"] == "general"
        raised = data(await session.call_tool("compose_recipe", {"input_text": "@night harbour",
                                                                 "policy_tier": "explicit"}))
        assert raised["policy_tier"] == "general"  # a client cannot raise the server's tier
        listed = data(await session.call_tool("list_categories", {"category_type": "setting", "page_size": 2}))
        assert listed["total"] >= 2 and len(listed["items"]) == 2
        assert all(c["type"] == "setting" for c in listed["items"])
        found = data(await session.call_tool("list_categories", {"query": "rain"}))
        assert found["items"][0]["id"] == "rain"
        night = data(await session.call_tool("get_category", {"category_id": "night"}))["category"]
        assert night["id"] == "night" and night["keywords"]["primary"]
        assert error(await session.call_tool("get_category", {"category_id": "nite"}))["error"] == "UnknownCategory"


async def test_image_history_and_status_tools(mcp_env, emu: Emulator, tmp_path: Path) -> None:
    async with mcp_session(mcp_env, tmp_path) as session:
        first = data(await session.call_tool("generate_image", {"prompt": "a blue door", "workflow": "tiny-sd15",
                                                                "steps": 2, "output_path": "a/door.png"}))
        second = data(await session.call_tool("generate_image", {"prompt": "a green gate",
                                                                 "workflow": "tiny-sd15", "steps": 2,
                                                                 "output_path": "b/gate.png"}))
        images = data(await session.call_tool("list_images", {"sort": "name"}))
        assert [i["name"] for i in images["images"]] == ["a/door.png", "b/gate.png"] and images["source"] == "local"
        assert images["images"][0]["sidecar"] == "a/door.png.json"
        newest = data(await session.call_tool("list_images", {"limit": 1}))
        assert newest["images"][0]["name"] == "b/gate.png" and newest["total"] == 2
        assert data(await session.call_tool("list_images", {"prefix": "a/"}))["total"] == 1
        info = data(await session.call_tool("get_image_info", {"image_name": "a/door.png"}))
        assert info["generation_params"]["prompt"] == "a blue door" and info["size"] > 0
        history = data(await session.call_tool("get_history", {"limit": 5}))["history"]
        assert [h["name"] for h in history] == ["b/gate.png", "a/door.png"]
        assert history[0]["prompt_id"] == second["prompt_id"] and history[1]["generation_id"] == first["generation_id"]
        assert history[0]["parameters"]["prompt"] == "a green gate" and history[0]["status"] == "unvalidated"
        assert data(await session.call_tool("get_history", {"limit": 5}))["source"] == "catalog"
        deleted = data(await session.call_tool("delete_image", {"image_name": "a/door.png"}))
        assert deleted["deleted"] == ["a/door.png", "a/door.png.json"]
        assert not (tmp_path / "output" / "a" / "door.png").exists()
        assert error(await session.call_tool("get_image_info", {"image_name": "a/door.png"}))["error"] == "UsageError"
        assert error(await session.call_tool("list_images", {"source": "bucket"}))["error"] == "UsageError"

        status = data(await session.call_tool("get_system_status", {}))
        assert status["status"] == "online" and status["gpu"] and status["gpu"][0]["vram_total"] > 0


async def test_system_status_offline_is_a_result(mcp_env, tmp_path: Path) -> None:
    from comfy_gen.stack import free_port

    env = {**mcp_env, "COMFY_GEN_COMFYUI_URL": f"http://127.0.0.1:{free_port()}", "COMFY_GEN_HTTP_RETRIES": "1"}
    async with mcp_session(env, tmp_path) as session:
        status = data(await session.call_tool("get_system_status", {}))
        assert status["status"] == "offline"
        down = error(await session.call_tool("generate_image", {"prompt": "x", "workflow": "tiny-sd15"}))
        assert down["error"] == "ComfyUIUnavailable" and "hint" in down
