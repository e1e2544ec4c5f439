"""``generate``: the steps of one generation, and the resources they share."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from comfy_gen.config import Settings
from comfy_gen.errors import ExecutionFailed, ExecutionInterrupted, UsageError
from comfy_gen.outputs import Publication
from comfy_gen.params import GenerationParams
from comfy_gen.service.model import (AttemptFinished, CancelToken, EventCallback, GenerateRequest,
                                     GenerateResult, Notice, WarningNotice)

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.comfyui import ComfyUIClient
    from comfy_gen.enhance import Enhanced, Enhancer
    from comfy_gen.gate import GpuGate
    from comfy_gen.generation import Outcome
    from comfy_gen.validation.plan import PreparedPlan


def generate(request: GenerateRequest, *, settings: Settings, on_event: EventCallback | None = None,
             cancel: CancelToken | None = None) -> GenerateResult:
    """Render ``request`` (with validation and retries), keep and publish the image.

    Raises ConfigError subclasses before anything is queued (bad values, paths,
    workflow, models, validator), ComfyUIError subclasses for server failures,
    ExecutionInterrupted when ``cancel`` is set. A kept image that failed
    validation is a result (``status`` best_effort/failed), not an error.
    """
    from comfy_gen.outputs import adhoc_output_path, check_output_folder

    _check_request(request)
    target = adhoc_output_path(settings, request.output, trust=request.paths)  # PathNotAllowed before any work
    check_output_folder(target.parent)
    job = _Job(request, settings, on_event, cancel or CancelToken())
    try:
        return job.run(target)
    finally:
        job.close()


def _check_request(request: GenerateRequest) -> None:
    """Everything that can be checked before the server is contacted."""
    from comfy_gen.params import text_problem, validate_ranges
    from comfy_gen.strategies import list_strategies

    if not request.params.prompt and not request.dry_run:
        raise UsageError("--prompt is required (unless --dry-run)")
    validate_ranges(request.params)
    texts = {"output": request.output, "preset": request.preset, "workflow_name": request.workflow_name,
             "workflow": request.workflow if isinstance(request.workflow, str) else None,
             "input_image": request.input_image.ref if request.input_image else None,
             **{f"organization.{k}": v for k, v in request.organization.to_dict().items()}}
    for field_name, value in texts.items():
        problem = text_problem(value, field_name)
        if problem:
            raise UsageError(problem)
    if request.organization.tags:
        from comfy_gen.metadata import parse_tags

        parse_tags(request.organization.tags)  # a bad tag fails now, not after the render
    if request.retry_strategy not in list_strategies():
        raise UsageError(f"Unknown retry strategy {request.retry_strategy!r}; "
                         f"known: {', '.join(list_strategies())}")
    if request.enhance.enabled:
        from comfy_gen.enhance import check_style

        check_style(request.enhance.style)  # an unknown style fails before the server is contacted
    if request.max_attempts < 1:
        raise UsageError(f"max_attempts must be >= 1 (got {request.max_attempts})")
    if request.generation_id is not None:
        from comfy_gen.catalog.records import check_generation_id

        check_generation_id(request.generation_id)


def _gate(settings: Settings, url: str) -> "GpuGate":
    """The backend's GPU bound, the same one the flow takes (settings.gpu_limit/gpu_gate)."""
    from comfy_gen.gate import gate_for

    url = url.rstrip("/")
    name = next((n for n, u in settings.backend_urls().items() if u == url), "default")
    return gate_for(settings, url, name)


def _validation(request: GenerateRequest, settings: Settings,
                warn: Callable[[str], None]) -> "PreparedPlan | None":
    """The one place validation is set up: the request's plan, prepared (None: no
    validation). ValidatorUnavailable (exit 2) comes before anything is queued."""
    from comfy_gen.validation.plan import ValidationPlan

    options = request.validation
    if not options.enabled:
        return None
    threshold, delta = options.positive_threshold, options.delta_threshold
    plan = ValidationPlan.from_options(validate=True, positive_threshold=threshold, delta_threshold=delta,
                                       checks=options.checks, allow_skip=options.allow_skip,
                                       technical=options.technical)
    prepared = plan.prepare(settings)
    for warning in prepared.warnings:
        warn(warning)
    if threshold is not None and 0 < threshold <= 1.0:
        warn(f"--positive-threshold {threshold} looks like the old 0-1 scale; scores are 0-100")
    return prepared


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
        self.enhanced: Enhanced | None = None
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
            enhancer = self._enhancer()  # EnhancerUnavailable (exit 2) before anything is queued
            if self.request.dry_run:
                self.emit(Notice(message=f"Dry run OK: workflow {name} and every model it needs exist on "
                                         f"{self.client.base_url}; nothing was queued."))
                return GenerateResult(status="dry_run", workflow=name, warnings=tuple(self.warnings))
            started = time.monotonic()
            params = self._enhance(enhancer, params)
            outcome = self._attempts(workflow, params, enhancer)
            final = self._final_target(target, outcome.best.files[0])  # type: ignore[union-attr]
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
        from comfy_gen.workflow import apply_params_with_report, check_workflow
        from comfy_gen.workflow.video import writes_container

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
        graph, report = apply_params_with_report(workflow, probe)
        check_workflow(graph, object_info)
        if self.request.validation.enabled and writes_container(graph):
            raise UsageError("Validation scores a still frame, and this workflow writes a container video "
                             "(MP4/WEBM) comfy-gen cannot decode",
                             hint="Drop --validate, or save an animated WEBP/GIF (SaveAnimatedWEBP, "
                                  "VHS image/webp).")
        for message in report.warnings:  # e.g. frames the video model will round
            self.warn(message)
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

    def _enhancer(self) -> "Enhancer | None":
        from comfy_gen.enhance.apply import prepare_enhancer

        return prepare_enhancer(self.request.enhance, self.settings)

    def _enhance(self, enhancer: "Enhancer | None", params: GenerationParams) -> GenerationParams:
        """The prompt every attempt renders: enhanced once here (a failure keeps the original, loudly)."""
        from comfy_gen.enhance.apply import enhance_params

        params, self.enhanced = enhance_params(enhancer, self.request.enhance, params)
        if self.enhanced is not None and self.enhanced.warning:
            self.warn(self.enhanced.warning)
        elif self.enhanced is not None:
            self.emit(Notice(message=f"Enhanced prompt ({self.enhanced.style}): {self.enhanced.prompt}"))
        return params

    def _attempts(self, workflow: dict[str, Any], params: GenerationParams,
                  enhancer: "Enhancer | None" = None) -> "Outcome":
        from comfy_gen.enhance import refining_with
        from comfy_gen.enhance.apply import refiner_for
        from comfy_gen.generation import run_attempts

        request = self.request
        validation = _validation(request, self.settings, self.warn)
        limit = request.max_attempts if validation is not None else 1
        # Validators judge the image against what the user asked for, not the enhancer's additions.
        check_prompt = self.enhanced.original if self.enhanced is not None else params.prompt
        with refining_with(refiner_for(enhancer, self.enhanced)):
            outcome = run_attempts(
                self.client, workflow, params, dest_dir=self.work, name="attempt",
                validation=validation, strategy=request.retry_strategy,
                max_attempts=request.max_attempts, validation_prompt=check_prompt, on_event=self.emit,
                on_submitted=self.submitted,
                on_attempt=lambda a: self.emit(AttemptFinished(attempt=a, limit=limit)),
                gate=self.gate, timeout=request.timeout,
            )
        if self.token.cancelled:  # a later attempt was interrupted: run_attempts kept the earlier ones
            raise ExecutionInterrupted("The generation was cancelled", prompt_id=self.prompt_id)
        if outcome.best is None or not outcome.best.files:
            raise ExecutionFailed("The job finished without an output image", prompt_id=self.prompt_id)
        return outcome

    def _final_target(self, target: Path, produced: Path) -> Path:
        """The kept file's name. A video keeps its own extension: the default name
        (``<time>.png``) takes it, and so does an ``-o car.png``, with a warning."""
        final = _final_target(target, produced)
        suffix = produced.suffix.lower()
        if not suffix or final.suffix.lower() == suffix or not _moving(produced):
            return final
        if self.request.output is not None:
            self.warn(f"the workflow wrote a video ({suffix.lstrip('.')}); saved as "
                      f"{final.with_suffix(suffix).name} instead of {final.name}")
        return final.with_suffix(suffix)

    def _finish(self, outcome: "Outcome", final: Path, name: str, elapsed: float) -> GenerateResult:
        """Keep the best attempt under its final name, then publish it."""
        from comfy_gen.catalog import index_kept, normalize_id
        from comfy_gen.outputs import (OutputContext, build_output_metadata, keep_output, object_key_for,
                                       publish_with_settings)

        request, best = self.request, outcome.best
        assert best is not None
        context = OutputContext(workflow_name=name, params=best.params, preset=request.preset,
                                organization=request.organization.to_dict(), generation_time=elapsed,
                                generation_id=normalize_id(request.generation_id) if request.generation_id else None,
                                recipe_hash=request.recipe_hash, categories=tuple(request.categories),
                                enhancement=self.enhanced)
        kept = keep_output(best.files[0], final, key=object_key_for(context, final),
                           metadata=build_output_metadata(context, outcome) if request.metadata else None,
                           embed=request.embed_metadata)
        publication = publish_with_settings(kept, self.settings) if request.upload else Publication()
        self._report_publication(publication, kept.file)
        index_kept(self.settings, kept)  # after publishing: the row carries the object URL
        return GenerateResult(
            generation_id=(kept.metadata or {}).get("comfy_gen", {}).get("generation_id"),
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


def _moving(path: Path) -> bool:
    from comfy_gen.media import is_container_video, media_info

    if is_container_video(path):
        return True
    try:
        return media_info(path).moving
    except OSError:
        return False
