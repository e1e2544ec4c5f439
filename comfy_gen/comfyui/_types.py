"""Value types returned by ComfyUIClient."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

#: Keys of a node's UI output that hold files (ComfyUI SaveImage/PreviewImage
#: use ``images``; SaveAnimatedWEBP and VHS use ``gifs``/``videos``).
OUTPUT_KINDS: tuple[str, ...] = ("images", "gifs", "videos")

#: Every client id comfy-gen makes starts with this, so ``cancel --all-mine`` can
#: recognise jobs submitted by any comfy-gen process (each has its own id).
CLIENT_ID_PREFIX = "comfy-gen-"


@dataclass(frozen=True)
class OutputFile:
    """One file a job produced, as ``/view`` addresses it."""

    node_id: str
    filename: str
    subfolder: str = ""
    type: str = "output"
    kind: str = "images"

    def to_dict(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "filename": self.filename, "subfolder": self.subfolder,
                "type": self.type, "kind": self.kind}


@dataclass(frozen=True)
class QueuedPrompt:
    """What POST /prompt answered: our prompt id and the server's queue number."""

    prompt_id: str
    number: float


@dataclass(frozen=True)
class QueueItem:
    number: float
    prompt_id: str
    client_id: str | None = None

    @property
    def is_comfy_gen(self) -> bool:
        return bool(self.client_id and self.client_id.startswith(CLIENT_ID_PREFIX))

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "prompt_id": self.prompt_id, "client_id": self.client_id}


@dataclass(frozen=True)
class QueueState:
    running: list[QueueItem] = field(default_factory=list)
    pending: list[QueueItem] = field(default_factory=list)

    def find(self, prompt_id: str) -> Literal["running", "pending"] | None:
        if any(i.prompt_id == prompt_id for i in self.running):
            return "running"
        if any(i.prompt_id == prompt_id for i in self.pending):
            return "pending"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"running": [i.to_dict() for i in self.running],
                "pending": [i.to_dict() for i in self.pending]}


@dataclass(frozen=True)
class JobResult:
    """A finished, successful job. ``cached`` is True when no output node re-ran."""

    prompt_id: str
    status: str
    outputs: list[OutputFile]
    elapsed: float
    cached: bool = False
    messages: list[list[Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"prompt_id": self.prompt_id, "status": self.status,
                "outputs": [o.to_dict() for o in self.outputs], "elapsed": self.elapsed,
                "cached": self.cached, "messages": self.messages}
