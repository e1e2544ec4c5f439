"""ComfyUIClient against the emulator over 127.0.0.1: real HTTP, real WebSocket."""

from __future__ import annotations

import copy
import json
import random
import threading
import time
from pathlib import Path

import httpx
import pytest

from comfy_gen.comfyui import ComfyUIClient, events as ev
from comfy_gen.errors import (ComfyUITimeout, ComfyUIUnavailable, ExecutionFailed, ExecutionInterrupted,
                              JobLost, PromptRejected)
from tests.conftest import RECORDINGS

WORKFLOWS = RECORDINGS / "workflows"
CAPTURES = RECORDINGS / "captures"


def workflow(name: str, *, seed: int | None = None, **inputs) -> dict:
    graph = json.loads((WORKFLOWS / name).read_text())
    for node in graph.values():
        if node["class_type"] == "KSampler":
            node["inputs"]["seed"] = random.randrange(2**31) if seed is None else seed
            node["inputs"].update(inputs)
    return graph


@pytest.fixture
def make_client():
    made: list[ComfyUIClient] = []

    def make(url: str, **kwargs) -> ComfyUIClient:
        kwargs.setdefault("retry_delay", 0.01)
        kwargs.setdefault("poll_interval", 0.1)
        kwargs.setdefault("job_timeout", 20)
        kwargs.setdefault("connect_timeout", 2)
        client = ComfyUIClient(url, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(emu, make_client) -> ComfyUIClient:
    return make_client(emu.url)


def _slow(emu, step_time: float = 0.1) -> None:
    emu.faults.step_time = step_time


def test_real_job_with_progress_and_download(client: ComfyUIClient, tmp_path: Path) -> None:
    seen: list[ev.Event] = []
    queued = client.queue_prompt(workflow("txt2img_ckpt.json"))
    result = client.wait(queued.prompt_id, on_event=seen.append)
    assert result.status == "success" and not result.cached
    assert result.prompt_id == queued.prompt_id
    types = [e.type for e in seen]
    assert types[0] == "execution_start" and types[-1] == "executing"
    assert all(e.prompt_id == queued.prompt_id for e in seen)
    progress = [e for e in seen if isinstance(e, ev.Progress)]
    assert [(p.step, p.max) for p in progress] == [(1, 3), (2, 3), (3, 3)]
    assert all(p.eta_seconds is not None and p.eta_seconds >= 0 for p in progress)
    assert progress[-1].eta_seconds == 0
    assert any(isinstance(e, ev.Executed) and e.node == "9" for e in seen)
    assert [o.node_id for o in result.outputs] == ["9"]
    paths = client.download_all(result, tmp_path / "out")
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[0].name == result.outputs[0].filename


def test_identical_rerun_is_cached(client: ComfyUIClient) -> None:
    graph = workflow("txt2img_ckpt.json")
    first = client.wait(client.queue_prompt(graph).prompt_id)
    seen: list[ev.Event] = []
    second = client.wait(client.queue_prompt(copy.deepcopy(graph)).prompt_id, on_event=seen.append)
    assert second.cached and not first.cached
    assert second.outputs[0].filename == first.outputs[0].filename
    assert not any(isinstance(e, ev.Progress) for e in seen)


INVALID = sorted(WORKFLOWS.glob("invalid_*.json"))


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_workflows_are_rejected_like_comfyui(client: ComfyUIClient, path: Path) -> None:
    recorded = next(CAPTURES.glob(f"16*_post_prompt_{path.stem}.json"))
    expected = json.loads(recorded.read_text())["response"]["body"]
    with pytest.raises(PromptRejected) as info:
        client.queue_prompt(json.loads(path.read_text()))
    exc = info.value
    assert not exc.partial and exc.error_type == expected["error"]["type"]
    want = sorted((nid, e["type"]) for nid, n in expected["node_errors"].items() for e in n["errors"])
    got = sorted((e["node_id"], e["type"]) for e in exc.node_errors
                 if e["type"] != expected["error"]["type"])
    assert got == want
    if path.stem == "invalid_missing_model":
        assert "tiny_sd15.safetensors" in exc.node_errors[0]["allowed"]


def test_partial_rejection_still_runs_the_valid_branch(client: ComfyUIClient) -> None:
    with pytest.raises(PromptRejected) as info:
        client.queue_prompt(workflow("partially_invalid_two_outputs.json", seed=None))
    exc = info.value
    assert exc.partial and exc.prompt_id
    assert {e["node_id"] for e in exc.node_errors} == {"20"}
    result = client.wait(exc.prompt_id)
    assert {o.node_id for o in result.outputs} == {"9"}


def test_interrupt_touches_only_the_named_running_job(emu, make_client) -> None:
    emu.hold()  # the first job stays running until interrupted, however loaded the machine
    mine, other = make_client(emu.url), make_client(emu.url)
    running = mine.queue_prompt(workflow("txt2img_slow.json")).prompt_id
    pending = other.queue_prompt(workflow("txt2img_ckpt.json")).prompt_id
    assert emu.wait_held(1, timeout=60) == [running]
    assert mine.interrupt(pending) is False  # pending: not interrupted
    assert mine.interrupt("not-a-job") is False
    assert mine.get_queue().find(running) == "running"
    assert mine.interrupt(running) is True
    with pytest.raises(ExecutionInterrupted):
        mine.wait(running)
    emu.release()
    assert other.wait(pending).status == "success"


def test_delete_pending_and_cancel(emu, client: ComfyUIClient) -> None:
    emu.hold()  # the first job stays running, the others pending, until we act on them
    running = client.queue_prompt(workflow("txt2img_slow.json")).prompt_id
    pending = client.queue_prompt(workflow("txt2img_ckpt.json")).prompt_id
    doomed = client.queue_prompt(workflow("txt2img_ckpt.json")).prompt_id
    assert emu.wait_held(1, timeout=60) == [running]
    client.delete_pending([doomed])
    state = client.get_queue()
    assert state.find(doomed) is None and state.find(pending) == "pending"
    assert all(i.client_id == client.client_id and i.is_comfy_gen for i in state.running + state.pending)
    with pytest.raises(JobLost):
        client.wait(doomed)
    assert client.cancel(pending) == "deleted"
    assert client.cancel(running) == "interrupted"
    assert client.cancel("never-queued") == "not_found"
    with pytest.raises(ExecutionInterrupted):
        client.wait(running)


def test_upload_and_use_in_loadimage(client: ComfyUIClient, tmp_path: Path) -> None:
    from PIL import Image

    src = tmp_path / "lab input.png"
    Image.new("RGB", (64, 64), (30, 120, 200)).save(src)
    name = client.upload_image(src, subfolder="batch1")
    assert name == "batch1/lab input.png"
    assert client.upload_image(src, subfolder="batch1") == name  # same bytes: same name
    graph = workflow("img2img_loadimage.json")
    graph["10"]["inputs"]["image"] = name
    result = client.wait(client.queue_prompt(graph).prompt_id)
    assert result.status == "success" and result.outputs


def test_5xx_burst_is_absorbed_by_retries(emu, make_client) -> None:
    sleeps: list[float] = []
    client = make_client(emu.url, retry_delay=0.01, sleep=lambda s: (sleeps.append(s), time.sleep(s)))
    emu.faults.http_5xx_next = 2
    assert "system" in client.system_stats()
    assert sleeps == [0.01, 0.02]
    emu.faults.http_5xx_next = 2
    result = client.wait(client.queue_prompt(workflow("txt2img_ckpt.json")).prompt_id)
    assert result.status == "success"
    emu.faults.http_5xx_next = 5
    with pytest.raises(ComfyUIUnavailable, match="after 3 attempts"):
        client.get_queue()
    emu.faults.http_5xx_next = 0


def test_socket_drop_mid_job_is_recovered(emu, client: ComfyUIClient) -> None:
    _slow(emu, 0.05)
    emu.faults.ws_drop_after = 6
    seen: list[ev.Event] = []
    result = client.wait(client.queue_prompt(workflow("txt2img_slow.json")).prompt_id, on_event=seen.append)
    assert result.status == "success" and result.outputs
    assert client._jobs.listener().generation >= 2  # the socket really was dropped and re-opened
    assert len([e for e in seen if isinstance(e, ev.Progress)]) < 12  # some events were missed
    emu.faults.ws_drop_after = None


def test_restart_mid_job_is_job_lost(fresh_emulator, make_client) -> None:
    fresh_emulator.faults.step_time = 0.1
    client = make_client(fresh_emulator.url)
    prompt_id = client.queue_prompt(workflow("txt2img_slow.json")).prompt_id
    restarted = []

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.Progress) and not restarted:
            restarted.append(True)
            fresh_emulator.restart()

    with pytest.raises(JobLost) as info:
        client.wait(prompt_id, on_event=on_event)
    assert info.value.prompt_id == prompt_id and restarted
    # the client keeps working after the restart (socket reconnected)
    assert client.wait(client.queue_prompt(workflow("txt2img_ckpt.json")).prompt_id).status == "success"


def test_server_gone_mid_job_is_one_clear_error(fresh_emulator, make_client, monkeypatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    from comfy_gen.comfyui import _jobs

    monkeypatch.setattr(_jobs, "OUTAGE_GRACE", 1.0)  # the real grace (60 s) is too long for a test
    fresh_emulator.faults.step_time = 0.1
    client = make_client(fresh_emulator.url, retry_delay=0.2)
    prompt_id = client.queue_prompt(workflow("txt2img_slow.json")).prompt_id
    stopped: list[bool] = []

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.Progress) and not stopped:
            stopped.append(True)
            fresh_emulator.stop()

    started = time.monotonic()
    with caplog.at_level("WARNING"), pytest.raises(ComfyUIUnavailable) as info:
        client.wait(prompt_id, on_event=on_event)
    assert stopped and time.monotonic() - started < 8
    assert info.value.prompt_id == prompt_id
    assert "Lost contact" in str(info.value) and prompt_id in str(info.value)
    assert "comfy-gen queue" in str(info.value)
    # One warning when contact is lost, not one per retried request.
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "comfy_gen" in r.name]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


def test_job_timeout(emu, client: ComfyUIClient) -> None:
    emu.hold()  # the job cannot finish first; the fixture's clear() ends it
    prompt_id = client.queue_prompt(workflow("txt2img_slow.json")).prompt_id
    started = time.monotonic()
    with pytest.raises(ComfyUITimeout) as info:
        client.wait(prompt_id, timeout=0.3)
    assert time.monotonic() - started < 2 and info.value.prompt_id == prompt_id
    client.cancel(prompt_id)


def test_execution_error_carries_node_info(emu, client: ComfyUIClient) -> None:
    emu.faults.error_node_class = "VAEDecode"
    seen: list[ev.Event] = []
    with pytest.raises(ExecutionFailed) as info:
        client.wait(client.queue_prompt(workflow("txt2img_ckpt.json")).prompt_id, on_event=seen.append)
    exc = info.value
    assert (exc.node_id, exc.node_type) == ("8", "VAEDecode")
    assert exc.exception_type and exc.exception_message
    assert any(isinstance(e, ev.ExecutionError) and e.node_id == "8" for e in seen)
    emu.faults.error_node_class = None


def test_one_client_many_threads(client: ComfyUIClient) -> None:
    results: dict[int, object] = {}

    def job(i: int) -> None:
        try:
            results[i] = client.wait(client.queue_prompt(workflow("txt2img_ckpt.json")).prompt_id)
        except Exception as exc:  # noqa: BLE001 - reported below
            results[i] = exc

    threads = [threading.Thread(target=job, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(getattr(r, "status", None) == "success" for r in results.values()), results
    assert len({r.outputs[0].filename for r in results.values()}) == 4


def test_threads_racing_the_first_connect_get_their_events(emu, make_client) -> None:
    # 8 threads queue at once on a fresh client: none may post before the socket is
    # up, or its job finishes unseen and is only found by a poll (5 s here).
    client = make_client(emu.url, poll_interval=5.0)
    barrier = threading.Barrier(8)
    elapsed: list[float] = []

    def job() -> None:
        barrier.wait()
        start = time.monotonic()
        client.wait(client.queue_prompt(workflow("txt2img_fastest.json")).prompt_id)
        elapsed.append(time.monotonic() - start)

    threads = [threading.Thread(target=job) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(elapsed) == 8 and max(elapsed) < 4.0, elapsed


def test_waiting_for_someone_elses_job_polls_history(emu, make_client) -> None:
    submitter, watcher = make_client(emu.url), make_client(emu.url)
    body = {"prompt": workflow("txt2img_ckpt.json"), "client_id": "someone-else"}
    prompt_id = httpx.post(f"{emu.url}/prompt", json=body, timeout=5).json()["prompt_id"]
    result = watcher.wait(prompt_id)
    assert result.status == "success" and result.outputs
    assert submitter.history(prompt_id) is not None


def test_catalog_against_the_emulator(client: ComfyUIClient) -> None:
    assert client.is_available()
    models = client.available_models()
    assert "tiny_sd15.safetensors" in models["checkpoints"]
    assert "tiny_sd15_lora.safetensors" in models["loras"]
    assert client.models("checkpoints") == models["checkpoints"]
    info = client.object_info("KSampler")
    assert "KSampler" in info and client.object_info("NoSuchNode") == {}
    assert isinstance(client.embeddings(), list)
    client.free(unload_models=True)


def test_unreachable_server(make_client) -> None:
    client = make_client("http://127.0.0.1:9", connect_timeout=0.2)
    assert client.is_available() is False
    with pytest.raises(ComfyUIUnavailable):
        client.get_queue()


def test_previews_reach_the_prompts_waiter(make_client, tmp_path: Path) -> None:
    from comfy_gen.emulator import Emulator

    with Emulator(step_time=0.01, previews=True, data_dir=tmp_path / "emu") as emu:
        client = make_client(emu.url)
        seen: list[ev.Event] = []
        prompt_id = client.queue_prompt(workflow("txt2img_ckpt.json")).prompt_id
        client.wait(prompt_id, on_event=seen.append)
    previews = [e for e in seen if isinstance(e, ev.Preview)]
    assert previews and all(p.prompt_id == prompt_id and p.image for p in previews)
    assert previews[0].event == 4  # we negotiated supports_preview_metadata
