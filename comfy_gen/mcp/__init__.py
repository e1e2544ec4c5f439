"""The MCP server: comfy-gen's tools for AI agents (``comfy-gen mcp``).

Built on the official ``mcp`` SDK's ``FastMCP`` (pinned ``mcp>=1.30,<2``: the 2.x
line moved ``FastMCP``). Every tool adapts the same core the CLI and the API use:
generation goes through ``comfy_gen.service.generate`` with
``GenerateRequest(paths="confined")``, recipes through ``comfy_gen.runs.plan_run``
and the ``render_recipe`` flow. Modules by concern:

    server.py      the server, the error mapping (comfy_gen.errors -> tool errors), transports
    _bridge.py     a blocking core call from an async tool: progress out, cancellation in
    generation.py  generate_image, img2img, generate_video, image_to_video, validate_workflow
    state.py       get_progress, get_queue, cancel, get_system_status, ComfyUI service tools
    models.py      list_models, list_loras, get_model_info, suggest_model, suggest_loras
    prompts.py     build_prompt, suggest_negative, analyze_prompt, compose_recipe, categories
    images.py      list_images, get_image_info, delete_image, get_history
    batches.py     run_recipe, get_run_status, list_recipes, validate_recipe
    hubs.py        CivitAI and Hugging Face search clients (off unless enabled)

The ``mcp`` package is imported only when the server is built, never by
``comfy-gen --help``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.mcp.server import App


def build_server(settings: Any = None) -> "App":
    """The MCP server with every tool registered (settings default: ``get_settings()``)."""
    from comfy_gen.mcp.server import build_server as build

    return build(settings)


__all__ = ["build_server"]
