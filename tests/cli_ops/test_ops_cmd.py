"""`comfy-gen models|queue|cancel` through the real CLI entry point, against the emulator."""

from __future__ import annotations

import json
import random

import httpx
import pytest

from comfy_gen.comfyui import ComfyUIClient
from tests.cli_ops.helpers import run_cli
from tests.conftest import RECORDINGS


def _graph(name: str = "txt2img_ckpt.json") -> dict:
    graph = json.loads((RECORDINGS / "workflows" / name).read_text())
    graph["3"]["inputs"]["seed"] = random.randrange(2**31)
    return graph


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMFY_GEN_RETRY_DELAY", "0.01")
    monkeypatch.setenv("COMFY_GEN_CONNECT_TIMEOUT", "0.5")


def test_models_json_and_text(emu) -> None:
    code, out, err = run_cli("models", "--json", "--url", emu.url)
    assert code == 0, err
    data = json.loads(out)
    assert "tiny_sd15.safetensors" in data["checkpoints"] and "loras" in data
    code, out, _ = run_cli("models", "--loras", "--url", emu.url)
    assert code == 0 and out.splitlines()[0].startswith("loras (")
    assert "  tiny_sd15_lora.safetensors" in out.splitlines()
    code, out, _ = run_cli("models", "--folder", "vae", "--json", "--url", emu.url)
    assert code == 0 and list(json.loads(out)) == ["vae"]


def test_models_url_defaults_to_settings(emu, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMFY_GEN_COMFYUI_URL", emu.url)
    code, out, _ = run_cli("models", "--folder", "checkpoints")
    assert code == 0 and "tiny_sd15.safetensors" in out


def test_queue_lists_ours_and_theirs(emu) -> None:
    emu.hold()  # the first job stays running until cancelled (the fixture's clear() ends the rest)
    with ComfyUIClient(emu.url, retry_delay=0.01) as client:
        running = client.queue_prompt(_graph("txt2img_slow.json")).prompt_id
        pending = client.queue_prompt(_graph()).prompt_id
        assert emu.wait_held(1, timeout=60) == [running]
        foreign = httpx.post(f"{emu.url}/prompt", json={"prompt": _graph(), "client_id": "other-tool"},
                             timeout=5).json()["prompt_id"]
        code, out, _ = run_cli("queue", "--json", "--url", emu.url)
        assert code == 0
        data = json.loads(out)
        ids = {i["prompt_id"] for i in data["running"] + data["pending"]}
        assert {running, pending, foreign} <= ids
        code, out, _ = run_cli("queue", "--url", emu.url)
        assert "(comfy-gen)" in out and "(other-tool)" in out and pending in out

        # --all-mine cancels comfy-gen jobs only
        code, out, err = run_cli("cancel", "--all-mine", "--json", "--url", emu.url)
        assert code == 0, err
        outcome = json.loads(out)
        assert outcome == {pending: "deleted", running: "interrupted"}
        state = client.get_queue()
        assert state.find(foreign) is not None
        assert state.find(pending) is None
        client.delete_pending([foreign])


def test_cancel_one_and_errors(emu) -> None:
    emu.hold()
    with ComfyUIClient(emu.url, retry_delay=0.01) as client:
        running = client.queue_prompt(_graph("txt2img_slow.json")).prompt_id
        pending = client.queue_prompt(_graph()).prompt_id
        assert emu.wait_held(1, timeout=60) == [running]
        code, out, _ = run_cli("cancel", pending, "--url", emu.url)
        assert code == 0 and out.strip() == f"{pending}: deleted"
        code, out, _ = run_cli("cancel", running, "--url", emu.url)
        assert code == 0 and out.strip() == f"{running}: interrupted"
    code, out, err = run_cli("cancel", "no-such-job", "--url", emu.url)
    assert code == 1 and "neither running nor pending" in err and "Traceback" not in err
    code, _, err = run_cli("cancel", "--url", emu.url)
    assert code == 2 and "--all-mine" in err
    code, _, err = run_cli("cancel", "x", "--all-mine", "--url", emu.url)
    assert code == 2


def test_nothing_to_cancel(emu) -> None:
    code, out, _ = run_cli("cancel", "--all-mine", "--url", emu.url)
    assert code == 0 and "No comfy-gen jobs" in out


def test_unreachable_server_is_a_clean_error() -> None:
    code, out, err = run_cli("queue", "--url", "http://127.0.0.1:9")
    assert code == 2  # ComfyUIUnavailable -> exit 2 (see cli/_errors.py)
    assert "Error: Cannot reach ComfyUI" in err and "Traceback" not in err
    code, _, err = run_cli("models", "--url", "ftp://127.0.0.1:9")
    assert code == 2 and "Invalid ComfyUI URL" in err
