"""ComfyUI client: HTTP with bounded retries, WebSocket events, history polling.

Protocol facts come from recorded real traffic (tests/recordings/PROTOCOL.md).
Client ids are ``comfy-gen-<uuid4>`` (``CLIENT_ID_PREFIX``) so that any comfy-gen
process can tell which queued jobs were submitted by comfy-gen.
"""

from comfy_gen.comfyui import events
from comfy_gen.comfyui._client import LOADER_INPUTS, MODEL_FOLDERS, ComfyUIClient, new_client_id
from comfy_gen.comfyui._types import (
    CLIENT_ID_PREFIX,
    OUTPUT_KINDS,
    JobResult,
    OutputFile,
    QueuedPrompt,
    QueueItem,
    QueueState,
)

__all__ = [
    "CLIENT_ID_PREFIX", "ComfyUIClient", "JobResult", "LOADER_INPUTS", "MODEL_FOLDERS",
    "OUTPUT_KINDS", "OutputFile", "QueueItem", "QueueState", "QueuedPrompt", "events",
    "new_client_id",
]
