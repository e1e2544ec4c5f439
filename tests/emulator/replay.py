"""Helpers that re-create a recording's preconditions on an emulator and replay it."""

from __future__ import annotations

import copy
import io
import json
import time
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import httpx
from PIL import Image

from comfy_gen.emulator import Emulator
from tests.conftest import RECORDINGS

CAPTURES = RECORDINGS / "captures"
WORKFLOWS = RECORDINGS / "workflows"


@lru_cache(maxsize=None)
def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CAPTURES / f"{name}.json").read_text())
    return data


def capture(name: str) -> dict[str, Any]:
    """A deep copy of one capture (callers may edit it)."""
    return copy.deepcopy(_load(name))


def capture_names() -> list[str]:
    return sorted(p.stem for p in CAPTURES.glob("*.json"))


def workflow(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((WORKFLOWS / f"{name}.json").read_text())
    return data


def recorded_body(cap: dict[str, Any]) -> Any:
    body = cap["response"]["body"]
    if isinstance(body, dict) and body.get("omitted_inline"):
        return json.loads((CAPTURES / body["saved_as"]).read_text())
    return body


def path_of(cap: dict[str, Any]) -> str:
    parts = urlsplit(cap["request"]["url"])
    return parts.path + (f"?{parts.query}" if parts.query else "")


def png(colour: tuple[int, int, int] = (10, 120, 200), size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


def send(client: httpx.Client, cap: dict[str, Any], path: str | None = None) -> httpx.Response:
    """Send a recorded HTTP request (JSON, raw text or no body)."""
    request = cap["request"]
    body = request.get("body")
    target = path or path_of(cap)
    if body is None:
        return client.request(request["method"], target)
    if isinstance(body, str):
        ctype = request["headers"].get("Content-Type", "application/json")
        return client.request(request["method"], target, content=body.encode(),
                              headers={"Content-Type": ctype})
    return client.request(request["method"], target, json=body)


# --- jobs -----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _post_captures() -> list[tuple[str, str]]:
    """(capture name, prompt_id) of every accepted POST /prompt, in order."""
    out = []
    for name in capture_names():
        cap = _load(name)
        req = cap.get("request")
        if req and req["method"] == "POST" and path_of(cap).endswith("/prompt") \
                and cap["response"]["status"] == 200:
            out.append((name, cap["response"]["body"]["prompt_id"]))
    return out


def post_capture_for(prompt_id: str, before: str) -> dict[str, Any]:
    """The latest accepted POST /prompt for prompt_id recorded before ``before``."""
    found = [n for n, pid in _post_captures() if pid == prompt_id and n < before]
    assert found, f"no recorded POST /prompt for {prompt_id}"
    return capture(found[-1])


def stage_input_files(emu: Emulator, prompt: dict[str, Any]) -> None:
    """Put the files a prompt's LoadImage nodes read into the input folder."""
    for node in prompt.values():
        if node.get("class_type") != "LoadImage":
            continue
        name = str(node["inputs"]["image"])
        if "missing" in name:
            continue  # the recording expects it to be absent
        path = emu.input_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_bytes(b"this is not a png" if "not_an_image" in name else png())


def wait_history(client: httpx.Client, prompt_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = client.get(f"/history/{prompt_id}").json()
        if data:
            entry: dict[str, Any] = data[prompt_id]
            return entry
        time.sleep(0.01)
    raise AssertionError(f"{prompt_id} did not finish within {timeout}s")


def wait_running(client: httpx.Client, prompt_id: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = client.get("/queue").json()["queue_running"]
        if running and running[0][1] == prompt_id:
            return
        time.sleep(0.005)
    raise AssertionError(f"{prompt_id} never started")


def replay_job(emu: Emulator, client: httpx.Client, prompt_id: str, before: str,
               outcome: str = "execution_success") -> dict[str, Any]:
    """Re-run the recorded job with the same prompt_id; interrupt it if it was interrupted."""
    body = post_capture_for(prompt_id, before)["request"]["body"]
    body["prompt_id"] = prompt_id
    stage_input_files(emu, body["prompt"])
    if outcome == "execution_interrupted":
        emu.hold()  # it waits at its sampler until the interrupt lands
    response = client.post("/prompt", json=body)
    assert response.status_code == 200, response.text
    if outcome == "execution_interrupted":
        assert emu.wait_held(1, timeout=60) == [prompt_id]
        client.post("/interrupt", json={"prompt_id": prompt_id})
    entry = wait_history(client, prompt_id)
    emu.release()
    assert entry["status"]["messages"][-1][0] == outcome
    return entry


def replay_history(emu: Emulator, client: httpx.Client, recorded: dict[str, Any], before: str) -> None:
    """Re-create every entry of a recorded history body, in order."""
    for prompt_id, entry in recorded.items():
        replay_job(emu, client, prompt_id, before, entry["status"]["messages"][-1][0])


def fill_queue(emu: Emulator, client: httpx.Client, recorded: dict[str, Any]) -> None:
    """Make the queue hold jobs like the recorded running and pending items."""
    emu.hold()  # the running one waits at its sampler: nothing finishes while we look
    items = recorded["queue_running"] + recorded["queue_pending"]
    for number, prompt_id, prompt, extra, _ in items:
        body: dict[str, Any] = {"prompt": prompt, "prompt_id": prompt_id}
        extra = dict(extra)
        if "client_id" in extra:
            body["client_id"] = extra.pop("client_id")
        if extra:
            body["extra_data"] = extra
        if isinstance(number, float):
            body["number"] = number
        elif number < 0:
            body["front"] = True
        stage_input_files(emu, prompt)
        assert client.post("/prompt", json=body).status_code == 200
    if recorded["queue_running"]:
        wait_running(client, items[0][1])
        assert emu.wait_held(1, timeout=60) == [items[0][1]]
