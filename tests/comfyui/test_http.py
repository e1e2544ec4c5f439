"""Single-request behaviour with httpx.MockTransport: retries, error mapping, encoding."""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path
from typing import Callable

import httpx
import pytest

from comfy_gen.comfyui import ComfyUIClient, OutputFile
from comfy_gen.comfyui._http import translate_error
from comfy_gen.errors import (ComfyGenError, ComfyUIError, ComfyUITimeout, ComfyUIUnavailable, ConfigError,
                              ExecutionFailed, JobLost, PromptRejected, UsageError)
from tests.conftest import RECORDINGS

CAPTURES = RECORDINGS / "captures"
# Port 9 (discard) refuses connections at once: the ws listener gives up fast.
BASE = "http://127.0.0.1:9"


def _capture_body(name: str):
    return json.loads((CAPTURES / name).read_text())["response"]["body"]


@pytest.fixture
def make_client():
    made: list[ComfyUIClient] = []

    def make(handler: Callable[[httpx.Request], httpx.Response], **kwargs) -> tuple[ComfyUIClient, list[float]]:
        sleeps: list[float] = []
        kwargs.setdefault("retry_delay", 0.5)
        kwargs.setdefault("connect_timeout", 0.1)
        client = ComfyUIClient(BASE, http=httpx.Client(transport=httpx.MockTransport(handler)),
                               sleep=sleeps.append, **kwargs)
        made.append(client)
        return client, sleeps

    yield make
    for client in made:
        client.close()


def test_5xx_is_retried_with_doubling_delays(make_client) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503) if len(calls) < 3 else httpx.Response(200, json={"system": {}})

    client, sleeps = make_client(handler)
    assert client.system_stats() == {"system": {}}
    assert len(calls) == 3
    assert sleeps == [0.5, 1.0]


def test_5xx_after_all_attempts_is_unavailable(make_client) -> None:
    calls = []
    client, sleeps = make_client(lambda r: calls.append(r) or httpx.Response(500), retries=4)
    with pytest.raises(ComfyUIUnavailable, match="HTTP 500.*after 4 attempts"):
        client.get_queue()
    assert len(calls) == 4 and sleeps == [0.5, 1.0, 2.0]


def test_real_sleeps_use_the_configured_delay() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(time.monotonic())
        return httpx.Response(502) if len(calls) < 3 else httpx.Response(200, json=[])

    with ComfyUIClient(BASE, http=httpx.Client(transport=httpx.MockTransport(handler)),
                       retry_delay=0.05) as client:
        assert client.embeddings() == []
    assert calls[1] - calls[0] >= 0.05 and calls[2] - calls[1] >= 0.1


@pytest.mark.parametrize("status", [400, 403, 404, 405, 422])
def test_4xx_is_never_retried(make_client, status: int) -> None:
    calls = []
    client, sleeps = make_client(lambda r: calls.append(r) or httpx.Response(status))
    with pytest.raises(ComfyUIError):
        client.get_queue()
    assert len(calls) == 1 and sleeps == []


def test_every_request_carries_a_timeout(make_client) -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions.get("timeout"))
        return httpx.Response(200, json={})

    client, _ = make_client(handler, timeout=7, connect_timeout=0.1)
    client.system_stats()
    client.history("x")
    assert seen and all(t == {"connect": 0.1, "read": 7, "write": 7, "pool": 7} for t in seen)


RETRIED = [
    (httpx.ConnectError, ComfyUIUnavailable), (httpx.ReadError, ComfyUIUnavailable),
    (httpx.WriteError, ComfyUIUnavailable), (httpx.CloseError, ComfyUIUnavailable),
    (httpx.RemoteProtocolError, ComfyUIUnavailable), (httpx.ProxyError, ComfyUIUnavailable),
    (httpx.ConnectTimeout, ComfyUITimeout), (httpx.ReadTimeout, ComfyUITimeout),
    (httpx.WriteTimeout, ComfyUITimeout), (httpx.PoolTimeout, ComfyUITimeout),
]
NOT_RETRIED = [
    (httpx.UnsupportedProtocol, ConfigError), (httpx.LocalProtocolError, ComfyUIError),
    (httpx.DecodingError, ComfyUIError), (httpx.TooManyRedirects, ComfyUIError),
]


@pytest.mark.parametrize("exc_type,expected", RETRIED + NOT_RETRIED, ids=lambda v: getattr(v, "__name__", v))
def test_httpx_errors_are_translated(make_client, exc_type, expected) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise exc_type("boom", request=request)

    client, sleeps = make_client(handler)
    with pytest.raises(expected) as info:
        client.get_queue()
    assert isinstance(info.value.__cause__, exc_type)
    retried = (exc_type, expected) in RETRIED
    assert len(calls) == (3 if retried else 1)
    assert len(sleeps) == (2 if retried else 0)


def test_translation_covers_every_httpx_exception() -> None:
    request = httpx.Request("GET", BASE)
    classes = [obj for _, obj in inspect.getmembers(httpx, inspect.isclass)
               if issubclass(obj, Exception) and obj.__module__.startswith("httpx")]
    assert len(classes) > 20
    for cls in classes:
        for args, kwargs in ((("x",), {"request": request}), (("x",), {}), ((), {}),
                             (("x",), {"request": request, "response": httpx.Response(500, request=request)})):
            try:
                exc = cls(*args, **kwargs)
                break
            except TypeError:
                continue
        error, _ = translate_error(exc, BASE)
        assert isinstance(error, ComfyGenError), cls


def test_invalid_json_is_an_error(make_client) -> None:
    client, _ = make_client(lambda r: httpx.Response(200, content=b"<html>"))
    with pytest.raises(ComfyUIError, match="invalid JSON"):
        client.get_queue()


# --- queue_prompt ---------------------------------------------------------------


def test_post_carries_client_id_and_prompt_id(make_client) -> None:
    posted = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        posted.append(body)
        return httpx.Response(200, json={"prompt_id": body["prompt_id"], "number": 7, "node_errors": {}})

    client, _ = make_client(handler)
    queued = client.queue_prompt({"1": {}}, extra_data={"tag": "x"}, front=True)
    assert client.client_id.startswith("comfy-gen-")
    assert posted[0]["client_id"] == client.client_id
    assert posted[0]["prompt_id"] == queued.prompt_id and len(queued.prompt_id) == 36
    assert posted[0]["extra_data"] == {"tag": "x"} and posted[0]["front"] is True
    assert queued.number == 7
    assert client.queue_prompt({"1": {}}, prompt_id="mine").prompt_id == "mine"


def test_retried_post_is_not_submitted_twice(make_client) -> None:
    """The first POST reached the server but the answer was lost: don't re-post."""
    log = []

    def handler(request: httpx.Request) -> httpx.Response:
        log.append((request.method, request.url.path))
        if request.method == "POST":
            raise httpx.ReadTimeout("lost answer", request=request)
        if request.url.path == "/queue":
            return httpx.Response(200, json={"queue_running": [], "queue_pending": [
                [12, "fixed-id", {}, {"client_id": "x"}, ["9"]]]})
        return httpx.Response(200, json={})

    client, sleeps = make_client(handler)
    queued = client.queue_prompt({"9": {}}, prompt_id="fixed-id")
    assert queued.prompt_id == "fixed-id" and queued.number == 12
    assert log.count(("POST", "/prompt")) == 1
    assert sleeps == [0.5]


def test_post_found_in_history_is_not_reposted(make_client) -> None:
    log = []

    def handler(request: httpx.Request) -> httpx.Response:
        log.append((request.method, request.url.path))
        if request.method == "POST":
            return httpx.Response(502)
        if request.url.path == "/queue":
            return httpx.Response(200, json={"queue_running": [], "queue_pending": []})
        return httpx.Response(200, json={"h1": {"prompt": [3, "h1", {}, {}, []], "outputs": {}}})

    client, _ = make_client(handler)
    assert client.queue_prompt({}, prompt_id="h1").number == 3
    assert log.count(("POST", "/prompt")) == 1


def test_failed_post_not_on_server_is_reposted(make_client) -> None:
    posts = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            posts.append(request)
            if len(posts) == 1:
                raise httpx.ConnectError("refused", request=request)
            return httpx.Response(200, json={"prompt_id": "p", "number": 1, "node_errors": {}})
        if request.url.path == "/queue":
            return httpx.Response(200, json={"queue_running": [], "queue_pending": []})
        return httpx.Response(200, json={})

    client, _ = make_client(handler)
    assert client.queue_prompt({}, prompt_id="p").number == 1
    assert len(posts) == 2


def test_post_gives_up_after_retries(make_client) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"queue_running": [], "queue_pending": []} if request.url.path == "/queue" else {})

    client, sleeps = make_client(handler)
    with pytest.raises(ComfyUIUnavailable):
        client.queue_prompt({}, prompt_id="p")
    assert sleeps == [0.5, 1.0]


def test_400_is_prompt_rejected_without_retry(make_client) -> None:
    calls = []
    body = _capture_body("160_post_prompt_invalid_missing_model.json")
    client, _ = make_client(lambda r: calls.append(r) or httpx.Response(400, json=body))
    with pytest.raises(PromptRejected) as info:
        client.queue_prompt({})
    assert len(calls) == 1 and not info.value.partial
    assert info.value.node_errors[0]["allowed"] == ["tiny_sd15.safetensors"]


def test_200_with_node_errors_is_partial(make_client) -> None:
    body = _capture_body("187_post_prompt_partially_invalid_two_outputs.json")
    client, _ = make_client(lambda r: httpx.Response(200, json=body))
    with pytest.raises(PromptRejected) as info:
        client.queue_prompt({}, prompt_id=body["prompt_id"])
    assert info.value.partial and info.value.prompt_id == body["prompt_id"]
    assert info.value.node_errors[0]["node_id"] == "20"


# --- catalog -----------------------------------------------------------------------


def test_models_fall_back_to_loader_combos_on_404(make_client) -> None:
    paths = []
    info = {"LoraLoader": {"input": {"required": {"lora_name": ["COMBO", {"options": ["a.safetensors"]}]}}},
            "CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [["m.safetensors"], {}]}}}}

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path.startswith("/object_info/"):
            name = request.url.path.rsplit("/", 1)[1]
            return httpx.Response(200, json={name: info[name]} if name in info else {})
        return httpx.Response(404)

    client, _ = make_client(handler)
    assert client.models("loras") == ["a.safetensors"]
    assert client.models("checkpoints") == ["m.safetensors"]
    assert client.models("loras") == ["a.safetensors"]
    assert paths.count("/object_info/LoraLoader") == 1  # cached
    with pytest.raises(UsageError, match="Unknown model folder"):
        client.models("nonsense")
    models = client.available_models()
    assert models["checkpoints"] == ["m.safetensors"] and models["vae"] == []


def test_object_info_is_cached_until_refresh(make_client) -> None:
    calls = []
    full = json.loads((CAPTURES / "files" / "object_info_full.json").read_text())
    client, _ = make_client(lambda r: calls.append(r) or httpx.Response(200, json=full))
    assert "KSampler" in client.object_info()
    assert client.object_info("KSampler") == {"KSampler": full["KSampler"]}
    assert client.object_info("Nope") == {}
    assert len(calls) == 1
    client.object_info(refresh=True)
    assert len(calls) == 2


# --- files -----------------------------------------------------------------------


def test_download_encodes_query_and_writes_atomically(make_client, tmp_path: Path) -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"PNGDATA")

    client, _ = make_client(handler)
    out = OutputFile("9", "a b&c=d#é.png", "sub/dir x", "output")
    path = client.download(out, tmp_path)
    assert path == tmp_path / "a b&c=d#é.png" and path.read_bytes() == b"PNGDATA"
    params = seen[0].url.params
    assert (params["filename"], params["subfolder"], params["type"]) == ("a b&c=d#é.png", "sub/dir x", "output")
    assert "&c=" not in str(seen[0].url).split("filename=")[1].split("&subfolder")[0]
    assert list(tmp_path.iterdir()) == [path]  # no .part left behind


def test_download_missing_file_is_an_error(make_client, tmp_path: Path) -> None:
    client, _ = make_client(lambda r: httpx.Response(404))
    with pytest.raises(ComfyUIError, match="not on the server"):
        client.download(OutputFile("9", "gone.png"), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_upload_returns_name_with_subfolder(make_client, tmp_path: Path) -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.read())
        return httpx.Response(200, json={"name": "in (1).png", "subfolder": "batch1", "type": "input"})

    image = tmp_path / "in.png"
    image.write_bytes(b"\x89PNG fake")
    client, _ = make_client(handler)
    assert client.upload_image(image, subfolder="batch1", overwrite=True) == "batch1/in (1).png"
    body = seen[0]
    assert b'name="image"; filename="in.png"' in body and b"\x89PNG fake" in body
    assert b'name="overwrite"\r\n\r\ntrue' in body and b'name="subfolder"\r\n\r\nbatch1' in body
    with pytest.raises(UsageError, match="Cannot read image"):
        client.upload_image(tmp_path / "missing.png")


# --- control ---------------------------------------------------------------------


def _queue_handler(running: list[str], pending: list[str], log: list):
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        log.append((request.method, request.url.path, body))
        if request.url.path == "/queue" and request.method == "GET":
            return httpx.Response(200, json={
                "queue_running": [[1, p, {}, {"client_id": "comfy-gen-x"}, []] for p in running],
                "queue_pending": [[2, p, {}, {}, []] for p in pending]})
        return httpx.Response(200)
    return handler


def test_interrupt_only_when_running(make_client) -> None:
    log: list = []
    client, _ = make_client(_queue_handler(["theirs"], ["mine"], log))
    assert client.interrupt("mine") is False
    assert not any(path == "/interrupt" for _, path, _ in log)
    assert client.interrupt("theirs") is True
    assert log[-1] == ("POST", "/interrupt", {"prompt_id": "theirs"})


def test_cancel_pending_running_and_unknown(make_client) -> None:
    log: list = []
    client, _ = make_client(_queue_handler(["run"], ["wait"], log))
    assert client.cancel("wait") == "deleted"
    assert ("POST", "/queue", {"delete": ["wait"]}) in log
    assert client.cancel("run") == "interrupted"
    assert client.cancel("ghost") == "not_found"
    state = client.get_queue()
    assert state.running[0].is_comfy_gen and not state.pending[0].is_comfy_gen


def test_free_posts_flags(make_client) -> None:
    log: list = []
    client, _ = make_client(_queue_handler([], [], log))
    client.free(unload_models=True)
    assert log[-1] == ("POST", "/free", {"unload_models": True, "free_memory": False})


def test_is_available_does_not_retry(make_client) -> None:
    calls = []
    client, sleeps = make_client(lambda r: calls.append(r) or httpx.Response(503))
    assert client.is_available() is False
    assert len(calls) == 1 and sleeps == []


def test_from_settings_uses_backend_and_timeouts() -> None:
    from comfy_gen.config import Settings

    settings = Settings(comfyui_url="http://127.0.0.1:8190/", backends={"gpu1": "http://10.0.0.2:8188"},
                        http_retries=5, retry_delay=0.25, job_timeout=12, poll_interval=0.5)
    with ComfyUIClient.from_settings(settings) as client:
        assert client.base_url == "http://127.0.0.1:8190"
        assert client.job_timeout == 12 and client.poll_interval == 0.5
    with ComfyUIClient.from_settings(settings, "gpu1") as client:
        assert client.base_url == "http://10.0.0.2:8188"
    with pytest.raises(ConfigError):
        ComfyUIClient.from_settings(settings, "nope")


# --- waiting by polling (a prompt another client queued) ----------------------------


def _history_entry(prompt_id: str) -> dict:
    entry = _capture_body("103_get_history_by_id_after_success.json")
    return {prompt_id: next(iter(entry.values()))}


def test_wait_prefers_the_jobs_api_when_present(make_client) -> None:
    paths: list[str] = []
    polls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        paths.append(path)
        if path == "/api/jobs":
            return httpx.Response(200, json={"jobs": []})
        if path == "/api/jobs/p1":
            polls["n"] += 1
            return httpx.Response(200, json={"id": "p1", "status": "in_progress" if polls["n"] < 3 else "completed"})
        if path == "/history/p1":
            return httpx.Response(200, json=_history_entry("p1") if polls["n"] >= 3 else {})
        return httpx.Response(404)

    client, _ = make_client(handler, poll_interval=0.01)
    result = client.wait("p1")
    assert result.status == "success" and result.outputs[0].filename == "txt2img_00001_.png"
    assert paths.count("/api/jobs") == 1  # probed once
    assert "/queue" not in paths
    assert result.elapsed == pytest.approx(25.545, abs=0.01)  # server timestamps, not wall time


def test_wait_polls_history_and_declares_lost_jobs(make_client) -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path == "/queue":
            return httpx.Response(200, json={"queue_running": [], "queue_pending": []})
        if request.url.path.startswith("/history/"):
            return httpx.Response(200, json={})
        return httpx.Response(404)  # no jobs API, as on the recorded server

    client, _ = make_client(handler, poll_interval=0.01)
    with pytest.raises(JobLost) as info:
        client.wait("gone")
    assert info.value.prompt_id == "gone"
    assert paths.count("/queue") == 2  # checked twice, a moment apart


def test_wait_reports_runtime_errors_from_history(make_client) -> None:
    body = _capture_body("151_get_history_after_runtime_error.json")
    pid = next(iter(body))
    client, _ = make_client(lambda r: httpx.Response(200, json=body) if r.url.path.startswith("/history")
                            else httpx.Response(404), poll_interval=0.01)
    with pytest.raises(ExecutionFailed) as info:
        client.wait(pid)
    exc = info.value
    assert (exc.node_id, exc.node_type, exc.exception_type) == ("9", "SaveImage", "Exception")
    assert exc.traceback and exc.prompt_id == pid
