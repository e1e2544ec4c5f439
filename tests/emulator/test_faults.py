"""Fault injection: 5xx answers, dropped sockets, failing nodes, slow steps, HTTP controls."""

from __future__ import annotations

import httpx
import pytest

from comfy_gen.emulator import Emulator
from tests.emulator import replay
from tests.emulator.wsclient import Recorder, summary


def test_http_5xx_next_answers_the_next_requests_then_recovers(emu: Emulator) -> None:
    emu.faults.http_5xx_next = 2
    with httpx.Client(base_url=emu.url) as client:
        statuses = [client.get("/system_stats").status_code for _ in range(3)]
        assert client.get("/_emulator/stats").json()["faults_injected"] >= 2
    assert statuses == [503, 500, 200]


def test_http_5xx_rate_is_deterministic_for_a_seed(emu: Emulator) -> None:
    def draw() -> list[int]:
        emu.faults.update({"reset": True, "http_5xx_rate": 0.5, "seed": 7})
        with httpx.Client(base_url=emu.url) as client:
            return [client.get("/queue").status_code for _ in range(20)]

    first, second = draw(), draw()
    assert first == second
    assert 200 in first and {500, 503} & set(first)


def test_control_routes_are_never_faulted(emu: Emulator) -> None:
    emu.faults.http_5xx_rate = 1.0
    with httpx.Client(base_url=emu.url) as client:
        assert client.get("/features").status_code in (500, 503)
        assert client.get("/_emulator/stats").status_code == 200
        assert client.post("/_emulator/faults", json={"reset": True}).status_code == 200
        assert client.get("/features").status_code == 200


def test_faults_over_http(emu: Emulator) -> None:
    with httpx.Client(base_url=emu.url) as client:
        answer = client.post("/_emulator/faults", json={"http_5xx_next": 1, "step_time": 0.001})
        assert answer.status_code == 200 and answer.json()["http_5xx_next"] == 1
        assert client.get("/_emulator/faults").json()["step_time"] == 0.001
        assert client.get("/prompt").status_code == 503
        assert client.get("/prompt").status_code == 200
        assert client.post("/_emulator/faults", json={"bogus": 1}).status_code == 400
        assert client.post("/_emulator/faults", json={"http_5xx_rate": 2}).status_code == 400
    assert emu.faults.step_time == 0.001


def test_ws_drop_after_cuts_each_socket_without_close_frame(emu: Emulator) -> None:
    emu.faults.ws_drop_after = 3
    with httpx.Client(base_url=emu.url) as client:
        ws = Recorder(emu.ws_url, "drop-me")
        prompt = {"prompt": replay.workflow("txt2img_fastest"), "client_id": "drop-me"}
        prompt_id = client.post("/prompt", json=prompt).json()["prompt_id"]
        ws.wait_closed()
        assert ws.closed and ws.closed_without_frame
        assert len(ws.entries) == 3
        # The job itself is unaffected: history still gets it.
        assert replay.wait_history(client, prompt_id)["status"]["status_str"] == "success"


def test_error_node_class_fails_that_node(emu: Emulator) -> None:
    emu.faults.error_node_class = "VAEDecode"
    with httpx.Client(base_url=emu.url) as client:
        ws = Recorder(emu.ws_url, "fail-me")
        workflow = replay.workflow("txt2img_ckpt")
        workflow["3"]["inputs"]["seed"] = 987654
        prompt_id = client.post("/prompt", json={"prompt": workflow, "client_id": "fail-me"}).json()["prompt_id"]
        ws.wait_done(prompt_id)
        ws.close()
        entry = client.get(f"/history/{prompt_id}").json()[prompt_id]
    error = next(m["data"] for m in ws.texts() if m["type"] == "execution_error")
    assert error["node_type"] == "VAEDecode" and error["node_id"] == "8"
    assert "3" in error["executed"] and error["exception_type"] == "RuntimeError"
    assert summary(ws.entries)[-3:] == ["execution_error", "status", "executing:null"]
    assert entry["status"] == {"status_str": "error", "completed": False,
                               "messages": entry["status"]["messages"]}
    assert entry["status"]["messages"][-1][0] == "execution_error" and entry["outputs"] == {}


def test_step_time_fault_slows_sampler_steps(emu: Emulator) -> None:
    emu.faults.step_time = 0.05
    workflow = replay.workflow("txt2img_ckpt")
    workflow["3"]["inputs"].update(steps=4, seed=4242)
    with httpx.Client(base_url=emu.url) as client:
        prompt_id = client.post("/prompt", json={"prompt": workflow}).json()["prompt_id"]
        replay.wait_history(client, prompt_id)
    start, end = emu.stats()["busy"][-1]
    assert end - start >= 0.2


def test_unknown_fault_field_is_rejected() -> None:
    from comfy_gen.emulator import Faults

    with pytest.raises(ValueError):
        Faults().update({"nope": 1})
