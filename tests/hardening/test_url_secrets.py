"""Credentials in URLs never reach output, logs or errors; one GPU bound per server."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

from comfy_gen.comfyui import ComfyUIClient
from comfy_gen.errors import ComfyGenError
from comfy_gen.gate import GpuGate
from comfy_gen.urls import normalize_url, redact_text, redact_url
from tests.conftest import REPO_ROOT

PASSWORD = "S3cretPw-7Hq"


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port bound but not listening: connecting is refused, and nobody can take it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize("url, expected", [
    ("http://user:pw@host:8188/x", "http://***@host:8188/x"),
    ("http://token@host", "http://***@host"),
    ("https://host/p?api_key=abc&size=2&Token=xyz", "https://host/p?api_key=***&size=2&Token=***"),
    ("http://127.0.0.1:8188", "http://127.0.0.1:8188"),
    ("not a url", "not a url"),
])
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_text_masks_urls_inside_messages() -> None:
    text = f"Cannot reach ComfyUI at http://u:{PASSWORD}@h:1/prompt?token=t0k (refused)"
    assert redact_text(text) == "Cannot reach ComfyUI at http://***@h:1/prompt?token=*** (refused)"


@pytest.mark.parametrize("spelling", [
    "http://127.0.0.1:8188", "HTTP://127.0.0.1:8188/", "http://localhost:8188", "http://LOCALHOST:8188//",
    "http://user:pw@127.0.0.1:8188", "http://[::1]:8188", "http://127.0.0.1:8188?x=1",
])
def test_normalize_url_gives_one_spelling_per_server(spelling: str) -> None:
    assert normalize_url(spelling) == "http://127.0.0.1:8188"


def test_normalize_url_drops_default_ports_only() -> None:
    assert normalize_url("https://GPU.example:443/comfy/") == "https://gpu.example/comfy"
    assert normalize_url("http://gpu.example:80") == "http://gpu.example"
    assert normalize_url("http://gpu.example:8080") == "http://gpu.example:8080"


def test_two_spellings_of_one_server_share_one_gpu_bound(tmp_path: Path) -> None:
    first = GpuGate("http://127.0.0.1:8199", 1, lock_dir=tmp_path)
    second = GpuGate("HTTP://localhost:8199/", 1, lock_dir=tmp_path)
    entered = threading.Event()
    release = threading.Event()

    def hold_second() -> None:
        with second:
            entered.set()
            release.wait(10)

    with first:
        # The bound is full: a non-blocking take of the shared in-process slot fails ...
        assert second._sem.acquire(blocking=False) is False
        waiter = threading.Thread(target=hold_second)
        waiter.start()
    # ... and the second spelling gets in as soon as the first lets go.
    assert entered.wait(10)
    release.set()
    waiter.join(10)
    assert first.backend_url == second.backend_url == "http://127.0.0.1:8199"


def test_client_hides_credentials_in_repr_errors_and_logs(dead_port: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = ComfyUIClient(f"http://admin:{PASSWORD}@127.0.0.1:{dead_port}", retries=2, retry_delay=0,
                           connect_timeout=1)
    try:
        assert PASSWORD not in repr(client)
        with pytest.raises(ComfyGenError) as info:
            client.system_stats()
        assert "retrying" in caplog.text  # the retry warning was logged, and redacted
        for text in (str(info.value), repr(info.value.to_dict()), caplog.text, str(getattr(info.value, "url", ""))):
            assert PASSWORD not in text
        assert "http://***@127.0.0.1" in str(info.value)
    finally:
        client.close()


def test_log_records_from_any_logger_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    import comfy_gen.config  # noqa: F401  (installs the record factory)

    caplog.set_level(logging.INFO)
    logging.getLogger("some.library").info("GET %s", f"http://u:{PASSWORD}@h/x")
    assert PASSWORD not in caplog.text and "http://***@h/x" in caplog.text


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **env}
    return subprocess.run([sys.executable, "-m", "comfy_gen.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=120)


def test_cli_with_credentials_in_the_comfyui_url_never_prints_them(emu, dead_port: int, tmp_path: Path) -> None:
    host = emu.url.split("://", 1)[1]
    ok = _cli(["generate", "-w", "tiny-sd15.json", "-p", "a cat", "--steps", "2"],
              {"COMFY_GEN_COMFYUI_URL": f"http://admin:{PASSWORD}@{host}"})
    assert ok.returncode == 0, ok.stderr[-2000:]
    for args in (["queue"], ["models"],
                 ["generate", "-w", "tiny-sd15.json", "-p", "a cat", "--steps", "2"]):
        dead = _cli(args, {"COMFY_GEN_COMFYUI_URL": f"http://admin:{PASSWORD}@127.0.0.1:{dead_port}",
                           "COMFY_GEN_HTTP_RETRIES": "2", "COMFY_GEN_RETRY_DELAY": "0"})
        assert dead.returncode == 2, (args, dead.stdout, dead.stderr)
        assert "Traceback" not in dead.stderr
        assert "***@127.0.0.1" in dead.stdout + dead.stderr
        for proc in (ok, dead):
            assert PASSWORD not in proc.stdout + proc.stderr, args


@pytest.mark.parametrize("value", [
    f'{{"gpu1": "http://u:{PASSWORD}@h:1"',          # broken JSON
    f'{{"gpu1": "http://u:{PASSWORD}@h:99999"}}',    # bad port
    f'http://u:{PASSWORD}@h:1',                      # a URL instead of JSON
    f'{{"gpu1": "u:{PASSWORD}@h"}}',                 # no scheme at all
])
def test_malformed_backends_setting_is_not_echoed(value: str) -> None:
    proc = _cli(["recipe", "validate", "nothing.yaml"], {"COMFY_GEN_BACKENDS": value})
    assert proc.returncode == 2
    assert "COMFY_GEN_BACKENDS" in proc.stderr and "Traceback" not in proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr


def test_comfyui_url_with_a_bad_port_is_a_settings_error_without_the_password() -> None:
    proc = _cli(["queue"], {"COMFY_GEN_COMFYUI_URL": f"http://u:{PASSWORD}@127.0.0.1:99999"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "COMFY_GEN_COMFYUI_URL" in proc.stderr and "port" in proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr
