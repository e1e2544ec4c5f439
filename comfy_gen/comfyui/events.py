"""Typed ComfyUI WebSocket events.

Each class mirrors one server message (names and fields follow ComfyUI's own
``server.send_sync`` payloads; see tests/recordings/PROTOCOL.md). Parsing lives in
``_protocol.parse_message`` / ``parse_binary_frame``; these are plain values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """Base class: every event names its ComfyUI message type in ``type``."""

    type: str = field(init=False, default="")
    prompt_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (binary preview bytes are summarised, not included)."""
        data = dataclasses.asdict(self)
        data["type"] = self.type
        return data


@dataclass(frozen=True)
class Status(Event):
    """Queue size broadcast (``status``); ``sid`` is set only on connect."""

    type: str = field(init=False, default="status")
    queue_remaining: int = 0
    sid: str | None = None


@dataclass(frozen=True)
class ExecutionStart(Event):
    type: str = field(init=False, default="execution_start")
    timestamp: int | None = None


@dataclass(frozen=True)
class ExecutionCached(Event):
    """Nodes whose outputs came from the cache and will not run."""

    type: str = field(init=False, default="execution_cached")
    nodes: tuple[str, ...] = ()
    timestamp: int | None = None


@dataclass(frozen=True)
class Executing(Event):
    """A node starts running; ``node is None`` means the prompt is finished."""

    type: str = field(init=False, default="executing")
    node: str | None = None
    display_node: str | None = None

    @property
    def is_done(self) -> bool:
        return self.node is None and self.prompt_id is not None


@dataclass(frozen=True)
class Progress(Event):
    """One sampler step. ``eta_seconds`` is estimated by the client from elapsed/step."""

    type: str = field(init=False, default="progress")
    node: str | None = None
    step: int = 0
    max: int = 0
    eta_seconds: float | None = None

    @property
    def fraction(self) -> float:
        return self.step / self.max if self.max else 0.0


@dataclass(frozen=True)
class Executed(Event):
    """An output node finished; ``output`` holds its ``images``/``gifs``/... lists."""

    type: str = field(init=False, default="executed")
    node: str | None = None
    display_node: str | None = None
    output: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecutionSuccess(Event):
    type: str = field(init=False, default="execution_success")
    timestamp: int | None = None


@dataclass(frozen=True)
class ExecutionError(Event):
    type: str = field(init=False, default="execution_error")
    node_id: str | None = None
    node_type: str | None = None
    exception_type: str | None = None
    exception_message: str | None = None
    traceback: tuple[str, ...] = ()
    executed: tuple[str, ...] = ()
    timestamp: int | None = None


@dataclass(frozen=True)
class ExecutionInterrupted(Event):
    type: str = field(init=False, default="execution_interrupted")
    node_id: str | None = None
    node_type: str | None = None
    executed: tuple[str, ...] = ()
    timestamp: int | None = None


@dataclass(frozen=True)
class Preview(Event):
    """A binary preview frame (only when the server runs with --preview-method)."""

    type: str = field(init=False, default="preview")
    event: int = 1
    node_id: str | None = None
    mime: str = "image/jpeg"
    image: bytes = field(default=b"", repr=False)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type, "prompt_id": self.prompt_id, "event": self.event,
            "node_id": self.node_id, "mime": self.mime, "image_bytes": len(self.image),
            "metadata": dict(self.metadata),
        }


#: ws message type -> event class, for the text messages we model.
EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (Status, ExecutionStart, ExecutionCached, Executing, Progress, Executed,
                ExecutionSuccess, ExecutionError, ExecutionInterrupted)
}

#: Events after which the server sends the final ``executing{node:null}``.
TERMINAL_TYPES = frozenset({"execution_success", "execution_error", "execution_interrupted"})

__all__ = [
    "EVENT_TYPES", "Event", "Executed", "Executing", "ExecutionCached", "ExecutionError",
    "ExecutionInterrupted", "ExecutionStart", "ExecutionSuccess", "Preview", "Progress",
    "Status", "TERMINAL_TYPES",
]
