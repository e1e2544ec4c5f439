"""Recipes over MCP: list, validate, run_recipe to completion through Prefect, get_run_status.

No Prefect server is configured, so the MCP server starts its own local one on first
use (as `comfy-gen run` does) and stops it when it exits.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from comfy_gen.emulator import Emulator
from tests.mcp.helpers import data, error, mcp_session

pytestmark = pytest.mark.anyio

RECIPE = """\
name: mcp-small
description: Two scenes on the tiny workflow.
workflow: tiny-sd15.json
defaults: {steps: 3, width: 64, height: 64, sampler: euler, scheduler: normal}
prompts:
  - text: a lighthouse at dawn
    label: lighthouse
  - text: a barn in the snow
    label: barn
seeds: [7]
validation: {enabled: false}
output: {upload: false, contact_sheet: false}
"""


async def test_recipes_validate_run_and_status(mcp_env, emu: Emulator, tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    (recipes / "small.yaml").write_text(RECIPE)
    (recipes / "broken.yaml").write_text(RECIPE.replace("steps: 3", "steps: many"))
    env = {k: v for k, v in mcp_env.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    async with mcp_session(env, tmp_path) as session:
        listed = data(await session.call_tool("list_recipes", {}))
        assert [r["name"] for r in listed["recipes"]] == ["broken", "small"]
        assert listed["recipes"][1]["description"] == "Two scenes on the tiny workflow."
        plan = data(await session.call_tool("validate_recipe", {"recipe": "small"}))
        assert plan["valid"] and plan["items"] == 2 and plan["workflows"] == ["tiny-sd15.json"]
        assert [i["prompt"] for i in plan["first_items"]] == ["a lighthouse at dawn", "a barn in the snow"]
        assert data(await session.call_tool("validate_recipe", {"recipe": "small.yaml"}))["items"] == 2
        (tmp_path / "here.yaml").write_text(RECIPE)  # the server's working directory is not a recipe folder
        cwd = error(await session.call_tool("validate_recipe", {"recipe": str(tmp_path / "here.yaml")}))
        assert cwd["error"] == "PathNotAllowed"
        broken = data(await session.call_tool("validate_recipe", {"recipe": "broken"}))
        assert not broken["valid"] and "recipes/broken.yaml:4: $.defaults.steps" in broken["errors"][0]
        refused = error(await session.call_tool("run_recipe", {"recipe": "broken"}))
        assert refused["error"] == "RecipeError" and refused["problems"]

        started = data(await session.call_tool("run_recipe", {"recipe": "small"}))
        run_id = started["flow_run_id"]
        assert started["mode"] == "in-process" and started["items"] == 2
        assert started["ui_url"].endswith(f"/runs/flow-run/{run_id}") and started["ui_url"].startswith("http://127.0.0.1:")
        status = data(await session.call_tool("get_run_status", {"flow_run_id": run_id}))
        while not status["finished"]:  # the flow runs in the server: follow it as an agent would
            status = data(await session.call_tool("get_run_status", {"flow_run_id": run_id}))
        assert status["state"] == "COMPLETED", status
        summary = status["summary"]
        assert summary["items"] == 2 and summary["rendered"] == 2 and summary["flow_run_id"] == run_id
        assert len(list((tmp_path / "output" / "mcp-small" / "items").glob("*.png"))) == 2
        bad = error(await session.call_tool("get_run_status", {"flow_run_id": "not-a-uuid"}))
        assert bad["error"] == "UsageError"
    # The local Prefect server it started went away with it.
    assert not list((tmp_path / "prefect-home" / "comfy-gen-procs").glob("*.json"))
