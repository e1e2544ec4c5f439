"""A test WebSocket client that records everything a socket receives."""

from __future__ import annotations

import json
import struct
import threading
import time
from typing import Any, Callable

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


class Recorder:
    """Connects to the emulator's /ws and collects messages on a background thread.

    Each entry is ``("text", msg_dict)`` or ``("binary", event_type, payload)``.
    ``closed_without_frame`` becomes True when the TCP connection drops with no
    close frame (what a dying server does).
    """

    def __init__(self, url: str, client_id: str | None = None, *, first: dict[str, Any] | None = None) -> None:
        target = url if client_id is None else f"{url}?clientId={client_id}"
        self.ws = connect(target, open_timeout=5, max_size=None)
        if first is not None:
            self.ws.send(json.dumps(first))
        self.entries: list[tuple[Any, ...]] = []
        self.closed = False
        self.closed_without_frame = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for data in self.ws:
                with self._lock:
                    if isinstance(data, bytes):
                        event = struct.unpack(">I", data[:4])[0]
                        self.entries.append(("binary", event, data))
                    else:
                        self.entries.append(("text", json.loads(data)))
        except ConnectionClosed as exc:
            self.closed_without_frame = exc.rcvd is None
        finally:
            self.closed = True

    def texts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [e[1] for e in self.entries if e[0] == "text"]

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0,
                 count: int = 1) -> dict[str, Any]:
        """Block until ``count`` text messages satisfy ``predicate``; return the last."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [m for m in self.texts() if predicate(m)]
            if len(hits) >= count:
                return hits[count - 1]
            if self.closed:
                break
            time.sleep(0.003)
        raise AssertionError(f"timed out waiting; got {[m['type'] for m in self.texts()]}")

    def wait_done(self, prompt_id: str, timeout: float = 10.0) -> None:
        self.wait_for(lambda m: m["type"] == "executing" and m["data"].get("node") is None
                      and m["data"].get("prompt_id") == prompt_id, timeout)

    def wait_closed(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)

    def close(self) -> None:
        self.ws.close()
        self._thread.join(2)


def summary(entries: list[tuple[Any, ...]]) -> list[str]:
    """Message kinds in order: ``executing:null`` for the end marker, ``binary:N`` for frames."""
    out = []
    for entry in entries:
        if entry[0] == "binary":
            out.append(f"binary:{entry[1]}")
        else:
            msg = entry[1]
            kind = msg["type"]
            if kind == "executing" and msg["data"].get("node") is None:
                kind = "executing:null"
            out.append(kind)
    return out


def recorded_entries(cap: dict[str, Any]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for m in cap["messages"]:
        if m["kind"] == "binary":
            out.append(("binary", m["binary"]["event_type"], b""))
        elif m["kind"] == "text":
            out.append(("text", m["msg"]))
    return out
