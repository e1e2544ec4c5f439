"""Generation jobs over HTTP against the emulator: status, progress (SSE), images, cancel, errors."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest

from comfy_gen.emulator import Emulator
from tests.api.conftest import ApiServer

TINY = {"prompt": "a lighthouse at dusk", "workflow": "tiny-sd15", "steps": 3, "seed": 7}


def _submit(api: ApiServer, **body: Any) -> dict[str, Any]:
    response = api.client.post("/api/v1/generate", json={**TINY, **body})
    assert response.status_code == 202, response.text
    return response.json()


def _read_events(api: ApiServer, job_id: str, out: list[tuple[str, dict[str, Any]]], opened: threading.Event) -> None:
    with httpx.Client(base_url=api.url, timeout=60) as client:
        with client.stream("GET", f"/api/v1/generate/{job_id}/events") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            event = None
            for line in response.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    out.append((str(event), json.loads(line[5:])))
                    opened.set()
                    if event == "done":
                        return


def test_generate_completes_with_image_scores_and_links(api: ApiServer, emu: Emulator) -> None:
    started = _submit(api)
    assert started["status"] in ("queued", "running") and started["generation_id"].startswith("gen_")
    job = api.wait_job(started["generation_id"])
    assert job["status"] == "completed" and job["progress"]["percent"] == 100.0
    assert job["progress"]["max_steps"] == 3 and job["error"] is None
    result = job["result"]
    assert result["status"] == "unvalidated" and result["file"].startswith("adhoc/")   # relative, not absolute
    assert result["attempts"][0]["params"]["seed"] == 7
    image = api.client.get(job["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == (api.settings.output_dir / result["file"]).read_bytes()
    thumb = api.client.get(job["thumbnail_url"], params={"size": 32})
    assert thumb.status_code == 200 and thumb.content[:4] == b"\x89PNG"
    sidecar = api.client.get(f"/images/{started['generation_id']}/sidecar")
    assert sidecar.status_code == 200 and sidecar.json()["comfy_gen"]["params"]["seed"] == 7
    assert job["output_url"] == job["image_url"]   # no upload: the API serves it


def test_progress_stream_opened_before_the_job_starts(make_api, emu: Emulator) -> None:
    api = make_api(api_workers=1)
    emu.hold()
    first = _submit(api, seed=1)
    emu.wait_held(1)
    second = _submit(api, seed=2)   # one worker, busy: this one waits
    assert api.client.get(f"/api/v1/generate/{second['generation_id']}").json()["status"] == "queued"
    events: list[tuple[str, dict[str, Any]]] = []
    opened = threading.Event()
    reader = threading.Thread(target=_read_events, args=(api, second["generation_id"], events, opened))
    reader.start()
    assert opened.wait(30)
    emu.release()
    reader.join(60)
    assert not reader.is_alive()
    kinds = [kind for kind, _ in events]
    statuses = [data["status"] for _, data in events]
    assert statuses[0] == "queued" and "running" in statuses and kinds[-1] == "done"
    assert events[-1][1]["status"] == "completed" and events[-1][1]["progress"]["percent"] == 100.0
    steps = [data["progress"]["step"] for _, data in events if data["status"] == "running"]
    assert max(steps) == 3 and steps == sorted(steps)
    versions = [data["version"] for _, data in events]
    assert versions == sorted(versions)
    assert api.wait_job(first["generation_id"])["status"] == "completed"


def test_cancel_running_job_interrupts_only_our_prompt(api: ApiServer, emu: Emulator) -> None:
    before = emu.stats()["jobs_interrupted"]
    emu.hold()
    job = _submit(api)
    held = emu.wait_held(1)
    response = api.client.delete(f"/api/v1/generate/{job['generation_id']}")
    assert response.status_code == 200
    final = api.wait_job(job["generation_id"])
    assert final["status"] == "cancelled" and final["error"]["error"] == "ExecutionInterrupted"
    assert emu.stats()["jobs_interrupted"] == before + 1 and held
    assert not list((api.settings.output_dir / "adhoc").glob("*.png")) if (api.settings.output_dir / "adhoc").exists() else True
    # A finished job stays as it is.
    assert api.client.delete(f"/generate/{job['generation_id']}").json()["status"] == "cancelled"


def test_cancel_queued_job_never_reaches_comfyui(make_api, emu: Emulator) -> None:
    api = make_api(api_workers=1)
    emu.hold()
    first = _submit(api)
    emu.wait_held(1)
    second = _submit(api)
    cancelled = api.client.delete(f"/api/v1/generate/{second['generation_id']}").json()
    assert cancelled["status"] == "cancelled"
    emu.release()
    assert api.wait_job(first["generation_id"])["status"] == "completed"
    assert api.wait_job(second["generation_id"])["status"] == "cancelled"
    assert emu.stats()["queue_pending"] == 0


def test_generate_composes_tags_and_categories(api: ApiServer) -> None:
    job = _submit(api, prompt="a red @car", categories=["night"], workflow="tiny-sd15")
    assert job["categories"] == ["car", "night"] and job["recipe_hash"].startswith("sha256:")
    done = api.wait_job(job["generation_id"])
    assert done["status"] == "completed"
    prompt = done["result"]["attempts"][0]["params"]["prompt"]
    assert "red" in prompt and prompt != "a red @car"


@pytest.mark.parametrize("body, status, error", [
    ({"workflow": "../etc/passwd"}, 422, "RequestValidationError"),
    ({"steps": 0}, 422, "RequestValidationError"),
    ({"seed": -2}, 422, "RequestValidationError"),
    ({"loras": [{"name": "a.safetensors", "strength": 5}]}, 422, "RequestValidationError"),
    ({"prompt": "", "categories": []}, 422, "UsageError"),
    ({"categories": ["nope"]}, 422, "UsageError"),
    ({"prompt": "a @velvet chair"}, 403, "PolicyViolation"),
    ({"prompt": "hello", "categories": ["crimson"]}, 403, "PolicyViolation"),
    ({"input_image": "https://example.org/cat.png"}, 422, "UsageError"),
    ({"input_image": "file:///etc/passwd"}, 422, "UsageError"),
], ids=["workflow-path", "steps", "seed", "lora-strength", "no-prompt", "unknown-category", "policy-tag",
        "policy-category", "url-fetch-off", "file-url"])
def test_generate_rejects_bad_bodies(api: ApiServer, body: dict, status: int, error: str) -> None:
    response = api.client.post("/api/v1/generate", json={**TINY, **body})
    assert response.status_code == status, response.text
    assert response.json()["error"] == error


def test_confined_paths_fail_the_job_not_the_server(api: ApiServer) -> None:
    job = _submit(api, input_image="../../../../etc/hostname")
    final = api.wait_job(job["generation_id"])
    assert final["status"] == "failed" and final["error"]["error"] == "PathNotAllowed"
    missing = _submit(api, workflow="no-such-workflow")
    assert api.wait_job(missing["generation_id"])["error"]["error"] == "WorkflowError"


def test_unknown_job_is_404_everywhere(api: ApiServer) -> None:
    for method, path in [("GET", "/api/v1/generate/gen_nope"), ("DELETE", "/generate/gen_nope"),
                         ("GET", "/api/v1/generate/gen_nope/events"), ("GET", "/api/v1/images/gen_nope")]:
        response = api.client.request(method, path)
        assert response.status_code == 404, (method, path, response.text)


def test_comfyui_down_is_503(make_api) -> None:
    from comfy_gen.stack import free_port

    api = make_api(comfyui_url=f"http://127.0.0.1:{free_port()}")
    response = api.client.post("/api/v1/generate", json=TINY)
    assert response.status_code == 503 and response.json()["error"] == "ComfyUIUnavailable"
    assert response.headers["retry-after"] == "5"


def test_full_queue_is_503(make_api, emu: Emulator) -> None:
    api = make_api(api_workers=1, api_max_jobs=1)
    emu.hold()
    first = _submit(api)
    emu.wait_held(1)
    response = api.client.post("/api/v1/generate", json=TINY)
    assert response.status_code == 503 and response.json()["error"] == "ServiceBusy"
    emu.release()
    assert api.wait_job(first["generation_id"])["status"] == "completed"
