"""Pure parsing of ComfyUI's wire formats (no I/O; every function is testable alone).

Facts below were checked against real traffic in tests/recordings/captures and the
upstream sources named in the comments (Comfy-Org/ComfyUI ``server.py``,
``execution.py``, ``protocol.py``).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import struct
from typing import Any, Iterable

from comfy_gen.comfyui import events as ev
from comfy_gen.comfyui._types import OUTPUT_KINDS, OutputFile, QueueItem, QueueState
from comfy_gen.errors import PromptRejected

# --- WebSocket text messages -------------------------------------------------


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _strs(values: Iterable[Any] | None) -> tuple[str, ...]:
    return tuple(str(v) for v in (values or ()))


def parse_message(msg: Any) -> ev.Event | None:
    """One ws text message (already JSON-decoded) -> typed event, or None for
    types we do not model (progress_state, feature_flags, custom node chatter)."""
    if not isinstance(msg, dict):
        return None
    kind = msg.get("type")
    data = msg.get("data")
    if not isinstance(kind, str) or not isinstance(data, dict):
        return None
    pid = _str_or_none(data.get("prompt_id"))
    if kind == "status":
        # server.py send_status: {"status": {"exec_info": {"queue_remaining": N}}, "sid"?}
        info = (data.get("status") or {}).get("exec_info") or {}
        return ev.Status(queue_remaining=int(info.get("queue_remaining") or 0),
                         sid=_str_or_none(data.get("sid")))
    if kind == "execution_start":
        return ev.ExecutionStart(prompt_id=pid, timestamp=data.get("timestamp"))
    if kind == "execution_cached":
        return ev.ExecutionCached(prompt_id=pid, nodes=_strs(data.get("nodes")),
                                  timestamp=data.get("timestamp"))
    if kind == "executing":
        # After a reconnect mid-job the server replays {"node": "3"} with no
        # prompt_id (server.py websocket_handler, "last_node_id"): prompt_id stays None.
        return ev.Executing(prompt_id=pid, node=_str_or_none(data.get("node")),
                            display_node=_str_or_none(data.get("display_node")))
    if kind == "progress":
        return ev.Progress(prompt_id=pid, node=_str_or_none(data.get("node")),
                           step=int(data.get("value") or 0), max=int(data.get("max") or 0))
    if kind == "executed":
        output = data.get("output")
        return ev.Executed(prompt_id=pid, node=_str_or_none(data.get("node")),
                           display_node=_str_or_none(data.get("display_node")),
                           output=output if isinstance(output, dict) else {})
    if kind == "execution_success":
        return ev.ExecutionSuccess(prompt_id=pid, timestamp=data.get("timestamp"))
    if kind == "execution_error":
        return ev.ExecutionError(
            prompt_id=pid, node_id=_str_or_none(data.get("node_id")),
            node_type=_str_or_none(data.get("node_type")),
            exception_type=_str_or_none(data.get("exception_type")),
            exception_message=_str_or_none(data.get("exception_message")),
            traceback=_strs(data.get("traceback")), executed=_strs(data.get("executed")),
            timestamp=data.get("timestamp"))
    if kind == "execution_interrupted":
        return ev.ExecutionInterrupted(
            prompt_id=pid, node_id=_str_or_none(data.get("node_id")),
            node_type=_str_or_none(data.get("node_type")), executed=_strs(data.get("executed")),
            timestamp=data.get("timestamp"))
    return None


def parse_text_frame(text: str | bytes) -> ev.Event | None:
    """A raw text frame -> event; garbage yields None rather than an exception."""
    try:
        return parse_message(json.loads(text))
    except (ValueError, TypeError, AttributeError):  # e.g. "status": [..] from a custom node
        return None


# --- WebSocket binary frames ---------------------------------------------------

# server.py BinaryEventTypes: PREVIEW_IMAGE = 1, UNENCODED_PREVIEW_IMAGE = 2, TEXT = 3,
# PREVIEW_IMAGE_WITH_METADATA = 4. encode_bytes() prefixes a big-endian u32 event type.
PREVIEW_IMAGE = 1
TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4
# server.py send_image(): image type 1 = JPEG, 2 = PNG, as a big-endian u32.
_PREVIEW_FORMATS = {1: "image/jpeg", 2: "image/png"}


def parse_binary_frame(frame: bytes) -> ev.Preview | None:
    """A binary ws frame -> Preview, or None for TEXT (3) and unknown/short frames.

    Event 1: ``[u32 1][u32 fmt][image]`` (server.py ``send_image``); no prompt id, so
    the caller attributes it to the prompt that is running.
    Event 4: ``[u32 4][u32 json_len][json metadata][image]`` (server.py
    ``send_image_with_metadata``), sent when the client negotiated
    ``supports_preview_metadata``; the metadata names node_id and prompt_id.
    """
    if len(frame) < 8:
        return None
    event, word = struct.unpack(">II", frame[:8])
    if event == PREVIEW_IMAGE:
        return ev.Preview(event=event, mime=_PREVIEW_FORMATS.get(word, "application/octet-stream"),
                          image=bytes(frame[8:]))
    if event == PREVIEW_IMAGE_WITH_METADATA:
        end = 8 + word
        if end > len(frame):
            return None
        try:
            meta = json.loads(frame[8:end].decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        if not isinstance(meta, dict):
            return None
        return ev.Preview(prompt_id=_str_or_none(meta.get("prompt_id")), event=event,
                          node_id=_str_or_none(meta.get("node_id")),
                          mime=str(meta.get("image_type") or "image/jpeg"),
                          image=bytes(frame[end:]), metadata=meta)
    return None


class ProgressClock:
    """Adds ``eta_seconds`` to Progress events: elapsed since the node started,
    divided by steps done, times steps left. Pure given the ``now`` passed in."""

    def __init__(self) -> None:
        self._started: dict[tuple[str | None, str | None], float] = {}

    def note(self, event: ev.Event, now: float) -> ev.Event:
        if isinstance(event, ev.Executing) and event.node is not None:
            self._started[(event.prompt_id, event.node)] = now
            return event
        if isinstance(event, ev.Progress):
            key = (event.prompt_id, event.node)
            # No `executing` seen (e.g. joined mid-node): start the clock here.
            start = self._started.setdefault(key, now)
            if event.step > 0 and event.max >= event.step and now > start:
                eta = (now - start) / event.step * (event.max - event.step)
                return dataclasses.replace(event, eta_seconds=round(eta, 3))
        if isinstance(event, (ev.ExecutionSuccess, ev.ExecutionError, ev.ExecutionInterrupted)):
            for key in [k for k in self._started if k[0] == event.prompt_id]:
                del self._started[key]
        return event


# --- POST /prompt errors -----------------------------------------------------

_NOT_IN_LIST = re.compile(r"not in (\[.*\])\s*$", re.S)
_NODE_ID = re.compile(r"Node ID '#([^']+)'")
_NODE_CLASS = re.compile(r"node (\S+) does not exist")


def combo_choices(spec: Any) -> list[str] | None:
    """Choices of a combo input spec, in either form object_info uses:
    legacy ``[[choices...], {...}]`` or V3 ``["COMBO", {"options": [...]}]``."""
    if not isinstance(spec, (list, tuple)) or not spec:
        return None
    head = spec[0]
    if isinstance(head, (list, tuple)):
        return [str(c) for c in head]
    if head == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        options = spec[1].get("options")
        if isinstance(options, (list, tuple)):
            return [str(c) for c in options]
    return None


def _allowed(error: dict[str, Any]) -> list[Any] | None:
    extra = error.get("extra_info") or {}
    if error.get("type") == "value_not_in_list":
        choices = combo_choices(extra.get("input_config"))
        if choices is not None:
            return choices
        # execution.py validate_inputs: "{x}: '{val}' not in {list_info}"; long lists
        # are written "(list of length N)" and cannot be recovered.
        match = _NOT_IN_LIST.search(str(error.get("details") or ""))
        if match:
            try:
                value = ast.literal_eval(match.group(1))
            except (ValueError, SyntaxError):
                return None
            return list(value) if isinstance(value, (list, tuple)) else None
    return None


def flatten_node_errors(node_errors: Any) -> list[dict[str, Any]]:
    """``{node_id: {errors: [...], class_type}}`` -> one flat dict per error."""
    flat: list[dict[str, Any]] = []
    if not isinstance(node_errors, dict):
        return flat
    for node_id, entry in node_errors.items():
        entry = entry if isinstance(entry, dict) else {}
        for error in entry.get("errors") or []:
            if not isinstance(error, dict):
                continue
            extra = error.get("extra_info") or {}
            flat.append({
                "node_id": str(node_id),
                "class_type": entry.get("class_type"),
                "type": error.get("type"),
                "message": error.get("message"),
                "details": error.get("details"),
                "input_name": extra.get("input_name"),
                "received_value": extra.get("received_value"),
                "allowed": _allowed(error),
            })
    return flat


def prompt_rejection(body: Any, *, status: int, prompt_id: str | None,
                     url: str | None = None) -> PromptRejected:
    """Build PromptRejected from a 400 body, or from a 200 body with node_errors."""
    body = body if isinstance(body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    node_errors = flatten_node_errors(body.get("node_errors"))
    error_type = error.get("type") if error else ("partial" if status == 200 else None)
    if not node_errors and error:
        # invalid_prompt names the node only in text: "Cannot execute because node
        # X does not exist." / details "Node ID '#12'" (execution.py validate_prompt).
        node = _NODE_ID.search(str(error.get("details") or ""))
        klass = _NODE_CLASS.search(str(error.get("message") or ""))
        if node or klass:
            node_errors = [{
                "node_id": node.group(1) if node else None,
                "class_type": klass.group(1) if klass else None,
                "type": error.get("type"), "message": error.get("message"),
                "details": error.get("details"), "input_name": None,
                "received_value": None, "allowed": None,
            }]
    if status == 200:
        message = (f"ComfyUI accepted only part of the prompt: {len(node_errors)} node error(s); "
                   f"the valid outputs run as {prompt_id}")
    else:
        text = error.get("message") or f"HTTP {status}"
        details = error.get("details")
        message = f"ComfyUI rejected the prompt: {text}"
        if details and not node_errors:
            message += f" ({details})"
    return PromptRejected(message, error_type=error_type, node_errors=node_errors,
                          partial=status == 200, prompt_id=prompt_id, url=url)


# --- /queue and /history -------------------------------------------------------


def _queue_items(rows: Any) -> list[QueueItem]:
    items: list[QueueItem] = []
    for row in rows or []:
        # item = [number, prompt_id, prompt, extra_data, outputs_to_execute]
        if not isinstance(row, (list, tuple)) or len(row) < 2:
            continue
        extra = row[3] if len(row) > 3 and isinstance(row[3], dict) else {}
        items.append(QueueItem(number=row[0], prompt_id=str(row[1]),
                               client_id=_str_or_none(extra.get("client_id"))))
    # queue_pending comes in heap order; sort so the next job is first.
    return sorted(items, key=lambda i: i.number)


def parse_queue(body: Any) -> QueueState:
    body = body if isinstance(body, dict) else {}
    return QueueState(running=_queue_items(body.get("queue_running")),
                      pending=_queue_items(body.get("queue_pending")))


def outputs_from_history(entry: dict[str, Any]) -> list[OutputFile]:
    """Files listed under ``outputs[node_id].{images,gifs,videos}``."""
    files: list[OutputFile] = []
    outputs = entry.get("outputs") or {}
    for node_id, ui in outputs.items():
        if not isinstance(ui, dict):
            continue
        for kind in OUTPUT_KINDS:
            for item in ui.get(kind) or []:
                if isinstance(item, dict) and item.get("filename"):
                    files.append(OutputFile(node_id=str(node_id), filename=str(item["filename"]),
                                            subfolder=str(item.get("subfolder") or ""),
                                            type=str(item.get("type") or "output"), kind=kind))
    return files


def history_messages(entry: dict[str, Any]) -> list[list[Any]]:
    status = entry.get("status") or {}
    return [list(m) for m in status.get("messages") or [] if isinstance(m, (list, tuple))]


def history_outcome(entry: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """("success" | "error" | "interrupted", payload of the deciding message).

    Errored and interrupted jobs both store status_str "error"; only the last
    status message tells them apart (execution.py PromptExecutor.add_message).
    """
    status = entry.get("status") or {}
    last_type, last_data = "", {}
    for msg in reversed(history_messages(entry)):
        if len(msg) >= 2 and msg[0] in ev.TERMINAL_TYPES:
            last_type, last_data = str(msg[0]), msg[1] if isinstance(msg[1], dict) else {}
            break
    if last_type == "execution_interrupted":
        return "interrupted", last_data
    if last_type == "execution_error":
        return "error", last_data
    if status.get("status_str") == "success" or (status.get("completed") and not last_type):
        return "success", last_data
    return "error", last_data


def is_cached(entry: dict[str, Any]) -> bool:
    """True when every output node of the run came from the cache."""
    cached: set[str] = set()
    for msg in history_messages(entry):
        if len(msg) >= 2 and msg[0] == "execution_cached" and isinstance(msg[1], dict):
            cached.update(str(n) for n in msg[1].get("nodes") or [])
    prompt = entry.get("prompt") or []
    targets = prompt[4] if isinstance(prompt, (list, tuple)) and len(prompt) > 4 else []
    return bool(targets) and {str(t) for t in targets} <= cached


def jobs_api_state(body: Any) -> str | None:
    """Status of a ``/api/jobs/{id}`` answer (newer ComfyUI): "pending", "running",
    "done" or None when unknown. Only the state is used; results come from /history."""
    status = str((body or {}).get("status") or "").lower() if isinstance(body, dict) else ""
    if status in {"pending", "queued"}:
        return "pending"
    if status in {"in_progress", "running"}:
        return "running"
    if status in {"completed", "success", "failed", "error", "cancelled", "interrupted"}:
        return "done"
    return None
