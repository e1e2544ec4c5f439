"""Enhancer fixtures: tiny chat models on disk, a loopback chat-completions server."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from comfy_gen.config import reset_settings_cache
from tests.enhance.tiny_chat import build_chat_folder


@pytest.fixture(scope="session")
def tiny_chat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weights Qwen2 chat model whose answers are words (the cleaner keeps them)."""
    return build_chat_folder(tmp_path_factory.mktemp("tiny-chat"), kind="wordy")


@pytest.fixture(scope="session")
def junk_chat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weights Qwen2 chat model whose answers are punctuation (the cleaner refuses them)."""
    return build_chat_folder(tmp_path_factory.mktemp("junk-chat"), kind="junk")


@pytest.fixture(autouse=True)
def _fresh_enhancers() -> Iterator[None]:
    """Each test loads its own enhancer (the process-wide one is per settings otherwise)."""
    from comfy_gen.enhance import reset_enhancers

    reset_enhancers()
    yield
    reset_enhancers()


@dataclass
class ChatServer:
    """A loopback OpenAI-compatible server. ``mode``: ok | error500 | hold (answers
    only after ``release`` is set) | garbage. ``requests`` records each chat body and
    its Authorization header."""

    url: str = ""
    mode: str = "ok"
    answer: str = 'Here is the enhanced prompt:\n"{prompt}, cinematic lighting, dramatic clouds, 35mm film still"'
    detailed: str = "{prompt}, highly detailed textures, volumetric light, intricate composition"
    requests: list[dict[str, Any]] = field(default_factory=list)
    probes: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    server: Any = None

    @property
    def chats(self) -> int:
        return len(self.requests)


def _handler(state: ChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/v1/models":
                state.probes += 1
                self._send(200, {"object": "list", "data": [{"id": "tiny-chat", "object": "model"}]})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": "not found"})
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append({"body": body, "authorization": self.headers.get("Authorization")})
            if state.mode == "error500":
                self._send(500, {"error": {"message": "model crashed"}})
                return
            if state.mode == "hold":
                state.release.wait(30)
            system, user = body["messages"][0]["content"], body["messages"][1]["content"]
            template = state.detailed if "more detailed" in system or "highly detailed" in system else state.answer
            content = "!!! ??? ###" if state.mode == "garbage" else template.format(prompt=user)
            # The documented response shape (OpenAI chat.completion object).
            self._send(200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 0,
                             "model": body.get("model"),
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": content}}],
                             "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    return Handler


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    state = ChatServer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.server = server
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture
def use_chat_server(chat_server: ChatServer, monkeypatch: pytest.MonkeyPatch) -> ChatServer:
    """COMFY_GEN_ENHANCE_* pointing at the loopback server (the CLI and flow read the env)."""
    monkeypatch.setenv("COMFY_GEN_ENHANCE_BACKEND", "http")
    monkeypatch.setenv("COMFY_GEN_ENHANCE_URL", chat_server.url)
    monkeypatch.setenv("COMFY_GEN_ENHANCE_MODEL", "tiny-chat")
    reset_settings_cache()
    return chat_server


@pytest.fixture
def use_tiny_chat(tiny_chat_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COMFY_GEN_ENHANCE_BACKEND", "local")
    monkeypatch.setenv("COMFY_GEN_ENHANCE_MODEL", str(tiny_chat_dir))
    monkeypatch.setenv("COMFY_GEN_ENHANCE_MAX_TOKENS", "16")
    reset_settings_cache()
    return tiny_chat_dir
