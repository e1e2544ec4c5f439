"""A CLIP model that is neither cached nor reachable fails at once, before torch or
transformers are imported, naming why; a cached or local model never asks the hub."""

from __future__ import annotations

import sys

import pytest

from comfy_gen.errors import ValidatorUnavailable
from comfy_gen.stack import free_port
from comfy_gen.validation.clip import hub_address, hub_reachable, precheck

NOT_CACHED = "comfy-gen-tests/no-such-clip"  # a hub id no cache holds


@pytest.fixture()
def hub_online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hub access on (the test env sets it off); every request goes through a proxy
    on a loopback port nothing listens on, so no test can reach a real hub."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{free_port()}")


def test_unreachable_hub_fails_with_the_address_and_no_download(hub_online) -> None:
    host, port = hub_address()
    assert host == "127.0.0.1" and not hub_reachable((host, port))
    with pytest.raises(ValidatorUnavailable) as info:
        precheck(NOT_CACHED)
    message = info.value.message
    assert "not in the local model cache" in message and f"127.0.0.1:{port}" in message
    assert "COMFY_GEN_CLIP_MODEL" in (info.value.hint or "")


def test_offline_mode_fails_without_probing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValidatorUnavailable, match="hub access is off"):
        precheck(NOT_CACHED)


def test_a_reachable_endpoint_is_seen(hub_online) -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert hub_reachable(server.getsockname())


def test_the_plan_fails_before_importing_torch(hub_online, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked in a fresh interpreter: this one may have imported torch already."""
    import subprocess

    from comfy_gen.config import PROJECT_ROOT

    code = (
        "import sys\n"
        "from comfy_gen.config import Settings\n"
        "from comfy_gen.errors import ValidatorUnavailable\n"
        "from comfy_gen.validation.plan import ValidationPlan\n"
        "plan = ValidationPlan.from_options(validate=True)\n"
        f"try:\n    plan.prepare(Settings(clip_model={NOT_CACHED!r}))\n"
        "except ValidatorUnavailable as exc:\n    print('unavailable:', exc.message)\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=str(PROJECT_ROOT), check=True).stdout
    assert "unavailable:" in out and "cannot be reached" in out
    assert out.strip().endswith("False False"), out
