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

import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping

from comfy_gen.comfyui.events import Event
from comfy_gen.config import Settings
from comfy_gen.errors import ExecutionFailed, ExecutionInterrupted, UsageError, ValidationFailed
from comfy_gen.generation import Attempt
from comfy_gen.outputs import Publication, UploadState
from comfy_gen.params import GenerationParams
from comfy_gen.paths import PathTrust

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.comfyui import ComfyUIClient
    from comfy_gen.gate import GpuGate
    from comfy_gen.generation import Outcome, Scorer
    from comfy_gen.images import CropMode
    from comfy_gen.validation import Thresholds

ResultStatus = Literal["passed", "best_effort", "unvalidated", "failed", "dry_run"]
EventCallback = Callable[[Event], None]


class CancelToken:
    """Set once, from any thread, to stop a generation (``cancel()``); callbacks
    registered with ``on_cancel`` run on the cancelling thread."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` on cancellation (now, if already cancelled); returns an unregister function."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return lambda: self._remove(callback)
        callback()
        return lambda: None

    def _remove(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)


# --- the request -------------------------------------------------------------------


@dataclass(frozen=True)
class InputImage:
    """An input image (a path or an http(s) URL), optionally resized/cropped before upload."""

    ref: str
    resize: tuple[int, int] | None = None
    crop: "CropMode | None" = None

    def __post_init__(self) -> None:
        if self.crop is not None and self.resize is None:
            raise UsageError(f"Crop mode {self.crop!r} needs a target size (resize=WxH)")


@dataclass(frozen=True)
class ValidationOptions:
    """Whether to validate, and the pass thresholds (None: the model's default)."""

    enabled: bool = False
    positive_threshold: float | None = None
    delta_threshold: float | None = None


@dataclass(frozen=True)
class Organization:
    """Project, batch and ``"k:v,flag"`` tags recorded in the metadata."""

    project: str | None = None
    batch_id: str | None = None
    tags: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"project": self.project, "batch_id": self.batch_id, "tags": self.tags}


@dataclass(frozen=True)
class GenerateRequest:
    """One image to generate. ``workflow`` is a name/path or an already loaded
    graph (then ``workflow_name`` labels it). ``paths`` says whose paths these
    are (docs/ARCHITECTURE.md, "Paths and trust"): ``trusted`` for a local CLI
    user, ``confined`` (the default) for anything across a trust boundary."""

    workflow: str | Mapping[str, Any]
    params: GenerationParams
    workflow_name: str | None = None
    input_image: InputImage | None = None
    validation: ValidationOptions = ValidationOptions()
    retry_strategy: str = "progressive"
    max_attempts: int = 3
    output: str | None = None
    upload: bool = False
    metadata: bool = True
    organization: Organization = Organization()
    preset: str | None = None
    timeout: float | None = None
    dry_run: bool = False
    url: str | None = None
    paths: PathTrust = "confined"


# --- events and the result ------------------------------------------------------------


@dataclass(frozen=True)
class Notice(Event):
    """A message for a person (``info``)."""

    type: str = field(init=False, default="info")
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message}


@dataclass(frozen=True)
class WarningNotice(Notice):
    """A message a person should see even when quiet; also in ``GenerateResult.warnings``."""

    type: str = field(init=False, default="warning")


@dataclass(frozen=True)
class AttemptFinished(Event):
    """One attempt rendered (and scored); ``limit`` is the most attempts that may follow."""

    type: str = field(init=False, default="attempt")
    attempt: Attempt | None = None
    limit: int = 1

    def to_dict(self) -> dict[str, Any]:
        data = self.attempt.to_dict() if self.attempt else {}
        data.pop("files", None)  # work files: only the kept attempt survives, as the result's file
        return {"type": self.type, **data}


@dataclass(frozen=True)
class GenerateResult:
    """What a generation produced; ``to_dict()`` is the ``--json-progress`` result."""

    status: ResultStatus
    workflow: str
    file: Path | None = None
    sidecar: Path | None = None
    key: str | None = None
    url: str | None = None
    upload: UploadState = "disabled"
    upload_error: str | None = None
    prompt_id: str | None = None
    attempts: tuple[Attempt, ...] = ()
    best: Attempt | None = None
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "status": self.status, "workflow": self.workflow,
            "file": str(self.file) if self.file else None,
            "sidecar": str(self.sidecar) if self.sidecar else None,
            "key": self.key, "url": self.url, "upload": self.upload, "prompt_id": self.prompt_id,
            "best_attempt": self.best.number if self.best else None,
            "attempts": [{k: v for k, v in a.to_dict().items() if k != "files"} for a in self.attempts],
            "warnings": list(self.warnings),
        }
        if self.upload_error:
            data["upload_error"] = self.upload_error
        return data

    def validation_error(self) -> ValidationFailed | None:
        """The error for a kept image that did not pass (exit 3 at the CLI), else None."""
        if self.status not in ("best_effort", "failed") or self.best is None:
            return None
        return ValidationFailed(
            f"Validation failed after {len(self.attempts)} attempt(s): {self.best.reason}; "
            f"the best attempt (#{self.best.number}) was kept at {self.file}",
            best=self.best.to_dict(), attempts=[a.to_dict() for a in self.attempts])


# --- the service -------------------------------------------------------------------


def generate(request: GenerateRequest, *, settings: Settings, on_event: EventCallback | None = None,
             cancel: CancelToken | None = None) -> GenerateResult:
    """Render ``request`` (with validation and retries), keep and publish the image.

    Raises ConfigError subclasses before anything is queued (bad values, paths,
    workflow, models, validator), ComfyUIError subclasses for server failures,
    ExecutionInterrupted when ``cancel`` is set. A kept image that failed
    validation is a result (``status`` best_effort/failed), not an error.
    """
    from comfy_gen.outputs import adhoc_output_path

    _check_request(request)
    target = adhoc_output_path(settings, request.output, trust=request.paths)  # PathNotAllowed before any work
    _check_writable(target)
    job = _Job(request, settings, on_event, cancel or CancelToken())
    try:
        return job.run(target)
    finally:
        job.close()


def _check_request(request: GenerateRequest) -> None:
    """Everything that can be checked before the server is contacted."""
    from comfy_gen.params import validate_ranges
    from comfy_gen.strategies import list_strategies

    if not request.params.prompt and not request.dry_run:
        raise UsageError("--prompt is required (unless --dry-run)")
    validate_ranges(request.params)
    if request.organization.tags:
        from comfy_gen.metadata import parse_tags

        parse_tags(request.organization.tags)  # a bad tag fails now, not after the render
    if request.retry_strategy not in list_strategies():
        raise UsageError(f"Unknown retry strategy {request.retry_strategy!r}; "
                         f"known: {', '.join(list_strategies())}")
    if request.max_attempts < 1:
        raise UsageError(f"max_attempts must be >= 1 (got {request.max_attempts})")


def _check_writable(target: Path) -> None:
    # A trusted path may point anywhere: fail now, not after the GPU work.
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UsageError(f"Cannot write the output to {target}: {folder} is not a folder")


def _gate(settings: Settings, url: str) -> "GpuGate":
    """The backend's GPU bound, the same one the flow takes (settings.gpu_limit/gpu_gate)."""
    from comfy_gen.gate import GpuGate

    url = url.rstrip("/")
    name = next((n for n, u in settings.backend_urls().items() if u == url), "default")
    return GpuGate(url, settings.gpu_limit, mode=settings.gpu_gate,
                   prefect_name=f"{settings.prefect_concurrency_name}:{name}")


def _validator(request: GenerateRequest, settings: Settings,
               warn: Callable[[str], None]) -> tuple["Scorer | None", "Thresholds"]:
    """The one place validation is set up: the scorer (None: no validation) and
    what passes. ValidatorUnavailable (exit 2) comes before anything is queued."""
    from comfy_gen.validation import Thresholds

    options = request.validation
    if not options.enabled:
        return None, Thresholds()
    from comfy_gen.validation import default_positive_threshold, get_validator

    scorer = get_validator(settings.clip_model)
    threshold = options.positive_threshold
    if threshold is None:
        threshold = default_positive_threshold(settings.clip_model)
    elif 0 < threshold <= 1.0:
        warn(f"--positive-threshold {threshold} looks like the old 0-1 scale; scores are 0-100")
    delta = options.delta_threshold
    return scorer, Thresholds(positive=float(threshold), delta=None if delta is None else float(delta))


class _Job:
    """One generation's resources: client, work folder, GPU gate, our prompt id."""

    def __init__(self, request: GenerateRequest, settings: Settings, on_event: EventCallback | None,
                 token: CancelToken) -> None:
        from comfy_gen.comfyui import ComfyUIClient

        self.request, self.settings, self.token = request, settings, token
        self.emit: EventCallback = on_event or (lambda event: None)
        self.warnings: list[str] = []
        work_root = Path(settings.state_dir) / "work"
        work_root.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="generate-", dir=work_root))
        self.client: ComfyUIClient = ComfyUIClient.from_settings(settings, url=request.url,
                                                                 job_timeout=request.timeout)
        self.gate = _CancellableGate(_gate(settings, self.client.base_url), token)
        self.prompt_id: str | None = None
        self._cancelled_on_server = False
        self._lock = threading.Lock()
        self._unhook = token.on_cancel(self._cancel_current)

    def close(self) -> None:
        self._unhook()
        shutil.rmtree(self.work, ignore_errors=True)
        self.client.close()

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.emit(WarningNotice(message=message))

    # -- cancellation ----------------------------------------------------------
    def submitted(self, prompt_id: str) -> None:
        with self._lock:
            self.prompt_id = prompt_id
            self._cancelled_on_server = False
        if self.token.cancelled:  # cancelled while it was being queued
            self._cancel_current()

    def _cancel_current(self) -> None:
        """Cancel only our prompt (never a bare /interrupt); runs on the cancelling thread."""
        from comfy_gen.errors import ComfyGenError

        with self._lock:
            prompt_id, done = self.prompt_id, self._cancelled_on_server
            self._cancelled_on_server = True
        if prompt_id is None or done:
            return
        try:
            state = self.client.cancel(prompt_id, retry=False)
            self.emit(Notice(message=f"Cancelled our job {prompt_id} ({state})."))
        except ComfyGenError as exc:
            self.warn(f"Could not cancel job {prompt_id}: {exc}")

    # -- the steps ---------------------------------------------------------------
    def run(self, target: Path) -> GenerateResult:
        from comfy_gen.outputs import remove_output

        final: Path | None = None
        try:
            workflow, name, params = self._prepare()
            if self.request.dry_run:
                self.emit(Notice(message=f"Dry run OK: workflow {name} and every model it needs exist on "
                                         f"{self.client.base_url}; nothing was queued."))
                return GenerateResult(status="dry_run", workflow=name, warnings=tuple(self.warnings))
            started = time.monotonic()
            outcome = self._attempts(workflow, params)
            final = _final_target(target, outcome.best.files[0])  # type: ignore[union-attr]
            return self._finish(outcome, final, name, time.monotonic() - started)
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt) or self.token.cancelled
            if interrupted:
                self._cancel_current()
                if final is not None:
                    remove_output(final)
            if self.token.cancelled and not isinstance(exc, (KeyboardInterrupt, ExecutionInterrupted)):
                raise ExecutionInterrupted("The generation was cancelled",
                                           prompt_id=self.prompt_id) from exc
            raise

    def _prepare(self) -> tuple[dict[str, Any], str, GenerationParams]:
        """Server up, workflow loaded, input image ready, composed graph preflighted."""
        from comfy_gen.errors import ComfyUIUnavailable
        from comfy_gen.pipeline import compose
        from comfy_gen.workflow import check_workflow

        client = self.client
        if not client.is_available():
            raise ComfyUIUnavailable(f"ComfyUI is not reachable at {client.base_url}", url=client.base_url,
                                     hint="Start it (comfy-gen server start), or pass --url / set "
                                          "COMFY_GEN_COMFYUI_URL.")
        object_info = client.object_info()
        workflow, name = self._workflow(object_info)
        params = self._input_image()
        # Preflight the composed graph (a fixed seed: the check must not depend on chance).
        probe = params if params.seed not in (None, -1) else params.replace(seed=0)
        check_workflow(compose(workflow, probe), object_info)
        return workflow, name, params

    def _workflow(self, object_info: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """The graph and how the metadata names it: its name when it lives in the
        workflows folder, else its absolute path (so `reproduce` finds it anywhere)."""
        from comfy_gen.workflow import load_workflow, normalize_graph, resolve_workflow_path

        ref, folder = self.request.workflow, Path(self.settings.workflows_dir)
        if not isinstance(ref, str):
            name = self.request.workflow_name or "workflow"
            return normalize_graph(dict(ref), object_info=object_info, source=name), name
        trusted = self.request.paths == "trusted"
        path = resolve_workflow_path(ref, workflows_dir=folder, trusted=trusted,
                                     allowed_dirs=None if trusted else [folder])
        graph = load_workflow(path, workflows_dir=folder, object_info=object_info, trusted=True)
        return graph, path.stem if path.parent == folder.resolve() else str(path)

    def _input_image(self) -> GenerationParams:
        """Fetch (URL or path, by the trust rule), resize/crop and upload the input image."""
        from comfy_gen.images import fetch_input_image, preprocess_image

        image, params = self.request.input_image, self.request.params
        if image is None:
            return params
        confined = self.request.paths == "confined"
        out_dir = Path(self.settings.output_dir)
        local = fetch_input_image(image.ref, self.work, base=out_dir if confined else None,
                                  allowed_dirs=[out_dir, *self.settings.input_dirs] if confined else None)
        if image.resize:
            local = preprocess_image(local, local, resize=image.resize, crop=image.crop)
        if self.request.dry_run:
            return params  # readable and resizable is enough; uploading is a side effect
        return params.replace(input_image=self.client.upload_image(local))

    def _attempts(self, workflow: dict[str, Any], params: GenerationParams) -> "Outcome":
        from comfy_gen.generation import run_attempts

        request = self.request
        scorer, thresholds = _validator(request, self.settings, self.warn)
        limit = request.max_attempts if scorer else 1
        outcome = run_attempts(
            self.client, workflow, params, dest_dir=self.work, name="attempt",
            scorer=scorer, thresholds=thresholds, strategy=request.retry_strategy,
            max_attempts=request.max_attempts, validation_prompt=params.prompt, on_event=self.emit,
            on_submitted=self.submitted, on_attempt=lambda a: self.emit(AttemptFinished(attempt=a, limit=limit)),
            gate=self.gate, timeout=request.timeout,
        )
        if self.token.cancelled:  # a later attempt was interrupted: run_attempts kept the earlier ones
            raise ExecutionInterrupted("The generation was cancelled", prompt_id=self.prompt_id)
        if outcome.best is None or not outcome.best.files:
            raise ExecutionFailed("The job finished without an output image", prompt_id=self.prompt_id)
        return outcome

    def _finish(self, outcome: "Outcome", final: Path, name: str, elapsed: float) -> GenerateResult:
        """Keep the best attempt under its final name, then publish it."""
        from comfy_gen.outputs import (OutputContext, build_output_metadata, keep_output, object_key_for,
                                       publish_with_settings)

        request, best = self.request, outcome.best
        assert best is not None
        context = OutputContext(workflow_name=name, params=best.params, preset=request.preset,
                                organization=request.organization.to_dict(), generation_time=elapsed)
        kept = keep_output(best.files[0], final, key=object_key_for(context, final),
                           metadata=build_output_metadata(context, outcome) if request.metadata else None)
        publication = publish_with_settings(kept, self.settings) if request.upload else Publication()
        self._report_publication(publication, kept.file)
        return GenerateResult(
            status=outcome.status, workflow=name, file=kept.file, sidecar=kept.sidecar,  # type: ignore[arg-type]
            key=publication.key, url=publication.url, upload=publication.state, upload_error=publication.error,
            prompt_id=best.prompt_id, attempts=tuple(outcome.attempts), best=best, warnings=tuple(self.warnings))

    def _report_publication(self, publication: Publication, file: Path) -> None:
        if publication.state == "queued":
            self.warn(f"upload failed ({publication.error or 'storage unavailable'}); the image is kept at "
                      f"{file} and queued in the outbox (retry: comfy-gen storage sync)")
        elif publication.state == "local-only":
            self.warn("--upload given but no object storage is configured (COMFY_GEN_MINIO_ENDPOINT); "
                      "the image stays local")


class _CancellableGate:
    """The GPU gate, refusing to queue once the token is set (so a lost job is
    never resubmitted after a cancel)."""

    def __init__(self, gate: "GpuGate", token: CancelToken) -> None:
        self._gate, self._token = gate, token

    def __enter__(self) -> "_CancellableGate":
        self._check()
        self._gate.__enter__()
        try:
            self._check()  # cancelled while waiting for a slot
        except BaseException:
            self._gate.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._gate.__exit__(*exc)

    def _check(self) -> None:
        if self._token.cancelled:
            raise ExecutionInterrupted("The generation was cancelled")


def _final_target(target: Path, produced: Path) -> Path:
    # `-o result` gets the produced file's extension, so viewers know what it is.
    return target if target.suffix else target.with_suffix(produced.suffix or ".png")


__all__ = ["AttemptFinished", "CancelToken", "GenerateRequest", "GenerateResult", "InputImage", "Notice",
           "Organization", "ResultStatus", "ValidationOptions", "WarningNotice", "generate"]
