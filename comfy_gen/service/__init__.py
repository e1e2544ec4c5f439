"""The generation service: one image, rendered, validated, kept and published.

Every face adapts to ``generate(GenerateRequest, *, settings, on_event, cancel)``
in a few lines: the CLI's ``generate``/``reproduce`` (and through it the root
``generate.py``), the HTTP API and the MCP server. A request is typed and
frozen; option parsing (click flags, presets, JSON bodies) happens at the edge.

Progress and messages go out through ``on_event`` (ComfyUI events plus this
module's ``Notice``/``WarningNotice``/``AttemptFinished``), on the calling
thread. A ``CancelToken`` set from any thread cancels only our prompt on
ComfyUI, removes partial output and raises ``ExecutionInterrupted``; Ctrl-C
(KeyboardInterrupt) does the same and propagates as itself. Renders hold the
backend's GPU bound (``comfy_gen.gate.GpuGate``), shared with the flow.
"""

from __future__ import annotations

from comfy_gen.service._job import generate
from comfy_gen.service.model import (AttemptFinished, CancelToken, EventCallback, GenerateRequest,
                                     GenerateResult, InputImage, Notice, Organization, ResultStatus,
                                     ValidationOptions, WarningNotice)

__all__ = ["AttemptFinished", "CancelToken", "EventCallback", "GenerateRequest", "GenerateResult", "InputImage",
           "Notice", "Organization", "ResultStatus", "ValidationOptions", "WarningNotice", "generate"]
