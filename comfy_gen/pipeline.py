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
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Protocol, TypeVar

from comfy_gen.errors import ComfyUIUnavailable, JobLost
from comfy_gen.hashing import digest
from comfy_gen.params import GenerationParams

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.comfyui import ComfyUIClient, JobResult, OutputFile

log = logging.getLogger(__name__)

#: Namespace for deterministic prompt ids (uuid5), so a re-run can adopt a job
#: that an earlier, killed run already queued instead of rendering it twice.
PROMPT_ID_NAMESPACE = uuid.UUID("5b1d8f0e-3c2a-4f7e-9a61-0c0ffee0cafe")

EventCallback = Callable[[Any], None]

_T = TypeVar("_T")


class StageRunner(Protocol):
    """Runs one named stage of a job and returns what it returns: ``stage("queue", fn)``.

    Stages: compose, queue, await (render path), validate, refine (attempt loop),
    store/upload (batch). The default runs ``fn`` as is; the flow passes one that
    records each stage as a task run nested under the item, so the render path
    stays one path whichever way it is watched.
    """

    def __call__(self, name: str, fn: Callable[[], _T]) -> _T: ...


def direct_stage(name: str, fn: Callable[[], _T]) -> _T:
    """The default ``StageRunner``: just run the stage."""
    return fn()


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


def compose_graph(workflow: dict[str, Any], params: GenerationParams | None, **kwargs: Any) -> dict[str, Any]:
    """Resolve parameters into a concrete API-format graph (always writes a seed)."""
    from comfy_gen.workflow import apply_params

    return apply_params(workflow, params or GenerationParams(), **kwargs)


def _adoptable(client: "ComfyUIClient", prompt_id: str) -> str | None:
    """How ComfyUI knows ``prompt_id``: "queued", "done" (succeeded) or "failed"; None if unknown.

    The queue is read before the history: a job that finishes between the two
    reads is then seen in one of them, never missed and rendered twice.
    """
    from comfy_gen.comfyui._protocol import history_outcome

    if client.get_queue().find(prompt_id):
        return "queued"
    entry = client.history(prompt_id)
    if not entry:
        return None
    return "done" if history_outcome(entry)[0] == "success" else "failed"


def submit(client: "ComfyUIClient", workflow: dict[str, Any], *, prompt_id: str | None = None,
           adopt: bool = False) -> tuple[str, bool]:
    """Queue ``workflow``; with ``adopt`` reuse a job already queued or finished
    successfully under ``prompt_id``. A job that failed or was interrupted is
    never adopted: it is queued again under a fresh id (its old history entry
    would otherwise answer for the new job).

    Returns ``(prompt_id, adopted)``.
    """
    if adopt and prompt_id:
        state = _adoptable(client, prompt_id)
        if state in ("queued", "done"):
            log.info("Adopting job %s (%s) already known to ComfyUI", prompt_id, state)
            return prompt_id, True
        if state == "failed":
            prompt_id = deterministic_prompt_id(prompt_id, "after-failure", uuid.uuid4().hex)
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
    stage: StageRunner = direct_stage,
) -> RenderResult:
    """Compose, queue, wait for and download one job.

    ``params`` None means ``workflow`` is already composed. ``gate`` is held from
    queueing until the job finishes (the GPU bound). A job lost to a server
    restart is queued again up to ``resubmit_lost`` times. ``stage`` runs the
    compose, queue and await steps (see ``StageRunner``).
    """
    graph = stage("compose", lambda: compose_graph(workflow, params)) if params is not None else workflow
    if prompt_id is not None and adopt:
        # Derive the id from the exact graph too, so a job queued for other
        # parameters (a changed strategy, say) is never adopted for these.
        prompt_id = deterministic_prompt_id(prompt_id, graph_hash(graph))
    started = time.monotonic()
    resubmitted = False
    attempt_id = prompt_id
    tries = 0
    while True:
        with gate if gate is not None else contextlib.nullcontext():
            pid, adopted = stage("queue", lambda: submit(client, graph, prompt_id=attempt_id, adopt=adopt))
            if on_submitted:
                on_submitted(pid)
            try:
                job = stage("await", lambda: client.wait(pid, timeout=timeout, on_event=on_event))
                break
            except JobLost:
                if tries >= resubmit_lost:
                    raise
                tries += 1
                resubmitted = True
                # Deterministic too, so a retry of this item adopts the resubmitted job.
                attempt_id = deterministic_prompt_id(attempt_id or pid, f"resubmit{tries}")
                log.warning("Job %s was lost (server restart?); queueing it again", pid)
            except BaseException as exc:
                # Timeout, Ctrl-C, unexpected error: the job must not keep the GPU
                # busy outside the bound once we stop waiting for it. One try only,
                # and none when the server is gone anyway.
                if not isinstance(exc, ComfyUIUnavailable):
                    with contextlib.suppress(Exception):
                        client.cancel(pid, retry=False)
                raise
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
        partial = target.with_name(f"{target.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            client.download(output, partial)
            partial.replace(target)
        except BaseException:
            partial.unlink(missing_ok=True)
            remove_files(files)
            raise
        files.append(target)
    return files


def graph_hash(graph: dict[str, Any]) -> str:
    """A stable hash of a composed API-format graph."""
    return digest(graph, 24, ascii_only=True)


def remove_files(paths: list[Path]) -> None:
    """Delete files (partial outputs after an interrupt), ignoring missing ones."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
