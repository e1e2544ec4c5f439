"""WebSocket clients: the registry, routing by client id, and binary frames.

As in ComfyUI's server.py, a message for a prompt goes only to the socket whose
sid equals the prompt's client_id, and ``sid=None`` broadcasts to everyone. A
second socket with the same sid replaces the first (reconnect, captures/282).
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

#: ComfyUI's BinaryEventTypes (server.py).
PREVIEW_IMAGE = 1
UNENCODED_PREVIEW_IMAGE = 2
TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4

#: What the server answers to a client's feature_flags message (captures/283).
SERVER_FEATURES: dict[str, Any] = {"supports_preview_metadata": True, "max_upload_size": 104857600}


def preview_frame(jpeg: bytes) -> bytes:
    """Event 1: ``[u32 1][u32 format 1=JPEG][image]`` (captures/391)."""
    return struct.pack(">II", PREVIEW_IMAGE, 1) + jpeg


def preview_frame_with_metadata(jpeg: bytes, metadata: dict[str, Any]) -> bytes:
    """Event 4: ``[u32 4][u32 len][json metadata][image]`` (captures/392)."""
    meta = json.dumps(metadata).encode("utf-8")
    return struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(meta)) + meta + jpeg


@dataclass(eq=False)
class Client:
    sid: str
    ws: web.WebSocketResponse
    request: web.Request
    flags: dict[str, Any] = field(default_factory=dict)
    sent: int = 0

    @property
    def wants_metadata(self) -> bool:
        return bool(self.flags.get("supports_preview_metadata"))


class Hub:
    """All connected sockets, with the ws_drop_after fault applied on send."""

    def __init__(self, faults: Any) -> None:
        self.clients: dict[str, Client] = {}
        self.faults = faults

    def add(self, client: Client) -> None:
        self.clients[client.sid] = client

    def remove(self, client: Client) -> None:
        if self.clients.get(client.sid) is client:
            del self.clients[client.sid]

    def recipients(self, sid: str | None) -> list[Client]:
        if sid is None:
            return list(self.clients.values())
        client = self.clients.get(sid)
        return [client] if client else []

    async def send(self, event: str, data: Any, sid: str | None = None) -> None:
        message = json.dumps({"type": event, "data": data})
        for client in self.recipients(sid):
            await self._deliver(client, message)

    async def send_to(self, client: Client, event: str, data: Any) -> None:
        await self._deliver(client, json.dumps({"type": event, "data": data}))

    async def send_bytes(self, client: Client, payload: bytes) -> None:
        await self._deliver(client, payload)

    async def _deliver(self, client: Client, payload: str | bytes) -> None:
        if client.ws.closed:
            return
        try:
            if isinstance(payload, bytes):
                await client.ws.send_bytes(payload)
            else:
                await client.ws.send_str(payload)
        except (ConnectionError, RuntimeError) as exc:
            log.debug("ws send to %s failed: %s", client.sid, exc)
            self.remove(client)
            return
        client.sent += 1
        limit = self.faults.ws_drop_after
        if limit is not None and client.sent >= limit:
            self.drop(client)

    def drop(self, client: Client) -> None:
        """Cut the TCP connection without a close frame, as a dying server does."""
        self.remove(client)
        transport = client.request.transport
        if transport is not None:
            transport.abort()

    def drop_all(self) -> None:
        for client in list(self.clients.values()):
            self.drop(client)
