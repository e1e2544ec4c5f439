"""The original ComfyGen's variables are read as fallbacks, with a notice naming the new one."""

from __future__ import annotations

import logging

import pytest

from comfy_gen.config import Settings, get_settings, reset_settings_cache
from comfy_gen.errors import ConfigError
from comfy_gen.emulator import Emulator
from tests.generate.helpers import run_cli

ALL_LEGACY = {
    "COMFYUI_HOST": "http://10.1.2.3:8190", "MINIO_ENDPOINT": "10.1.2.3:9000", "MINIO_BUCKET": "old-bucket",
    "MINIO_ACCESS_KEY": "old-access", "MINIO_SECRET_KEY": "old-secret",
}


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_settings_cache()
    return get_settings()


def test_original_names_are_fallbacks(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="comfy_gen.config.legacy"):
        s = _settings(monkeypatch, **ALL_LEGACY)
        Settings()  # a second read in the same process: no second notice
    assert s.comfyui_url == "http://10.1.2.3:8190" and s.comfyui_url_configured
    assert (s.minio_endpoint, s.minio_bucket) == ("10.1.2.3:9000", "old-bucket")
    assert s.secret("minio_access_key") == "old-access" and s.secret("minio_secret_key") == "old-secret"
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 5 and all(n.count("\n") == 0 for n in notices)
    assert "COMFYUI_HOST is read as COMFY_GEN_COMFYUI_URL" in notices[0]
    assert not any("old-secret" in n or "old-access" in n for n in notices)  # names, never values


def test_comfy_gen_values_win_silently(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("COMFY_GEN_COMFYUI_URL", "http://127.0.0.1:8188")
    monkeypatch.setenv("COMFY_GEN_MINIO_BUCKET", "new-bucket")
    with caplog.at_level(logging.WARNING, logger="comfy_gen.config.legacy"):
        s = _settings(monkeypatch, COMFYUI_HOST="http://10.9.9.9:8188", MINIO_BUCKET="old",
                      MINIO_ENDPOINT="10.1.2.3:9000")
    assert (s.comfyui_url, s.minio_bucket, s.minio_endpoint) == ("http://127.0.0.1:8188", "new-bucket",
                                                                 "10.1.2.3:9000")
    assert [r.getMessage().split()[0] for r in caplog.records] == ["MINIO_ENDPOINT"]
    assert Settings(comfyui_url="http://127.0.0.1:1234").comfyui_url == "http://127.0.0.1:1234"  # explicit wins


@pytest.mark.parametrize(("env", "url"), [
    pytest.param({"COMFYGEN_COMFYUI_HOST": "10.0.0.7", "COMFYGEN_COMFYUI_PORT": "8200"}, "http://10.0.0.7:8200",
                 id="api-host-and-port"),
    pytest.param({"COMFYGEN_COMFYUI_HOST": "10.0.0.7"}, "http://10.0.0.7:8188", id="api-default-port"),
    pytest.param({"COMFYGEN_COMFYUI_HOST": "http://a:1", "COMFYUI_HOST": "http://b:2"}, "http://a:1",
                 id="api-name-first"),
    pytest.param({"COMFYUI_HOST": "gpu-box:8188"}, "http://gpu-box:8188", id="no-scheme"),
])
def test_original_host_forms(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], url: str) -> None:
    assert _settings(monkeypatch, **env).comfyui_url == url


def test_bad_original_host_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="COMFYUI_HOST: the port must be"):
        _settings(monkeypatch, COMFYUI_HOST="http://host:99999")


def test_unused_original_names_get_a_notice(monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="comfy_gen.config.legacy"):
        _settings(monkeypatch, COMFYGEN_MLFLOW_TRACKING_URI="http://mlflow:5000")
    assert "COMFYGEN_MLFLOW_TRACKING_URI (the original ComfyGen's) is not used" in caplog.text


def test_cli_shows_the_notice_on_stderr_and_uses_the_value(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMFYUI_HOST", emu.url)
    code, out, err = run_cli("generate", "-w", "tiny-sd15", "-p", "a quiet harbour", "--steps", "2", "-o", "h.png")
    assert code == 0, err
    assert err.count("Notice: COMFYUI_HOST is read as COMFY_GEN_COMFYUI_URL") == 1
    assert out.strip().endswith("h.png")
