"""The WebSocket listener: one background thread per client, reconnecting forever
(with a bounded backoff) until closed. The one place websockets errors are handled.

ComfyUI sends per-prompt events only to the socket whose ``clientId`` equals the
prompt's ``client_id`` (server.py ``send_sync(..., sid)``), so the listener must be
connected with the same id the prompts are queued with, before they are queued.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable
from urllib.parse import quote, urlsplit, urlunsplit

from comfy_gen.comfyui import _protocol
from comfy_gen.comfyui.events import Event
from comfy_gen.urls import redact_text, redact_url

log = logging.getLogger(__name__)

#: Sent right after connecting so previews come as event 4 (with prompt_id);
#: server.py websocket_handler answers with its own feature_flags message.
FEATURE_FLAGS = {"type": "feature_flags", "data": {"supports_preview_metadata": True}}


def ws_url(base_url: str, client_id: str) -> str:
    """``http://host:port/prefix`` -> ``ws://host:port/prefix/ws?clientId=<id>``."""
    parts = urlsplit(base_url.rstrip("/"))
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path + "/ws", f"clientId={quote(client_id)}", ""))


class EventListener:
    """Receives ws frames in a daemon thread and hands parsed events to ``on_event``.

    ``on_connection(connected)`` is called on every connect and disconnect, so
    waiters can re-check their job after a gap (events sent meanwhile are lost).
    """

    def __init__(self, url: str, *, on_event: Callable[[Event], None],
                 on_connection: Callable[[bool], None], open_timeout: float = 5.0,
                 max_backoff: float = 2.0) -> None:
        self.url = url
        self.display_url = redact_url(url)
        self._on_event = on_event
        self._on_connection = on_connection
        self._open_timeout = open_timeout
        self._max_backoff = max_backoff
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._ws: Any = None
        self._thread: threading.Thread | None = None
        self.generation = 0  # successful connections so far

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self, wait: float | None = None) -> bool:
        """Start the thread (once); wait up to ``wait`` s for the first connection."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="comfyui-ws", daemon=True)
                self._thread.start()
        if wait:
            self._connected.wait(wait)
        return self.connected

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            ws, thread = self._ws, self._thread
        if ws is not None:
            try:
                ws.close()
            except Exception:  # noqa: BLE001 - closing a dead socket may fail any way
                pass
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)

    # --- the thread ---

    def _run(self) -> None:
        from websockets.exceptions import WebSocketException
        from websockets.sync.client import connect

        failures = 0
        while not self._stop.is_set():
            try:
                ws = connect(self.url, open_timeout=self._open_timeout, close_timeout=1,
                             max_size=64 * 2**20, ping_interval=20, ping_timeout=20)
            except (OSError, TimeoutError, WebSocketException) as exc:
                failures += 1
                delay = min(self._max_backoff, 0.05 * 2 ** min(failures, 10))
                log.debug("ws connect to %s failed (%s); retry in %.2fs", self.display_url, redact_text(str(exc)), delay)
                self._stop.wait(delay)
                continue
            failures = 0
            with self._lock:
                self._ws = ws
            if self._stop.is_set():
                ws.close()
                break
            self.generation += 1
            self._connected.set()
            self._notify(True)
            try:
                ws.send(json.dumps(FEATURE_FLAGS))
                for frame in ws:
                    self._dispatch(frame)
            except (OSError, WebSocketException) as exc:
                log.info("ws connection to %s lost: %s", self.display_url, redact_text(str(exc)))
            finally:
                self._connected.clear()
                with self._lock:
                    self._ws = None
                try:
                    ws.close()
                except Exception:  # noqa: BLE001
                    pass
            if not self._stop.is_set():
                self._notify(False)
                self._stop.wait(0.05)

    def _dispatch(self, frame: str | bytes) -> None:
        event: Event | None = None
        try:
            if isinstance(frame, (bytes, bytearray, memoryview)):
                event = _protocol.parse_binary_frame(bytes(frame))
            else:
                event = _protocol.parse_text_frame(frame)
            if event is not None:
                self._on_event(event)
        except Exception:  # noqa: BLE001 - a bad frame or handler must not kill the listener
            log.exception("ws event handling failed for %s", event.type if event else "a frame")

    def _notify(self, connected: bool) -> None:
        try:
            self._on_connection(connected)
        except Exception:  # noqa: BLE001
            log.exception("ws connection callback failed")
