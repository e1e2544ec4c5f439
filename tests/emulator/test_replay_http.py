"""Replay every recorded HTTP interaction against the emulator.

For each capture the test re-creates what the real server had at that moment
(jobs in the queue, history entries, uploaded files), sends the same request and
checks the same status, content type and JSON structure (keys and value types).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from comfy_gen.emulator import Emulator
from comfy_gen.emulator.catalog import custom_node_classes
from tests.emulator import replay
from tests.emulator.shapes import mismatch

#: Captures not replayed here, and why.
EXCLUDED: dict[str, str] = {
    "025_get_extensions": "frontend-only: web UI extension scripts",
    "026_get_internal_folder_paths": "lists the real server's model folders; the emulator has only output/input/temp",
    "029_get_internal_logs_raw": "server log lines; the emulator keeps no log buffer",
    "031_get_settings": "frontend-only: web UI settings",
    "032_get_users": "frontend-only: web UI user storage",
    "033_get_userdata_workflows": "frontend-only: web UI user data",
    "034_get_experiment_models": "frontend-only: model browser of the web UI",
    "035_get_experiment_models_checkpoints": "frontend-only: model browser of the web UI",
    "036_get_view_metadata_checkpoint": "needs a real safetensors file; the emulator has only names",
    "037_get_root_index_html": "the web UI itself; the emulator serves a one-paragraph page",
    "040_get_workflow_templates": "frontend-only: template gallery",
}

HTTP_CAPTURES = [n for n in replay.capture_names()
                 if "request" in replay._load(n) and n not in EXCLUDED]

_A, _B, _C = replay.png((10, 120, 200)), replay.png((200, 40, 40)), replay.png((40, 200, 40))
#: What the recorded uploads sent (only sizes were recorded): same or other bytes.
UPLOAD_BYTES: dict[str, bytes] = {
    "200_post_upload_image_new": _A,
    "201_post_upload_image_same_name_same_bytes": _A,
    "202_post_upload_image_same_name_other_bytes": _B,
    "203_post_upload_image_same_name_other_bytes_again": _C,
    "204_post_upload_image_overwrite_true": _A,
    "205_post_upload_image_subfolder": _A,
    "206_post_upload_image_type_temp": _A,
    "208_post_upload_image_traversal_subfolder": _A,
    "209_post_upload_image_bad_type": _A,
    "210_post_upload_not_an_image": b"definitely text",
    "214_post_upload_mask": replay.png((0, 0, 0)),
}

#: Which workflow produced the file a /view capture fetched.
VIEW_JOBS = {
    "104_get_view_output_image": ("txt2img_ckpt", "9"),
    "105_get_view_preview_webp": ("txt2img_ckpt", "9"),
    "228_get_view_temp_preview_image": ("txt2img_batch2_preview", "11"),
}


def _upload(client: httpx.Client, name: str) -> httpx.Response:
    cap = replay.capture(name)
    body = cap["request"]["body"]
    if isinstance(body, str):  # a form without any file field
        return client.post(replay.path_of(cap), data={"foo": "bar"})
    field = body["multipart_fields"]["image"]
    files = {"image": (field["filename"], UPLOAD_BYTES[name], field["content_type"])}
    return client.post(replay.path_of(cap), files=files, data=body.get("form") or {})


def _is_upload(name: str) -> bool:
    return "_post_upload_" in name


def _prepare(name: str, cap: dict[str, Any], request: pytest.FixtureRequest) -> tuple[Emulator, str]:
    """Bring an emulator into the recorded state; returns it and the path to request."""
    path = replay.path_of(cap)
    method = cap["request"]["method"]
    route = urlsplit(path).path.removeprefix("/api")
    body = replay.recorded_body(cap)
    needs_fresh = _is_upload(name) or (method == "GET" and (
        route.startswith("/history") or route == "/view" or (route == "/queue" and body != {
            "queue_running": [], "queue_pending": []})))
    emu: Emulator = request.getfixturevalue("fresh_emulator" if needs_fresh else "emu")
    client = httpx.Client(base_url=emu.url, timeout=10)
    if _is_upload(name):
        for earlier in [n for n in HTTP_CAPTURES if _is_upload(n) and n < name]:
            previous = replay.capture(earlier)
            response = _upload(client, earlier)
            assert response.status_code == previous["response"]["status"], earlier
    elif method == "GET" and route.startswith("/history") and body:
        if "offset" in path:  # the entries before the requested window
            for _ in range(int(parse_qs(urlsplit(path).query)["offset"][0])):
                client.post("/prompt", json={"prompt": replay.workflow("txt2img_fastest")})
            emu.wait_idle()
        replay.replay_history(emu, client, body, name)
    elif method == "GET" and route == "/queue" and body["queue_running"] + body["queue_pending"]:
        replay.fill_queue(emu, client, body)
    elif route == "/view" and cap["response"]["status"] == 200:
        path = _stage_view(emu, client, name, path)
    elif method == "POST" and route == "/prompt" and isinstance(cap["request"]["body"], dict):
        replay.stage_input_files(emu, cap["request"]["body"].get("prompt") or {})
    return emu, path


def _stage_view(emu: Emulator, client: httpx.Client, name: str, path: str) -> str:
    query = {k: v[0] for k, v in parse_qs(urlsplit(path).query, keep_blank_values=True).items()}
    if query.get("type") == "input":
        target = emu.input_dir / query.get("subfolder", "") / query["filename"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(replay.png())
        return path
    workflow_name, node_id = VIEW_JOBS[name]
    prompt_id = client.post("/prompt", json={"prompt": replay.workflow(workflow_name)}).json()["prompt_id"]
    image = replay.wait_history(client, prompt_id)["outputs"][node_id]["images"][0]
    query.update(filename=image["filename"], subfolder=image["subfolder"])
    return f"{urlsplit(path).path}?{urlencode(query)}"


@pytest.mark.parametrize("name", HTTP_CAPTURES, ids=HTTP_CAPTURES)
def test_http_capture(name: str, request: pytest.FixtureRequest) -> None:
    cap = replay.capture(name)
    emu, path = _prepare(name, cap, request)
    with httpx.Client(base_url=emu.url, timeout=10) as client:
        response = _upload(client, name) if _is_upload(name) else replay.send(client, cap, path)
    recorded = cap["response"]
    assert response.status_code == recorded["status"], response.text[:300]
    kind = recorded["body_kind"]
    ctype = recorded["headers"].get("Content-Type")
    if kind == "empty":
        assert response.content == b""
        return
    assert response.headers["content-type"] == ctype
    if kind == "text":
        assert response.text == recorded["body"]
    elif kind == "binary":
        magic = bytes.fromhex(recorded["body"]["first_bytes_hex"])[:4]
        assert response.content[:4] == magic
        for header in ("Content-Disposition", "Etag", "Last-Modified"):
            assert (header in response.headers) == (header in recorded["headers"]), header
    else:
        _assert_json(name, replay.recorded_body(cap), response.json())


def _assert_json(name: str, recorded: Any, actual: Any) -> None:
    if name.startswith("003_"):  # the emulator ships a subset of the 478 classes
        # ... plus the custom-node classes it knows (not on the recorded server; data/custom_nodes.json)
        custom = set(custom_node_classes())
        assert actual and set(actual) - custom <= set(recorded) and custom <= set(actual)
        for class_name, info in actual.items():
            if class_name in custom:
                continue
            assert mismatch(recorded[class_name], info, class_name) is None
        return
    if _is_upload(name):  # upload names are deterministic: compare exactly
        assert actual == recorded
        return
    problem = mismatch(recorded, actual)
    assert problem is None, problem


def test_every_capture_is_replayed_or_excluded() -> None:
    ws_tested = {"189", "190", "191", "192", "193", "194", "280", "281", "282", "283", "284",
                 "285", "390", "391", "392"}
    timings = {"199", "299", "399", "900", "901", "902"}
    for name in replay.capture_names():
        prefix = name[:3]
        assert name in HTTP_CAPTURES or name in EXCLUDED or prefix in ws_tested | timings, name
