"""HTTP and WebSocket routes of the emulator (an aiohttp app, like ComfyUI's).

Every public route is also served under ``/api``; ``/internal/*`` and the
emulator's own ``/_emulator/*`` controls exist only without it (captures/020-030).
404 bodies are empty and JSON is ``application/json; charset=utf-8``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from comfy_gen.emulator import files
from comfy_gen.emulator.core import Core
from comfy_gen.emulator.ws import SERVER_FEATURES, Client

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CORE_KEY = web.AppKey("core", Core)
#: The longest a GET /_emulator/hold?held=N request waits (s), so a client's read timeout can cover it.
MAX_HOLD_WAIT = 300.0

_INDEX = """<!doctype html><html><head><title>comfy-gen ComfyUI emulator</title></head>
<body><h1>comfy-gen ComfyUI protocol emulator</h1>
<p>This server speaks ComfyUI's HTTP and WebSocket API for tests, demos and benchmarks.
It renders placeholder images; it runs no models.</p></body></html>"""


def _core(request: web.Request) -> Core:
    return request.app[CORE_KEY]


@web.middleware
async def _fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    core = _core(request)
    if not request.path.startswith("/_emulator/"):
        status = core.faults.http_status()
        if status is not None:
            core.stats.faults_injected += 1
            reason = "Service Unavailable" if status == 503 else "Internal Server Error"
            return web.Response(status=status, text=f"{status} {reason}\n\nEmulated fault")
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return web.Response(status=404)
    except web.HTTPException:
        raise
    except Exception:  # malformed JSON and friends: aiohttp's plain 500 (captures/170)
        log.debug("handler failed for %s %s", request.method, request.path, exc_info=True)
        return files.internal_error()


# --- information routes -----------------------------------------------------------


async def system_stats(request: web.Request) -> web.Response:
    total = _ram_total()
    free = total // 2
    return web.json_response({
        "system": {
            "os": os.name, "ram_total": total, "ram_free": free,
            "comfyui_version": "0.3.64", "required_frontend_version": "1.27.10",
            "installed_templates_version": "0.1.95", "required_templates_version": "0.1.95",
            "python_version": sys.version, "pytorch_version": "emulated",
            "embedded_python": False, "argv": ["comfy-gen-emulator", "--port", str(request.url.port)],
        },
        "devices": [{"name": "emulator", "type": "cpu", "index": None, "vram_total": total,
                     "vram_free": free, "torch_vram_total": total, "torch_vram_free": free}],
    })


def _ram_total() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * 1024**3


async def features(request: web.Request) -> web.Response:
    return web.json_response(SERVER_FEATURES)


async def object_info(request: web.Request) -> web.Response:
    return web.json_response(_core(request).catalog.object_info(request.match_info.get("node_class")))


async def models(request: web.Request) -> web.Response:
    from comfy_gen.emulator.catalog import MODEL_FOLDERS

    return web.json_response(MODEL_FOLDERS)


async def models_in(request: web.Request) -> web.Response:
    names = _core(request).catalog.models_in(request.match_info["folder"])
    return web.Response(status=404) if names is None else web.json_response(names)


async def embeddings(request: web.Request) -> web.Response:
    names = _core(request).catalog.models_in("embeddings") or []
    return web.json_response([os.path.splitext(n)[0] for n in names])


# --- queue and history ------------------------------------------------------------


async def get_prompt(request: web.Request) -> web.Response:
    return web.json_response(_core(request).queue.queue_info())


async def post_prompt(request: web.Request) -> web.Response:
    body = await request.json()
    status, payload = await _core(request).submit(body)
    return web.json_response(payload, status=status)


async def get_queue(request: web.Request) -> web.Response:
    return web.json_response(_core(request).queue.current())


async def post_queue(request: web.Request) -> web.Response:
    body = await request.json()
    core = _core(request)
    if body.get("clear"):
        await core.clear_pending()
    if "delete" in body:
        await core.delete_pending(list(body["delete"]))
    return web.Response(status=200)


async def post_interrupt(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except json.JSONDecodeError:
        body = {}
    _core(request).interrupt((body or {}).get("prompt_id"))
    return web.Response(status=200)


async def get_history(request: web.Request) -> web.Response:
    query = request.rel_url.query
    max_items = int(query["max_items"]) if "max_items" in query else None
    offset = int(query.get("offset", -1))
    return web.json_response(_core(request).queue.get_history(None, max_items, offset))


async def get_history_item(request: web.Request) -> web.Response:
    return web.json_response(_core(request).queue.get_history(request.match_info["prompt_id"]))


async def post_history(request: web.Request) -> web.Response:
    body = await request.json()
    history = _core(request).queue.history
    if body.get("clear"):
        history.clear()
    for prompt_id in body.get("delete", []):
        history.pop(str(prompt_id), None)
    return web.Response(status=200)


async def post_free(request: web.Request) -> web.Response:
    return web.Response(status=200)  # nothing is loaded, so nothing to free


# --- files --------------------------------------------------------------------------


async def view(request: web.Request) -> web.StreamResponse:
    return files.view(request.rel_url.query, _core(request).dirs)


async def upload_image(request: web.Request) -> web.Response:
    return await files.upload(request, _core(request).dirs)


async def upload_mask(request: web.Request) -> web.Response:
    return await files.upload(request, _core(request).dirs, mask=True)


async def index(request: web.Request) -> web.Response:
    return web.Response(text=_INDEX, content_type="text/html")


# --- websocket ----------------------------------------------------------------------


async def websocket(request: web.Request) -> web.WebSocketResponse:
    core = _core(request)
    ws = web.WebSocketResponse(max_msg_size=0)
    await ws.prepare(request)
    sid = request.rel_url.query.get("clientId") or uuid.uuid4().hex
    client = Client(sid, ws, request)
    core.hub.add(client)
    try:
        await core.hub.send_to(client, "status", {"status": core.queue.queue_info(), "sid": sid})
        # Reconnect while this client's prompt runs: tell it which node (captures/282).
        if core.executor.client_id == sid and core.executor.last_node_id is not None:
            await core.hub.send_to(client, "executing", {"node": core.executor.last_node_id})
        first = True
        async for msg in ws:
            if msg.type.name != "TEXT":
                continue
            try:
                data = json.loads(msg.data)
            except json.JSONDecodeError:
                continue
            if first and isinstance(data, dict) and data.get("type") == "feature_flags":
                client.flags = dict(data.get("data") or {})
                await core.hub.send_to(client, "feature_flags", SERVER_FEATURES)
            first = False
    finally:
        core.hub.remove(client)
    return ws


# --- emulator controls (never under /api, never faulted) --------------------------


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response(_core(request).faults.to_dict())


async def post_faults(request: web.Request) -> web.Response:
    faults = _core(request).faults
    try:
        body = await request.json()
        faults.update(body if isinstance(body, dict) else {})
    except (ValueError, TypeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(faults.to_dict())


async def post_restart(request: web.Request) -> web.Response:
    await _core(request).restart()
    return web.json_response({"restarted": True})


async def get_hold(request: web.Request) -> web.Response:
    """The hold state; ``?held=N&timeout=S`` first waits (up to S s) for N held jobs (408 if not)."""
    holds = _core(request).holds
    query = request.rel_url.query
    if "held" in query:
        try:
            n, timeout = int(query["held"]), min(float(query.get("timeout", 60)), MAX_HOLD_WAIT)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if not await holds.wait_held(n, timeout):
            return web.json_response(holds.to_dict(), status=408)
    return web.json_response(holds.to_dict())


async def post_hold(request: web.Request) -> web.Response:
    """Body ``{"after": K, "at_step": N}`` (optional): hold jobs at their sampler (before
    step N, default 1), letting K through first."""
    holds = _core(request).holds
    try:
        body = await request.json() if request.can_read_body else {}
        body = body or {}
        holds.hold(int(body.get("after", 0)), int(body.get("at_step", 1)))
    except (ValueError, TypeError, AttributeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(holds.to_dict())


async def post_release(request: web.Request) -> web.Response:
    """Body ``{"n": N}``: release the N longest-held jobs; no N: all, and stop holding."""
    holds = _core(request).holds
    try:
        body = await request.json() if request.can_read_body else {}
        n = (body or {}).get("n")
        released = holds.release(None if n is None else int(n))
    except (ValueError, TypeError, AttributeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"released": released, **holds.to_dict()})


async def get_stats(request: web.Request) -> web.Response:
    return web.json_response(stats_of(_core(request)))


def stats_of(core: Core) -> dict[str, Any]:
    data = core.stats.snapshot()
    data.update(queue_pending=len(core.queue.pending),
                queue_running=1 if core.queue.running is not None else 0,
                history_size=len(core.queue.history), ws_clients=len(core.hub.clients),
                jobs_held=core.holds.jobs_held, held=core.holds.held)
    return data


async def internal_folder_paths(request: web.Request) -> web.Response:
    dirs = _core(request).dirs
    return web.json_response({"output": [str(dirs.output)], "input": [str(dirs.input)],
                              "temp": [str(dirs.temp)]})


async def internal_files(request: web.Request) -> web.Response:
    folder = _core(request).dirs.by_type(request.match_info["directory_type"])
    if folder is None:
        return web.Response(status=400)
    names = sorted(p.name for p in Path(folder).iterdir() if p.is_file()) if folder.is_dir() else []
    return web.json_response(names)


PUBLIC_ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/ws", websocket),
    ("GET", "/", index),
    ("GET", "/system_stats", system_stats),
    ("GET", "/features", features),
    ("GET", "/object_info", object_info),
    ("GET", "/object_info/{node_class}", object_info),
    ("GET", "/models", models),
    ("GET", "/models/{folder}", models_in),
    ("GET", "/embeddings", embeddings),
    ("GET", "/prompt", get_prompt),
    ("POST", "/prompt", post_prompt),
    ("GET", "/queue", get_queue),
    ("POST", "/queue", post_queue),
    ("POST", "/interrupt", post_interrupt),
    ("GET", "/history", get_history),
    ("GET", "/history/{prompt_id}", get_history_item),
    ("POST", "/history", post_history),
    ("POST", "/free", post_free),
    ("GET", "/view", view),
    ("POST", "/upload/image", upload_image),
    ("POST", "/upload/mask", upload_mask),
]

PRIVATE_ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/internal/folder_paths", internal_folder_paths),
    ("GET", "/internal/files/{directory_type}", internal_files),
    ("GET", "/_emulator/faults", get_faults),
    ("POST", "/_emulator/faults", post_faults),
    ("POST", "/_emulator/restart", post_restart),
    ("GET", "/_emulator/stats", get_stats),
    ("GET", "/_emulator/hold", get_hold),
    ("POST", "/_emulator/hold", post_hold),
    ("POST", "/_emulator/release", post_release),
]


def build_app(core: Core) -> web.Application:
    app = web.Application(middlewares=[_fault_middleware], client_max_size=104857600)
    app[CORE_KEY] = core
    for method, path, handler in PUBLIC_ROUTES:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, "/api" + path, handler)
    for method, path, handler in PRIVATE_ROUTES:
        app.router.add_route(method, path, handler)
    return app

