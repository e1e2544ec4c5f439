"""Render one job: apply parameters, queue, wait, download.

This is the only implementation of "patch, queue, wait, download" in comfy-gen;
the CLI, the seed facade, the Prefect flow, the API and the MCP server all call
``render``. Orchestration policy (GPU bound, retries of whole items) is passed
in (``gate``) or lives in the callers; this module only knows one job.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager

from comfy_gen.errors import JobLost
from comfy_gen.params import GenerationParams

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.comfyui import ComfyUIClient, JobResult, OutputFile

log = logging.getLogger(__name__)

#: Namespace for deterministic prompt ids (uuid5), so a re-run can adopt a job
#: that an earlier, killed run already queued instead of rendering it twice.
PROMPT_ID_NAMESPACE = uuid.UUID("5b1d8f0e-3c2a-4f7e-9a61-0c0ffee0cafe")

EventCallback = Callable[[Any], None]


def deterministic_prompt_id(*parts: str) -> str:
    """A prompt id derived from the job's identity (stable across processes)."""
    return str(uuid.uuid5(PROMPT_ID_NAMESPACE, "/".join(parts)))


@dataclass
class RenderResult:
    """What one finished job produced."""

    prompt_id: str
    files: list[Path]
    job: "JobResult"
    workflow: dict[str, Any]
    elapsed: float
    adopted: bool = False        # True when an already queued/finished job was reused
    resubmitted: bool = False    # True when the job was lost (restart) and sent again
    outputs: list["OutputFile"] = field(default_factory=list)

    @property
    def cached(self) -> bool:
        return bool(getattr(self.job, "cached", False))


def compose(workflow: dict[str, Any], params: GenerationParams | None, **kwargs: Any) -> dict[str, Any]:
    """Resolve parameters into a concrete API-format graph (always writes a seed)."""
    from comfy_gen.workflow import apply_params

    return apply_params(workflow, params or GenerationParams(), **kwargs)


def _find_existing(client: "ComfyUIClient", prompt_id: str) -> bool:
    """True when ComfyUI already knows ``prompt_id`` (queued, running or finished)."""
    if client.history(prompt_id):
        return True
    queue = client.get_queue()
    return any(item.prompt_id == prompt_id for item in [*queue.running, *queue.pending])


def submit(client: "ComfyUIClient", workflow: dict[str, Any], *, prompt_id: str | None = None,
           adopt: bool = False) -> tuple[str, bool]:
    """Queue ``workflow``; with ``adopt`` reuse a job already known under ``prompt_id``.

    Returns ``(prompt_id, adopted)``.
    """
    if adopt and prompt_id and _find_existing(client, prompt_id):
        log.info("Adopting job %s already known to ComfyUI", prompt_id)
        return prompt_id, True
    queued = client.queue_prompt(workflow, prompt_id=prompt_id)
    return queued.prompt_id, False


def render(
    client: "ComfyUIClient",
    workflow: dict[str, Any],
    params: GenerationParams | None = None,
    *,
    dest_dir: Path,
    name: str,
    prompt_id: str | None = None,
    adopt: bool = False,
    on_event: EventCallback | None = None,
    on_submitted: Callable[[str], None] | None = None,
    timeout: float | None = None,
    gate: ContextManager[Any] | None = None,
    resubmit_lost: int = 1,
) -> RenderResult:
    """Compose, queue, wait for and download one job.

    ``params`` None means ``workflow`` is already composed. ``gate`` is held from
    queueing until the job finishes (the GPU bound). A job lost to a server
    restart is queued again up to ``resubmit_lost`` times.
    """
    graph = compose(workflow, params) if params is not None else workflow
    started = time.monotonic()
    resubmitted = False
    attempt_id = prompt_id
    tries = 0
    while True:
        with gate if gate is not None else contextlib.nullcontext():
            pid, adopted = submit(client, graph, prompt_id=attempt_id, adopt=adopt)
            if on_submitted:
                on_submitted(pid)
            try:
                job = client.wait(pid, timeout=timeout, on_event=on_event)
                break
            except JobLost:
                if tries >= resubmit_lost:
                    raise
                tries += 1
                resubmitted = True
                adopt = False
                # The old id may be reused by the server's new history; use a fresh one.
                attempt_id = deterministic_prompt_id(pid, f"resubmit{tries}") if prompt_id else None
                log.warning("Job %s was lost (server restart?); queueing it again", pid)
    files = download_outputs(client, job, dest_dir=dest_dir, name=name)
    return RenderResult(prompt_id=pid, files=files, job=job, workflow=graph,
                        elapsed=time.monotonic() - started, adopted=adopted,
                        resubmitted=resubmitted, outputs=list(job.outputs))


def download_outputs(client: "ComfyUIClient", job: "JobResult", *, dest_dir: Path, name: str) -> list[Path]:
    """Download every output of ``job`` as ``name``, ``name_1``, ... (extension kept).

    Files are written under a temporary name and renamed, so a crash never leaves
    a half-written image under the final name.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    # Saved outputs first; previews (type temp) only when nothing was saved.
    outputs = [o for o in job.outputs if o.type != "temp"] or list(job.outputs)
    for index, output in enumerate(outputs):
        suffix = Path(output.filename).suffix or ".png"
        target = dest_dir / (f"{name}{suffix}" if index == 0 else f"{name}_{index}{suffix}")
        partial = target.with_name(target.name + ".part")
        client.download(output, partial)
        partial.replace(target)
        files.append(target)
    return files


def remove_files(paths: list[Path]) -> None:
    """Delete files (partial outputs after an interrupt), ignoring missing ones."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
