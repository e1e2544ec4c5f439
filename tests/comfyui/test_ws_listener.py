"""The WebSocket listener against a tiny replay server on 127.0.0.1 (recorded frames)."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from websockets.sync.server import serve

from comfy_gen.comfyui import events as ev
from comfy_gen.comfyui._ws import FEATURE_FLAGS, EventListener, ws_url
from tests.conftest import RECORDINGS

CAPTURES = RECORDINGS / "captures"


def _frames(name: str) -> list[str | bytes]:
    capture = json.loads((CAPTURES / name).read_text())
    frames: list[str | bytes] = []
    for m in capture["messages"]:
        if m["kind"] == "text":
            frames.append(json.dumps(m["msg"]))
        else:
            frames.append((CAPTURES / m["binary"]["saved_as"]).read_bytes())
    return frames


@pytest.fixture
def replay_server():
    """Replays a capture to each connection, then drops it (like a server stop)."""
    state = {"frames": [], "paths": [], "received": [], "connections": 0}

    def handler(conn) -> None:
        state["connections"] += 1
        state["paths"].append(conn.request.path)
        state["received"].append(json.loads(conn.recv(timeout=2)))
        for frame in state["frames"]:
            conn.send(frame)
        time.sleep(0.05)
        conn.socket.shutdown(socket.SHUT_RDWR)  # abrupt: no close frame, as in capture 390

    with serve(handler, "127.0.0.1", 0) as server:
        port = server.socket.getsockname()[1]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        state["url"] = f"http://127.0.0.1:{port}"
        yield state
        server.shutdown()


def test_ws_url_keeps_prefix_and_quotes_client_id() -> None:
    assert ws_url("http://h:8188", "comfy-gen-1") == "ws://h:8188/ws?clientId=comfy-gen-1"
    assert ws_url("https://h/comfy/", "a b") == "wss://h/comfy/ws?clientId=a%20b"


def test_listener_parses_replayed_frames_and_reconnects(replay_server) -> None:
    replay_server["frames"] = _frames("392_ws_previews_feature_flag_client.json")
    got: list[ev.Event] = []
    states: list[bool] = []
    first_pass: list[ev.Event] = []

    def on_connection(connected: bool) -> None:
        states.append(connected)
        if not connected and not first_pass:
            first_pass.extend(got)  # everything the first connection delivered

    listener = EventListener(ws_url(replay_server["url"], "comfy-gen-test"), on_event=got.append,
                             on_connection=on_connection, open_timeout=2, max_backoff=0.1)
    try:
        assert listener.start(wait=2)
        deadline = time.monotonic() + 5
        while (listener.generation < 2 or states.count(False) < 1) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        listener.close()
    assert listener.generation >= 2 and states[:2] == [True, False]
    assert replay_server["paths"][0] == "/ws?clientId=comfy-gen-test"
    assert replay_server["received"][0] == FEATURE_FLAGS
    one_pass = first_pass
    types = [e.type for e in one_pass]
    assert types.count("preview") == 3 and types.count("progress") == 3
    previews = [e for e in one_pass if isinstance(e, ev.Preview)]
    assert all(p.prompt_id == "fc40b1c6-5d61-4436-80d8-b7feaeb81245" and p.event == 4 for p in previews)
    # progress_state and feature_flags are not modelled
    assert "progress_state" not in types and "feature_flags" not in types
    assert any(isinstance(e, ev.Executing) and e.is_done for e in one_pass)


def test_listener_survives_a_failing_handler(replay_server) -> None:
    replay_server["frames"] = _frames("193_ws_runtime_error.json")
    calls: list[str] = []

    def handler(event: ev.Event) -> None:
        calls.append(event.type)
        raise RuntimeError("bad handler")

    listener = EventListener(ws_url(replay_server["url"], "x"), on_event=handler,
                             on_connection=lambda c: None, open_timeout=2, max_backoff=0.1)
    try:
        listener.start(wait=2)
        deadline = time.monotonic() + 5
        while "execution_error" not in calls and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        listener.close()
    assert "execution_error" in calls and calls.count("status") >= 2


def test_listener_survives_a_malformed_frame(replay_server) -> None:
    # A custom node's "status" with a list payload used to raise AttributeError in
    # the parser, which ended the listener thread for good (no reconnect).
    replay_server["frames"] = ['{"type": "status", "data": {"status": [1, 2]}}',
                               json.dumps({"type": "executing", "data": {"node": "3", "prompt_id": "p"}})]
    seen: list[str] = []
    listener = EventListener(ws_url(replay_server["url"], "x"), on_event=lambda e: seen.append(e.type),
                             on_connection=lambda c: None, open_timeout=2, max_backoff=0.1)
    try:
        listener.start(wait=2)
        deadline = time.monotonic() + 5
        while seen.count("executing") < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        listener.close()
    assert seen.count("executing") >= 2  # the frame after the bad one, on two connections


def test_listener_keeps_trying_a_dead_server() -> None:
    listener = EventListener("ws://127.0.0.1:9/ws?clientId=x", on_event=lambda e: None,
                             on_connection=lambda c: None, open_timeout=0.2, max_backoff=0.05)
    started = time.monotonic()
    assert listener.start(wait=0.3) is False
    assert time.monotonic() - started < 1.5
    listener.close()
    assert not listener.connected
