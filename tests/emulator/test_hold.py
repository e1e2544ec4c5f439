"""The hold control: jobs wait at their sampler until released, interrupted or cleared."""

from __future__ import annotations

import httpx
import pytest

from comfy_gen.emulator import Emulator
from tests.emulator import replay


def _queue(client: httpx.Client, seed: int, client_id: str = "hold-test") -> str:
    workflow = replay.workflow("txt2img_fastest")
    workflow["3"]["inputs"]["seed"] = seed
    response = client.post("/prompt", json={"prompt": workflow, "client_id": client_id})
    assert response.status_code == 200, response.text
    return str(response.json()["prompt_id"])


def test_held_job_waits_at_its_sampler_until_released(fresh_emulator: Emulator) -> None:
    emu = fresh_emulator
    emu.hold(after=1)
    with httpx.Client(base_url=emu.url) as client:
        first, second, third = (_queue(client, seed) for seed in (1, 2, 3))
        assert emu.wait_held(1, timeout=60) == [second]  # the first ran through
        replay.wait_history(client, first)
        stats = emu.stats()
        assert stats["jobs_completed"] == 1 and stats["queue_running"] == 1 and stats["queue_pending"] == 1
        assert stats["held"] == [second] and stats["jobs_held"] == 1
        assert client.get(f"/history/{second}").json() == {}

        assert emu.release(1) == [second]  # hold stays on: the third is held next
        assert emu.wait_held(1, timeout=60) == [third]
        assert replay.wait_history(client, second)["status"]["status_str"] == "success"
        assert emu.release() == [third]    # all, and holding stops
        assert replay.wait_history(client, third)["status"]["status_str"] == "success"
    assert emu.wait_idle(timeout=60)
    assert emu.stats()["jobs_completed"] == 3 and emu.held() == []


def test_interrupt_reaches_a_held_job(fresh_emulator: Emulator) -> None:
    emu = fresh_emulator
    emu.hold()
    with httpx.Client(base_url=emu.url) as client:
        prompt_id = _queue(client, 7)
        emu.wait_held(1, timeout=60)
        client.post("/interrupt", json={"prompt_id": "someone-else"})
        assert emu.held() == [prompt_id]  # an interrupt aimed at another prompt changes nothing
        client.post("/interrupt", json={"prompt_id": prompt_id})
        entry = replay.wait_history(client, prompt_id)
    assert entry["status"]["status_str"] == "error"
    assert "execution_interrupted" in [m[0] for m in entry["status"]["messages"]]
    assert emu.held() == [] and emu.stats()["jobs_interrupted"] == 1


@pytest.mark.parametrize("cleanup", ["clear", "restart"])
def test_clear_and_restart_never_leave_a_job_held(fresh_emulator: Emulator, cleanup: str) -> None:
    emu = fresh_emulator
    emu.hold()
    with httpx.Client(base_url=emu.url) as client:
        _queue(client, 1)
        _queue(client, 2)
        emu.wait_held(1, timeout=60)
        getattr(emu, cleanup)()
        assert emu.wait_idle(timeout=60)
        assert emu.held() == []
        if cleanup == "clear":  # clear() also stops holding: the next job runs through
            replay.wait_history(client, _queue(client, 3))


def test_wait_held_times_out_with_the_emulator_state(fresh_emulator: Emulator) -> None:
    fresh_emulator.hold()
    with pytest.raises(TimeoutError, match=r"0 of 1 job\(s\) held after 0.1s; stats: .*queue_pending"):
        fresh_emulator.wait_held(1, timeout=0.1)


def test_hold_over_http(fresh_emulator: Emulator) -> None:
    emu = fresh_emulator
    with httpx.Client(base_url=emu.url, timeout=90) as client:
        assert client.post("/_emulator/hold", json={"after": -1}).status_code == 400
        assert client.post("/_emulator/hold", json={"after": 0}).json()["holding"] is True
        assert client.get("/_emulator/hold", params={"held": 1, "timeout": 0.1}).status_code == 408
        prompt_id = _queue(client, 5)
        answer = client.get("/_emulator/hold", params={"held": 1, "timeout": 60})
        assert answer.status_code == 200 and answer.json()["held"] == [prompt_id]
        assert client.get("/_emulator/stats").json()["held"] == [prompt_id]
        released = client.post("/_emulator/release").json()
        assert released["released"] == [prompt_id] and released["holding"] is False
        assert replay.wait_history(client, prompt_id)["status"]["status_str"] == "success"
        assert client.post("/_emulator/release", json={"n": "x"}).status_code == 400
