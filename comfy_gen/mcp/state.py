"""State and control tools: get_progress, get_queue, cancel, get_system_status, and the
local ComfyUI service (start, stop, restart, status via ``comfy_gen.server_control``).

``cancel`` touches only comfy-gen's prompts: every comfy-gen client id starts with
``comfy-gen-`` (``comfy_gen.comfyui.CLIENT_ID_PREFIX``) and ComfyUI echoes it in
each queue entry, so another user's job is refused, never interrupted.
"""

from typing import TYPE_CHECKING, Annotated, Any, Callable, TypeVar

import anyio.to_thread
from pydantic import Field

from comfy_gen.errors import ComfyUIError, ComfyUIUnavailable

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.mcp.server import App

T = TypeVar("T")
Json = dict[str, Any]
PromptId = Annotated[str | None, Field(description="A prompt id (as returned by generate_image); null: the "
                                                   "whole queue.", max_length=200)]


async def blocking(fn: Callable[[], T]) -> T:
    """A short blocking call (HTTP to ComfyUI, file reads) off the event loop."""
    return await anyio.to_thread.run_sync(fn)


def client(app: Any) -> Any:
    from comfy_gen.comfyui import ComfyUIClient

    return ComfyUIClient.from_settings(app.settings)


def register(app: "App") -> None:
    mcp = app.mcp

    @mcp.tool()
    async def get_progress(prompt_id: PromptId = None) -> Json:
        """Where a job is: running (position "current"), pending (position in the queue), completed
        (with its status) or not_found. Without a prompt id: the current job, the queue length and
        whether ComfyUI is busy."""
        return await blocking(lambda: progress(app, prompt_id))

    @mcp.tool()
    async def get_queue() -> Json:
        """The running and pending jobs (prompt_id, number, client_id, ours) and their counts."""
        def read() -> Json:
            with client(app) as c:
                state = c.get_queue()
            running = [_item(i) for i in state.running]
            pending = [_item(i) for i in state.pending]
            return {"running": running, "pending": pending, "running_count": len(running),
                    "pending_count": len(pending)}
        return await blocking(read)

    @mcp.tool()
    async def cancel(prompt_id: PromptId = None) -> Json:
        """Cancel one of comfy-gen's jobs (interrupt it if running, delete it if pending), or, without
        a prompt id, every comfy-gen job. Jobs queued by other clients are never touched.
        Returns cancelled {prompt_id: interrupted|deleted} and count."""
        return await blocking(lambda: cancel_ours(app, prompt_id))

    @mcp.tool()
    async def get_system_status() -> Json:
        """ComfyUI's health: status online|offline, url, system (versions), devices and gpu
        [{name, type, vram_total, vram_free, vram_used_percent}]."""
        return await blocking(lambda: system_status(app))

    @mcp.tool()
    async def start_comfyui_service(
            timeout: Annotated[float, Field(description="Seconds to wait for the API.", gt=0, le=600)] = 120,
    ) -> Json:
        """Start the local ComfyUI install (COMFY_GEN_COMFYUI_PATH) and wait until it answers.
        Returns url, pid, running, healthy, log."""
        return await blocking(lambda: _local(app).start(timeout=timeout).to_dict())

    @mcp.tool()
    async def stop_comfyui_service(
            timeout: Annotated[float, Field(description="Seconds before it is killed.", gt=0, le=600)] = 30,
    ) -> Json:
        """Stop the local ComfyUI started by comfy-gen. Returns stopped (false: it was not running)."""
        return await blocking(lambda: {"stopped": _local(app).stop(timeout=timeout)})

    @mcp.tool()
    async def restart_comfyui_service(
            timeout: Annotated[float, Field(description="Seconds to wait for the API.", gt=0, le=600)] = 120,
    ) -> Json:
        """Stop, then start the local ComfyUI. Returns url, pid, running, healthy, log."""
        return await blocking(lambda: _local(app).restart(timeout=timeout).to_dict())

    @mcp.tool()
    async def check_comfyui_service_status() -> Json:
        """Is the local ComfyUI process alive and does its API answer? Returns url, pid, running,
        healthy, log."""
        return await blocking(lambda: _local(app).status().to_dict())


def _local(app: Any) -> Any:
    from comfy_gen.server_control import LocalServer

    return LocalServer(app.settings)


def _item(item: Any) -> Json:
    return {**item.to_dict(), "ours": item.is_comfy_gen}


def progress(app: Any, prompt_id: str | None) -> Json:
    with client(app) as c:
        state = c.get_queue()
        length = len(state.running) + len(state.pending)
        if prompt_id is None:
            current = state.running[0].prompt_id if state.running else None
            return {"current_job": current, "queue_length": length, "is_processing": bool(state.running),
                    "running": [_item(i) for i in state.running], "pending": [_item(i) for i in state.pending]}
        where = state.find(prompt_id)
        if where == "running":
            return {"status": "running", "prompt_id": prompt_id, "position": "current", "queue_length": length}
        if where == "pending":
            position = [i.prompt_id for i in state.pending].index(prompt_id) + 1
            return {"status": "pending", "prompt_id": prompt_id, "position": position, "queue_length": length}
        entry = c.history(prompt_id)
    if entry is not None:
        status = (entry.get("status") or {}).get("status_str") or "success"
        return {"status": "completed", "prompt_id": prompt_id, "result": status, "queue_length": length,
                "outputs": sorted((entry.get("outputs") or {}).keys())}
    return {"status": "not_found", "prompt_id": prompt_id, "queue_length": length}


def cancel_ours(app: Any, prompt_id: str | None) -> Json:
    with client(app) as c:
        state = c.get_queue()
        if prompt_id is not None:
            item = next((i for i in state.running + state.pending if i.prompt_id == prompt_id), None)
            if item is None:
                raise ComfyUIError(f"Job {prompt_id} is neither running nor pending", prompt_id=prompt_id)
            if not item.is_comfy_gen:
                raise ComfyUIError(f"Job {prompt_id} was not queued by comfy-gen; it is left alone",
                                   prompt_id=prompt_id)
            done = {prompt_id: c.cancel(prompt_id)}
        else:
            done = {}
            # Pending first, so none of ours starts in the gap; then the running one.
            pending = [i.prompt_id for i in state.pending if i.is_comfy_gen]
            if pending:
                c.delete_pending(pending)
                done.update({pid: "deleted" for pid in pending})
            for item in state.running:
                if item.is_comfy_gen and c.interrupt(item.prompt_id):
                    done[item.prompt_id] = "interrupted"
    cancelled = {k: v for k, v in done.items() if v != "not_found"}
    return {"cancelled": cancelled, "count": len(cancelled)}


def system_status(app: Any) -> Json:
    with client(app) as c:
        try:
            stats = c.system_stats()
        except ComfyUIUnavailable as exc:
            return {"status": "offline", "url": c.display_url, "error": str(exc)}
        url = c.display_url
    devices = list(stats.get("devices") or [])
    gpus = []
    for dev in devices:
        total, free = dev.get("vram_total") or 0, dev.get("vram_free") or 0
        used = round(100 * (total - free) / total, 1) if total else None
        gpus.append({"name": dev.get("name"), "type": dev.get("type"), "vram_total": total, "vram_free": free,
                     "vram_used_percent": used})
    return {"status": "online", "url": url, "system": stats.get("system") or {}, "devices": devices, "gpu": gpus}
