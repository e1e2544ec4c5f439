"""Runs one prompt the way ComfyUI's PromptExecutor does, minus the model.

Order of nodes, the output cache, progress_state bookkeeping and every ws
message follow execution.py and the recordings (captures/190-194, 280-282,
391-392). The cache keeps the outputs of the most recent prompt only, keyed by
an input signature, so an identical re-run is fully cached and a new seed
re-runs only the sampler and what follows it.

Model switches: a real ComfyUI reloads weights when a job's checkpoint (or
UNET) or LoRA set differs from the previous job's, which costs seconds per
switch on a GPU. A job whose ``model_set`` differs from what the last job
loaded sleeps ``model_switch_time`` before its nodes run and is counted in
``Stats.model_switches``; a job that names no model (an image-only graph)
leaves the loaded set alone, as ComfyUI keeps weights until it needs the memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfy_gen.emulator.catalog import IMAGE_INPUT_NODES, Catalog
from comfy_gen.emulator.faults import Faults
from comfy_gen.emulator.hold import Holds
from comfy_gen.emulator import media_nodes  # noqa: F401  (registers the video and segment-anything nodes)
from comfy_gen.emulator.nodes import EVALUATORS, Latent, NodeFailure, NodeResult, passthrough
from comfy_gen.emulator.render import Picture, preview_jpeg
from comfy_gen.emulator.state import QueueItem, Stats
from comfy_gen.emulator.validation import is_link
from comfy_gen.emulator.ws import Hub, preview_frame, preview_frame_with_metadata


#: Inputs naming the weights a job loads, and the extra inputs that change them.
_MODEL_INPUTS = ("ckpt_name", "unet_name", "lora_name")
_LORA_STRENGTHS = ("strength_model", "strength_clip")


def model_set(prompt: dict[str, Any]) -> list[str]:
    """The checkpoints/UNETs and LoRAs (with strengths: a new strength re-patches
    the weights) a prompt loads, sorted, as ``"<input>=<file>[@strengths]"``."""
    found: set[str] = set()
    for node in prompt.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        for name in _MODEL_INPUTS:
            value = inputs.get(name)
            if isinstance(value, str):
                entry = f"{name}={value}"
                if name == "lora_name":
                    entry += "@" + "/".join(str(inputs.get(k)) for k in _LORA_STRENGTHS if k in inputs)
                found.add(entry)
    return sorted(found)


class Interrupted(Exception):
    """The interrupt flag was seen at a node start or a sampler step."""


@dataclass
class Outcome:
    status: str  # success | error | interrupted
    history: dict[str, Any]
    messages: list[list[Any]]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _format_value(value: Any) -> Any:
    if value is None or isinstance(value, (int, float, bool, str)):
        return value
    return str(value)


class Executor:
    """Executes prompts one at a time; holds the cache and the interrupt flag."""

    def __init__(self, catalog: Catalog, hub: Hub, faults: Faults, holds: Holds, *, output_dir: Path,
                 input_dir: Path, temp_dir: Path, step_time: float, previews: bool,
                 model_switch_time: float = 0.0, stats: Stats | None = None) -> None:
        self.catalog = catalog
        self.hub = hub
        self.faults = faults
        self.holds = holds
        self.output_dir, self.input_dir, self.temp_dir = output_dir, input_dir, temp_dir
        self.default_step_time = step_time
        self.default_model_switch_time = model_switch_time
        self.stats = stats if stats is not None else Stats()
        self.loaded_models: list[str] | None = None   # what the last job loaded; None: nothing yet
        self.previews = previews
        self.cache: dict[str, NodeResult] = {}
        self.interrupt_requested = False
        self.client_id: str | None = None
        self.last_node_id: str | None = None

    def reset(self) -> None:
        self.cache.clear()
        self.interrupt_requested = False
        self.client_id = None
        self.last_node_id = None
        self.loaded_models = None  # a restarted server has no model in memory

    async def execute(self, item: QueueItem) -> Outcome:
        return await _Run(self, item).run()


class _Run:
    """One execution of one queue item (kept apart so state cannot leak between jobs)."""

    def __init__(self, executor: Executor, item: QueueItem) -> None:
        self.ex = executor
        self.item = item
        self.prompt = item.prompt
        self.pid = item.prompt_id
        self.client_id = item.client_id
        self.messages: list[list[Any]] = []
        self.progress: dict[str, dict[str, Any]] = {}
        self.values: dict[str, NodeResult] = {}
        self.executed: list[str] = []
        self.ui: dict[str, Any] = {}
        self.meta: dict[str, Any] = {}
        self.current: str | None = None
        self.hold_checked = False  # a job is held at most once, at its first sampler
        # RunContext fields for the node evaluators.
        self.input_dir, self.output_dir, self.temp_dir = executor.input_dir, executor.output_dir, executor.temp_dir
        self.faults = executor.faults
        pnginfo = item.extra_data.get("extra_pnginfo")
        self.text_chunks: dict[str, Any] = {"prompt": self.prompt}
        if isinstance(pnginfo, dict):
            self.text_chunks.update(pnginfo)

    async def run(self) -> Outcome:
        ex = self.ex
        ex.interrupt_requested = False  # a stale interrupt does not hit the next job
        ex.client_id = self.client_id
        await self.add_message("execution_start", {"prompt_id": self.pid})
        sigs = {node_id: self.signature(node_id, set()) for node_id in self.prompt}
        cached = {n for n, s in sigs.items() if s in ex.cache}
        await self.add_message("execution_cached", {"nodes": [n for n in self.prompt if n in cached],
                                                    "prompt_id": self.pid})
        self.values = {n: ex.cache[sigs[n]] for n in self.prompt if n in cached}
        order = _ExecutionList(self.prompt, self.ex.catalog, cached)
        for out_id in self.item.outputs:
            order.add_node(out_id)
        status = "success"
        try:
            await self.load_models()
            while (node_id := order.pick()) is not None:
                sig = sigs[node_id]
                if node_id in cached and sig in ex.cache:
                    await self.emit_cached_output(node_id, ex.cache[sig])
                else:
                    ex.cache[sig] = await self.run_node(node_id)
                order.complete(node_id)
        except Interrupted:
            status = "interrupted"
            await self.add_message("execution_interrupted", {
                "prompt_id": self.pid, "node_id": self.current,
                "node_type": self.prompt[self.current]["class_type"] if self.current else None,
                "executed": sorted(self.executed)}, broadcast=True)
        except NodeFailure as exc:
            status = "error"
            await self.add_message("execution_error", self.error_payload(exc))
        else:
            await self.add_message("execution_success", {"prompt_id": self.pid})
        keep = set(sigs.values())
        for sig in [s for s in ex.cache if s not in keep]:
            del ex.cache[sig]  # only the latest prompt's outputs stay cached
        ex.last_node_id = None
        return Outcome(status, {"outputs": self.ui, "meta": self.meta}, self.messages)

    async def load_models(self) -> None:
        """Charge the model-switch time when this job needs other weights than the last one."""
        ex = self.ex
        models = model_set(self.prompt)
        if not models or models == ex.loaded_models:
            return
        ex.loaded_models = None  # an interrupted load leaves nothing usable loaded
        configured = ex.faults.model_switch_time
        remaining = ex.default_model_switch_time if configured is None else configured
        while remaining > 0:  # in slices, so /interrupt is honoured during a long load
            await asyncio.sleep(min(remaining, 0.05))
            remaining -= 0.05
            self.check_interrupt()
        ex.loaded_models = models
        ex.stats.model_switched(self.pid, models)

    async def add_message(self, event: str, data: dict[str, Any], broadcast: bool = False) -> None:
        data = {**data, "timestamp": _now_ms()}
        self.messages.append([event, data])
        if self.client_id is not None or broadcast:
            await self.ex.hub.send(event, data, self.client_id)

    async def send(self, event: str, data: dict[str, Any]) -> None:
        """Progress-type messages: to the client, or to everyone when there is none."""
        await self.ex.hub.send(event, data, self.client_id)

    def entry(self, node_id: str, value: Any, maximum: Any, state: str) -> None:
        self.progress[node_id] = {"value": value, "max": maximum, "state": state, "node_id": node_id,
                                  "prompt_id": self.pid, "display_node_id": node_id,
                                  "parent_node_id": None, "real_node_id": node_id}

    async def send_progress_state(self) -> None:
        await self.send("progress_state", {"prompt_id": self.pid, "nodes": dict(self.progress)})

    async def emit_cached_output(self, node_id: str, result: NodeResult) -> None:
        # A cached output node re-announces its old files; no new file is written.
        if self.client_id is not None:
            await self.ex.hub.send("executed", {"node": node_id, "display_node": node_id,
                                                "output": result.ui, "prompt_id": self.pid}, self.client_id)
        if result.ui:
            self.record_ui(node_id, result.ui)
        if node_id not in self.progress:
            self.entry(node_id, 1, 1, "finished")
        else:
            self.progress[node_id].update(state="finished", value=self.progress[node_id]["max"])
        self.values[node_id] = result
        await self.send_progress_state()

    def record_ui(self, node_id: str, ui: dict[str, Any]) -> None:
        self.ui[node_id] = ui
        self.meta[node_id] = {"node_id": node_id, "display_node": node_id, "parent_node": None,
                              "real_node_id": node_id}

    async def run_node(self, node_id: str) -> NodeResult:
        node = self.prompt[node_id]
        class_type = node["class_type"]
        self.current = node_id
        self.entry(node_id, 0.0, 1.0, "running")
        await self.send_progress_state()
        if self.client_id is not None:
            self.ex.last_node_id = node_id
            await self.ex.hub.send("executing", {"node": node_id, "display_node": node_id,
                                                 "prompt_id": self.pid}, self.client_id)
        self.check_interrupt()
        inputs = self.resolve_inputs(node)
        self.current_inputs = inputs
        if self.ex.faults.error_node_class and class_type == self.ex.faults.error_node_class:
            raise NodeFailure(f"Emulated failure in {class_type} (faults.error_node_class)",
                              "RuntimeError", [])
        evaluator = EVALUATORS.get(class_type)
        if evaluator is not None:
            result = await evaluator(self, inputs)
        else:
            spec = self.ex.catalog.raw(class_type)["input"]
            types = {k: v[0] for s in ("required", "optional") for k, v in spec.get(s, {}).items()}
            result = passthrough(inputs, types, self.ex.catalog.return_types(class_type))
            await asyncio.sleep(0)
        self.values[node_id] = result
        self.executed.append(node_id)
        if result.ui:
            self.record_ui(node_id, result.ui)
            if self.client_id is not None:
                await self.ex.hub.send("executed", {"node": node_id, "display_node": node_id,
                                                    "output": result.ui, "prompt_id": self.pid},
                                       self.client_id)
        self.progress[node_id].update(state="finished", value=self.progress[node_id]["max"])
        await self.send_progress_state()
        return result

    def resolve_inputs(self, node: dict[str, Any]) -> dict[str, Any]:
        resolved: dict[str, Any] = {}
        for name, value in node.get("inputs", {}).items():
            if is_link(value) and value[0] in self.values:
                outputs = self.values[value[0]].outputs
                resolved[name] = outputs[value[1]] if value[1] < len(outputs) else None
            elif not isinstance(value, list):
                resolved[name] = value
        return resolved

    def check_interrupt(self) -> None:
        if self.ex.interrupt_requested:
            self.ex.interrupt_requested = False
            raise Interrupted()

    async def sample(self, steps: int, latent: Latent) -> None:
        """Per-step progress (and previews) with the configured step time."""
        node_id = self.current or ""
        for step in range(1, steps + 1):
            if not self.hold_checked and step >= min(self.ex.holds.at_step, steps):
                self.hold_checked = True
                await self.ex.holds.at_sampler(self.pid)
                self.check_interrupt()  # an interrupt is what wakes a held job early
            step_time = self.ex.faults.step_time
            await asyncio.sleep(self.ex.default_step_time if step_time is None else step_time)
            self.check_interrupt()
            self.progress[node_id].update(value=step, max=steps, state="running")
            state = {"prompt_id": self.pid, "nodes": dict(self.progress)}
            progress = {"value": step, "max": steps, "prompt_id": self.pid, "node": node_id}
            clients = self.ex.hub.recipients(self.client_id)
            jpeg = b""
            if self.ex.previews and clients:
                picture = Picture(latent.width, latent.height, latent.seed or 0, latent.text)
                jpeg = await asyncio.to_thread(preview_jpeg, picture)
            for client in clients:
                # Metadata previews precede "progress"; legacy ones follow it (391/392).
                await self.ex.hub.send_to(client, "progress_state", state)
                if jpeg and client.wants_metadata:
                    meta = {"node_id": node_id, "prompt_id": self.pid, "display_node_id": node_id,
                            "parent_node_id": None, "real_node_id": node_id, "image_type": "image/jpeg"}
                    await self.ex.hub.send_bytes(client, preview_frame_with_metadata(jpeg, meta))
                await self.ex.hub.send_to(client, "progress", progress)
                if jpeg and not client.wants_metadata:
                    await self.ex.hub.send_bytes(client, preview_frame(jpeg))

    def error_payload(self, exc: NodeFailure) -> dict[str, Any]:
        node_id = self.current or ""
        inputs = dict(getattr(self, "current_inputs", {}))
        if node_id in self.prompt:  # hidden inputs show up too (captures/151)
            hidden = self.ex.catalog.raw(self.prompt[node_id]["class_type"])["input"].get("hidden", {})
            values = {"PROMPT": self.prompt, "UNIQUE_ID": node_id,
                      "EXTRA_PNGINFO": self.item.extra_data.get("extra_pnginfo")}
            for name, kind in hidden.items():
                if kind in values:
                    inputs[name] = values[kind]
        return {
            "prompt_id": self.pid, "node_id": node_id,
            "node_type": self.prompt[node_id]["class_type"] if node_id in self.prompt else None,
            "executed": sorted(self.executed),
            "exception_message": exc.message, "exception_type": exc.exception_type,
            "traceback": exc.traceback,
            "current_inputs": {k: [_format_value(v)] for k, v in inputs.items()},
            "current_outputs": list(self.values),
        }

    def signature(self, node_id: str, seen: set[str]) -> str:
        """A hash of class and inputs, links replaced by their source's signature."""
        try:
            node = self.prompt[node_id]
            if node_id in seen:
                raise ValueError("cycle")
            parts: list[Any] = [node["class_type"]]
            if node["class_type"] in IMAGE_INPUT_NODES:  # IS_CHANGED: the file's hash
                parts.append(_file_hash(self.ex.input_dir / str(node["inputs"].get("image", ""))))
            if node["class_type"] == self.ex.faults.error_node_class:
                parts.append(uuid.uuid4().hex)  # a failing class never comes from cache
            for name in sorted(node.get("inputs", {})):
                value = node["inputs"][name]
                if is_link(value):
                    parts.append([name, self.signature(value[0], seen | {node_id}), value[1]])
                else:
                    parts.append([name, value])
            return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
        except (KeyError, TypeError, ValueError):
            return "uncacheable:" + uuid.uuid4().hex


def _file_hash(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "missing"


class _ExecutionList:
    """ComfyUI's ExecutionList staging: DFS from the outputs, UX-friendly pick."""

    def __init__(self, prompt: dict[str, Any], catalog: Catalog, cached: set[str]) -> None:
        self.prompt = prompt
        self.catalog = catalog
        self.cached = cached
        self.pending: dict[str, bool] = {}
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict[str, bool]] = {}

    def add_node(self, node_id: str) -> None:
        stack, links = [node_id], []
        while stack:
            uid = stack.pop()
            if uid in self.pending:
                continue
            self.pending[uid] = True
            self.block_count[uid] = 0
            self.blocking[uid] = {}
            for value in self.prompt[uid].get("inputs", {}).values():
                if is_link(value) and value[0] in self.prompt:
                    if value[0] not in self.cached:
                        stack.append(value[0])
                    links.append((value[0], uid))
        for source, target in links:
            if source not in self.cached and target not in self.blocking[source]:
                self.blocking[source][target] = True
                self.block_count[target] += 1

    def is_output(self, node_id: str) -> bool:
        return self.catalog.is_output(self.prompt[node_id]["class_type"])

    def pick(self) -> str | None:
        available = [n for n in self.pending if self.block_count[n] == 0]
        if not available:
            return None
        for n in available:  # an output first, then what feeds an output soonest
            if self.is_output(n):
                return n
        for n in available:
            if any(self.is_output(b) for b in self.blocking[n]):
                return n
        for n in available:
            if any(self.is_output(b2) for b in self.blocking[n] for b2 in self.blocking.get(b, {})):
                return n
        return available[0]

    def complete(self, node_id: str) -> None:
        del self.pending[node_id]
        for target in self.blocking.pop(node_id, {}):
            self.block_count[target] -= 1
