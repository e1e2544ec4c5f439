"""Replay the recorded WebSocket sessions: same jobs, same message sequence.

Each scenario re-creates the recorded situation (what was cached, which jobs ran,
which queue operations happened when) and compares the sequence of message
types. ``status`` messages are compared by count only, because when a POST's
``status`` arrives relative to a running job's messages depends on timing.
Every received message must also have the shape of a recorded one of its type.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from comfy_gen.emulator import Emulator
from tests.emulator import replay
from tests.emulator.shapes import mismatch
from tests.emulator.wsclient import Recorder, recorded_entries, summary

WS_CAPTURES = [n for n in replay.capture_names() if "_ws_" in n]


@pytest.fixture
def emulator_ws(tmp_path: Any) -> Iterator[Emulator]:
    with Emulator(step_time=0.01, data_dir=tmp_path / "emu") as emu:
        yield emu


def _recorded_shapes() -> dict[str, list[dict[str, Any]]]:
    shapes: dict[str, list[dict[str, Any]]] = {}
    for name in WS_CAPTURES:
        for entry in recorded_entries(replay.capture(name)):
            if entry[0] == "text":
                shapes.setdefault(entry[1]["type"], []).append(entry[1])
    return shapes


RECORDED_SHAPES = _recorded_shapes()


#: The recorded watcher of 194 connected between the first job's put and its
#: pickup; the emulator picks up at once, so the watcher joins before the put
#: and sees one more ``status``.
EXTRA_STATUS = {"194_ws_watcher_jobs_without_client_id": 1}


def assert_same_sequence(name: str, entries: list[tuple[Any, ...]]) -> None:
    recorded = summary(recorded_entries(replay.capture(name)))
    actual = summary(entries)
    assert [k for k in actual if k != "status"] == [k for k in recorded if k != "status"]
    assert actual.count("status") == recorded.count("status") + EXTRA_STATUS.get(name, 0)
    for entry in entries:
        if entry[0] == "text":
            candidates = RECORDED_SHAPES[entry[1]["type"]]
            problems = [mismatch(c, entry[1]) for c in candidates]
            assert not all(problems), problems[0]


def _body(name: str) -> dict[str, Any]:
    body: dict[str, Any] = replay.capture(name)["request"]["body"]
    return body


def _warm_up(client: httpx.Client, workflow: str) -> None:
    """Run a job first so the cache holds what the recording's server had."""
    prompt_id = client.post("/prompt", json={"prompt": replay.workflow(workflow)}).json()["prompt_id"]
    replay.wait_history(client, prompt_id)


def _post(client: httpx.Client, body: dict[str, Any]) -> str:
    response = client.post("/prompt", json=body)
    assert response.status_code == 200, response.text
    prompt_id: str = response.json()["prompt_id"]
    return prompt_id


def _cid(name: str) -> str:
    client_id: str = replay.capture(name)["client_id"]
    return client_id


def scenario_189(emu: Emulator, client: httpx.Client) -> Recorder:
    ws = Recorder(emu.ws_url, _cid("189_ws_partially_invalid_two_outputs"))
    ws.wait_done(_post(client, _body("187_post_prompt_partially_invalid_two_outputs")))
    return ws


def scenario_190(emu: Emulator, client: httpx.Client) -> Recorder:
    ws = Recorder(emu.ws_url, _cid("190_ws_single_job_cold_then_cached_then_new_seed"))
    for name in ("100_post_prompt_valid_txt2img", "110_post_prompt_identical_rerun", "112_post_prompt_new_seed"):
        ws.wait_done(_post(client, _body(name)))
    return ws


def scenario_191(emu: Emulator, client: httpx.Client) -> Recorder:
    _warm_up(client, "txt2img_ckpt")
    ws = Recorder(emu.ws_url, _cid("191_ws_three_jobs_queued"))
    ids = [_post(client, _body(f"12{i}_post_prompt_multi_{i}")) for i in range(3)]
    ws.wait_done(ids[-1])
    return ws


def scenario_192(emu: Emulator, client: httpx.Client) -> Recorder:
    _warm_up(client, "txt2img_ckpt")
    ws = Recorder(emu.ws_url, _cid("192_ws_interrupt_and_queue_ops"))
    emu.faults.step_time = 0.2
    slow = _post(client, _body("130_post_prompt_slow_for_interrupt"))
    pending = [_post(client, _body(f"13{i + 1}_post_prompt_pending_{i}")) for i in range(3)]
    ws.wait_for(lambda m: m["type"] == "progress" and m["data"]["value"] == 2)
    client.post("/queue", json={"delete": [pending[0]]})
    client.post("/queue", json={"delete": [slow]})  # the running id: a no-op
    client.post("/interrupt", json={"prompt_id": pending[1]})  # not running: a no-op
    client.post("/interrupt")  # global
    ws.wait_done(slow)
    ws.wait_for(lambda m: m["type"] == "progress" and m["data"]["prompt_id"] == pending[1])
    client.post("/queue", json={"clear": True})
    client.post("/interrupt", json={"prompt_id": pending[1]})
    ws.wait_done(pending[1])
    return ws


def scenario_193(emu: Emulator, client: httpx.Client) -> Recorder:
    _warm_up(client, "txt2img_slow")
    ws = Recorder(emu.ws_url, _cid("193_ws_runtime_error"))
    ws.wait_done(_post(client, _body("150_post_prompt_runtime_error")))
    return ws


def scenario_194(emu: Emulator, client: httpx.Client) -> Recorder:
    _warm_up(client, "txt2img_ckpt")
    ws = Recorder(emu.ws_url, _cid("194_ws_watcher_jobs_without_client_id"))
    ws.wait_for(lambda m: m["type"] == "status")
    for name in ("180_post_prompt_custom_prompt_id", "181_post_prompt_front_true",
                 "182_post_prompt_explicit_number"):
        _post(client, _body(name))
    assert emu.wait_idle()
    _post(client, _body("185_post_prompt_duplicate_prompt_id"))
    assert emu.wait_idle()
    time.sleep(0.05)  # the trailing broadcast status
    return ws


def scenario_280(emu: Emulator, client: httpx.Client) -> Recorder:
    _warm_up(client, "txt2img_ckpt")
    ws = Recorder(emu.ws_url, _cid("280_ws_img2img_error_lora_batch"))
    for name in ("220_post_prompt_img2img_loadimage", "222_post_prompt_corrupt_input_image",
                 "224_post_prompt_lora", "226_post_prompt_batch2_preview"):
        body = _body(name)
        replay.stage_input_files(emu, body["prompt"])
        ws.wait_done(_post(client, body))
    return ws


def scenario_283(emu: Emulator, client: httpx.Client) -> Recorder:
    first = {"type": "feature_flags", "data": {"supports_preview_metadata": True}}
    ws = Recorder(emu.ws_url, _cid("283_ws_feature_flags_negotiation"), first=first)
    reply = ws.wait_for(lambda m: m["type"] == "feature_flags")
    assert reply["data"] == {"supports_preview_metadata": True, "max_upload_size": 104857600}
    return ws


def scenario_284(emu: Emulator, client: httpx.Client) -> Recorder:
    ws = Recorder(emu.ws_url)
    sid = ws.wait_for(lambda m: m["type"] == "status")["data"]["sid"]
    assert len(sid) == 32 and int(sid, 16) >= 0  # uuid4().hex, as the server assigns
    return ws


def scenario_285(emu: Emulator, client: httpx.Client) -> Recorder:
    ws = Recorder(emu.url.replace("http", "ws") + "/api/ws", _cid("285_ws_api_prefix_ws"))
    ws.wait_for(lambda m: m["type"] == "status")
    return ws


def _preview_job(emu: Emulator, client: httpx.Client, capture: str, post: str,
                 first: dict[str, Any] | None) -> Recorder:
    _warm_up(client, "txt2img_ckpt")
    ws = Recorder(emu.ws_url, _cid(capture), first=first)
    if first:
        ws.wait_for(lambda m: m["type"] == "feature_flags")
    ws.wait_done(_post(client, _body(post)))
    return ws


def scenario_391(emu: Emulator, client: httpx.Client) -> Recorder:
    return _preview_job(emu, client, "391_ws_previews_legacy_client",
                        "310_post_prompt_preview_legacy_client", None)


def scenario_392(emu: Emulator, client: httpx.Client) -> Recorder:
    return _preview_job(emu, client, "392_ws_previews_feature_flag_client",
                        "311_post_prompt_preview_metadata_client",
                        {"type": "feature_flags", "data": {"supports_preview_metadata": True}})


SCENARIOS: dict[str, Callable[[Emulator, httpx.Client], Recorder]] = {
    "189_ws_partially_invalid_two_outputs": scenario_189,
    "190_ws_single_job_cold_then_cached_then_new_seed": scenario_190,
    "191_ws_three_jobs_queued": scenario_191,
    "192_ws_interrupt_and_queue_ops": scenario_192,
    "193_ws_runtime_error": scenario_193,
    "194_ws_watcher_jobs_without_client_id": scenario_194,
    "280_ws_img2img_error_lora_batch": scenario_280,
    "283_ws_feature_flags_negotiation": scenario_283,
    "284_ws_connect_without_clientId": scenario_284,
    "285_ws_api_prefix_ws": scenario_285,
    "391_ws_previews_legacy_client": scenario_391,
    "392_ws_previews_feature_flag_client": scenario_392,
}

#: Recorded sessions covered by dedicated tests below rather than SCENARIOS.
COVERED_ELSEWHERE = {
    "281_ws_reconnect_part1_before_disconnect": "test_reconnect_mid_job",
    "282_ws_reconnect_part2_after_reconnect_same_clientId": "test_reconnect_mid_job",
    "390_ws_server_stopped_mid_job": "test_restart_mid_job_drops_socket_without_close_frame",
}


def test_every_ws_capture_is_covered() -> None:
    assert set(WS_CAPTURES) == set(SCENARIOS) | set(COVERED_ELSEWHERE)


@pytest.mark.parametrize("name", list(SCENARIOS), ids=list(SCENARIOS))
def test_ws_capture(name: str, tmp_path: Any) -> None:
    previews = name.startswith("39")
    with Emulator(step_time=0.01, data_dir=tmp_path / "emu", previews=previews) as emu, \
            httpx.Client(base_url=emu.url, timeout=10) as client:
        ws = SCENARIOS[name](emu, client)
        ws.close()
    assert_same_sequence(name, ws.entries)


def test_preview_frames_carry_jpeg_and_metadata(tmp_path: Any) -> None:
    with Emulator(step_time=0.01, data_dir=tmp_path / "emu", previews=True) as emu, \
            httpx.Client(base_url=emu.url, timeout=10) as client:
        ws = scenario_392(emu, client)
        ws.close()
    frames = [e for e in ws.entries if e[0] == "binary"]
    assert frames and all(e[1] == 4 for e in frames)
    payload = frames[0][2]
    length = int.from_bytes(payload[4:8], "big")
    meta = json.loads(payload[8:8 + length])
    assert meta["image_type"] == "image/jpeg" and meta["node_id"] == "3"
    assert payload[8 + length:8 + length + 2] == b"\xff\xd8"  # a JPEG follows


def test_reconnect_mid_job(emulator_ws: Emulator) -> None:
    emu = emulator_ws
    client_id = _cid("281_ws_reconnect_part1_before_disconnect")
    with httpx.Client(base_url=emu.url, timeout=10) as client:
        _warm_up(client, "txt2img_slow")
        # Held after its first step's progress: the job is mid-sampling, whatever the
        # machine's load, until the second socket is connected.
        emu.hold(at_step=2)
        first = Recorder(emu.ws_url, client_id)
        prompt_id = _post(client, _body("230_post_prompt_for_reconnect"))
        first.wait_for(lambda m: m["type"] == "progress")
        assert emu.wait_held(1) == [prompt_id]
        first.close()
        second = Recorder(emu.ws_url, client_id)
        second.wait_for(lambda m: m["type"] == "executing")
        emu.release()
        second.wait_done(prompt_id)
        second.close()
    kinds = summary(first.entries)
    part1 = first.entries[: kinds.index("progress") + 1]
    assert_same_sequence("281_ws_reconnect_part1_before_disconnect", part1)
    assert_same_sequence("282_ws_reconnect_part2_after_reconnect_same_clientId", second.entries)
    assert second.texts()[1] == {"type": "executing", "data": {"node": "3"}}  # no prompt_id


def test_restart_mid_job_drops_socket_without_close_frame(emulator_ws: Emulator) -> None:
    emu = emulator_ws
    with httpx.Client(base_url=emu.url, timeout=10) as client:
        _warm_up(client, "txt2img_ckpt")
        emu.faults.step_time = 0.1
        ws = Recorder(emu.ws_url, _cid("390_ws_server_stopped_mid_job"))
        running = _post(client, _body("300_post_prompt_running_at_shutdown"))
        for name in ("301_post_prompt_pending_at_shutdown", "302_post_prompt_pending_at_shutdown"):
            _post(client, _body(name))
        ws.wait_for(lambda m: m["type"] == "progress")
        emu.restart()
        ws.wait_closed()
        assert ws.closed and ws.closed_without_frame
        assert client.get("/queue").json() == {"queue_running": [], "queue_pending": []}
        assert client.get("/history").json() == {}
        assert client.get(f"/history/{running}").json() == {}
        assert client.post("/prompt", json={"prompt": replay.workflow("txt2img_fastest")}).json()["number"] == 0
    assert_same_sequence("390_ws_server_stopped_mid_job", ws.entries)
