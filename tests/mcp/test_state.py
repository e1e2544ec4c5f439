"""Jobs in flight over MCP: get_progress and get_queue while a job is held on the emulator,
cancel (ours only), and cancelling a tool call cancelling the job."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from mcp.shared.exceptions import McpError
from mcp.types import CancelledNotification, CancelledNotificationParams, ClientNotification

from comfy_gen.comfyui import ComfyUIClient
from comfy_gen.emulator import Emulator
from comfy_gen.workflow import load_workflow
from tests.conftest import REPO_ROOT
from tests.mcp.helpers import data, error, mcp_session

pytestmark = pytest.mark.anyio
GENERATE = {"prompt": "a slow sunrise", "workflow": "tiny-sd15", "steps": 3, "json_progress": True}


def _foreign_job(emu: Emulator) -> str:
    """A job queued by another ComfyUI client (not a comfy-gen client id)."""
    graph = load_workflow(REPO_ROOT / "workflows" / "tiny-sd15.json")
    with ComfyUIClient(emu.url, client_id="someone-else") as other:
        return other.queue_prompt(graph).prompt_id


async def test_progress_queue_and_cancel_touch_only_our_jobs(mcp_env, emu: Emulator, tmp_path: Path) -> None:
    emu.hold()
    foreign = _foreign_job(emu)
    assert await anyio.to_thread.run_sync(emu.wait_held) == [foreign]
    outcome: dict[str, object] = {}
    async with mcp_session(mcp_env, tmp_path) as session:
        refused = error(await session.call_tool("cancel", {"prompt_id": foreign}))
        assert "not queued by comfy-gen" in refused["message"]
        assert data(await session.call_tool("get_progress", {"prompt_id": foreign}))["status"] == "running"

        async def generate() -> None:
            outcome["result"] = await session.call_tool("generate_image", GENERATE)

        async with anyio.create_task_group() as group:
            group.start_soon(generate)
            # Ours waits behind the held foreign job: pending, first in line.
            queue: dict = {"pending": []}
            while not queue["pending"]:
                queue = data(await session.call_tool("get_queue", {}))
            assert queue["running_count"] == 1 and queue["running"][0]["ours"] is False
            ours = queue["pending"][0]
            assert ours["ours"] is True and ours["client_id"].startswith("comfy-gen-")
            mine = ours["prompt_id"]
            pending = data(await session.call_tool("get_progress", {"prompt_id": mine}))
            assert pending == {"status": "pending", "prompt_id": mine, "position": 1, "queue_length": 2}

            emu.release(1)  # the foreign job finishes; ours is held next
            assert await anyio.to_thread.run_sync(emu.wait_held) == [mine]
            running = data(await session.call_tool("get_progress", {"prompt_id": mine}))
            assert running["status"] == "running" and running["position"] == "current"
            overall = data(await session.call_tool("get_progress", {}))
            assert overall["current_job"] == mine and overall["is_processing"] is True
            cancelled = data(await session.call_tool("cancel", {}))
            assert cancelled == {"cancelled": {mine: "interrupted"}, "count": 1}
        interrupted = error(outcome["result"])  # type: ignore[arg-type]
        assert interrupted["error"] == "ExecutionInterrupted"
        done = data(await session.call_tool("get_progress", {"prompt_id": foreign}))
        assert done["status"] == "completed" and done["result"] == "success"
        unknown = data(await session.call_tool("get_progress", {"prompt_id": "no-such-prompt"}))
        assert unknown["status"] == "not_found"
    assert not list((tmp_path / "output").rglob("*.png"))  # nothing kept from the interrupted job


async def test_cancelling_the_tool_call_cancels_the_job(mcp_env, emu: Emulator, tmp_path: Path) -> None:
    emu.hold()
    outcome: dict[str, object] = {}
    async with mcp_session(mcp_env, tmp_path) as session:
        request_id = session._request_id  # the id the next request gets (the SDK counts up from here)

        async def generate() -> None:
            try:
                outcome["result"] = await session.call_tool("generate_image", GENERATE)
            except McpError as exc:
                outcome["error"] = exc.error.message

        async with anyio.create_task_group() as group:
            group.start_soon(generate)
            held = await anyio.to_thread.run_sync(emu.wait_held)
            await session.send_notification(ClientNotification(CancelledNotification(
                params=CancelledNotificationParams(requestId=request_id, reason="the user changed their mind"))))
        assert outcome == {"error": "Request cancelled"}
        # The server cancelled our job on ComfyUI: it ends interrupted, not rendered.
        status: dict = {"status": "running"}
        while status["status"] == "running":
            status = data(await session.call_tool("get_progress", {"prompt_id": held[0]}))
        assert status["status"] in ("completed", "not_found") and status.get("result") != "success"
        assert data(await session.call_tool("get_queue", {}))["running_count"] == 0
    assert emu.stats()["jobs_interrupted"] >= 1
    assert not list((tmp_path / "output").rglob("*.png"))
    assert not any((tmp_path / "state" / "work").iterdir())  # the attempt's files were removed
