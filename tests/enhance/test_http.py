"""The http backend against a loopback server speaking the chat-completions protocol."""

from __future__ import annotations

import pytest

from comfy_gen.config import Settings
from comfy_gen.enhance import enhance_prompt, get_enhancer
from comfy_gen.errors import EnhancerUnavailable
from tests.enhance.conftest import ChatServer
from comfy_gen.stack import free_port

PROMPT = "a lighthouse on a cliff"


def _settings(url: str, **extra: object) -> Settings:
    return Settings(enhance_backend="http", enhance_url=url, enhance_model="tiny-chat", **extra)


def test_success_sends_a_deterministic_request_and_cleans_the_answer(chat_server: ChatServer) -> None:
    settings = _settings(chat_server.url, enhance_api_key="sk-secret-123")
    result = enhance_prompt(PROMPT, style="cinematic", settings=settings)
    assert result.prompt == f"{PROMPT}, cinematic lighting, dramatic clouds, 35mm film still"
    assert result.record() == {"backend": "http", "model": "tiny-chat", "style": "cinematic", "status": "enhanced"}
    assert chat_server.probes == 1 and chat_server.chats == 1
    sent = chat_server.requests[0]
    assert sent["authorization"] == "Bearer sk-secret-123"
    body = sent["body"]
    assert (body["model"], body["temperature"], body["stream"]) == ("tiny-chat", 0.0, False)
    assert body["messages"][0]["role"] == "system" and "film still" in body["messages"][0]["content"]
    assert body["messages"][1] == {"role": "user", "content": PROMPT}


@pytest.mark.parametrize("mode, reason", [
    pytest.param("error500", "HTTP 500", id="server-error"),
    pytest.param("garbage", "not a usable prompt", id="garbage"),
])
def test_run_time_failure_keeps_the_original_with_a_warning(chat_server: ChatServer, mode: str,
                                                            reason: str) -> None:
    chat_server.mode = mode
    result = enhance_prompt(PROMPT, settings=_settings(chat_server.url))
    assert result.prompt == PROMPT and not result.changed
    assert result.warning and reason in result.warning and "original prompt is kept" in result.warning


def test_timeout_keeps_the_original(chat_server: ChatServer) -> None:
    chat_server.mode = "hold"  # answers only after the test ends: the client must give up first
    result = enhance_prompt(PROMPT, settings=_settings(chat_server.url, enhance_timeout=0.5))
    assert result.prompt == PROMPT and result.warning and "timed out" in result.warning


def test_unreachable_endpoint_is_unavailable_with_the_url_redacted() -> None:
    url = f"http://user:hunter2@127.0.0.1:{free_port()}/v1"
    with pytest.raises(EnhancerUnavailable) as info:
        get_enhancer(_settings(url, enhance_api_key="sk-never-shown"))
    text = str(info.value)
    assert "COMFY_GEN_ENHANCE_URL" in text and "not reachable" in text
    assert "hunter2" not in text and "sk-never-shown" not in text and "***@127.0.0.1" in text


def test_http_backend_without_url_is_unavailable() -> None:
    with pytest.raises(EnhancerUnavailable) as info:
        get_enhancer(Settings(enhance_backend="http"))
    assert "COMFY_GEN_ENHANCE_URL" in str(info.value)


def test_settings_never_echo_the_key_or_url_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from comfy_gen.config import get_settings, reset_settings_cache
    from comfy_gen.errors import ConfigError

    monkeypatch.setenv("COMFY_GEN_ENHANCE_URL", "http://user:hunter2@127.0.0.1:99999/v1")
    reset_settings_cache()
    with pytest.raises(ConfigError) as info:
        get_settings()
    assert "COMFY_GEN_ENHANCE_URL" in str(info.value) and "hunter2" not in str(info.value)
    monkeypatch.setenv("COMFY_GEN_ENHANCE_URL", "http://127.0.0.1:8080/v1/")
    monkeypatch.setenv("COMFY_GEN_ENHANCE_API_KEY", "sk-abc")
    reset_settings_cache()
    settings = get_settings()
    assert settings.enhance_url == "http://127.0.0.1:8080/v1" and "sk-abc" not in repr(settings)
