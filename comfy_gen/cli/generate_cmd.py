"""`comfy-gen generate` and `comfy-gen reproduce`: one image, validated, with retries.

Both commands resolve a workflow and a ``GenerationParams``, then share
``run_generate``: preflight, optional CLIP scorer, ``generation.run_attempts``
(which renders through ``pipeline.render``), then ``outputs.store_output``.
Ctrl-C cancels only our own prompt, removes partial files and exits 130.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from comfy_gen.cli._errors import EXIT_INTERRUPTED

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.config import Settings
    from comfy_gen.params import GenerationParams

#: Options that map one to one onto GenerationParams fields.
PARAM_OPTIONS = ("steps", "cfg", "seed", "width", "height", "sampler", "scheduler", "denoise", "checkpoint")


class ProgressPrinter:
    """Prints events: one JSON object per line on stdout, a live bar on a terminal, or nothing."""

    def __init__(self, *, json_progress: bool, quiet: bool) -> None:
        self.json_progress = json_progress
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.progress_seen = False

    def __call__(self, event: Any) -> None:
        if event.type == "progress":
            self.progress_seen = True
        if self.json_progress:
            self.emit(self._json_event(event))
            return
        if self.quiet:
            return
        if event.type == "progress":
            pct = 100 * event.fraction
            bar = "#" * int(pct / 5)
            eta = f" ETA {event.eta_seconds:.0f}s" if event.eta_seconds is not None else ""
            line = f"Sampling [{bar:<20}] {event.step}/{event.max} ({pct:.0f}%){eta}"
            click.echo(("\r" + line) if self.tty else line, nl=not self.tty, err=True)
            if self.tty and event.step >= event.max:
                click.echo("", err=True)
        elif event.type == "execution_cached" and event.nodes:
            click.echo(f"{len(event.nodes)} node(s) cached", err=True)
        elif event.type == "execution_start":
            click.echo(f"Started {event.prompt_id}", err=True)

    @staticmethod
    def _json_event(event: Any) -> dict[str, Any]:
        data = event.to_dict()
        if event.type == "progress":
            # The seed's progress keys, next to the event's own fields.
            percent = round(100 * event.fraction, 1)
            data.update(max_steps=event.max, percent=percent,
                        message=f"Sampling: {event.step}/{event.max} steps ({percent:.0f}%)")
        return data

    def emit(self, data: dict[str, Any]) -> None:
        click.echo(json.dumps(data, default=str))

    def info(self, message: str) -> None:
        if self.json_progress:
            self.emit({"type": "info", "message": message})
        elif not self.quiet:
            click.echo(message, err=True)

    def warn(self, message: str) -> None:
        # Warnings reach a human even with --quiet; JSON consumers get an event too.
        if self.json_progress:
            self.emit({"type": "warning", "message": message})
        click.echo(f"Warning: {message}", err=True)


@dataclass
class Request:
    """What `generate` / `reproduce` asks for, after option parsing."""

    workflow: Any                    # a name/path, or an already loaded graph (reproduce from ComfyUI chunks)
    workflow_name: str
    params: "GenerationParams"
    opts: dict[str, Any]
    preset: dict[str, Any] = field(default_factory=dict)
    preset_name: str | None = None


def params_from_options(opts: dict[str, Any], preset: dict[str, Any]) -> "GenerationParams":
    """CLI flags > preset > workflow (None keeps the workflow's value)."""
    from comfy_gen.params import GenerationParams, LoraSpec
    from comfy_gen.presets import PARAM_KEYS

    values: dict[str, Any] = {k: preset[k] for k in PARAM_KEYS if k in preset and k != "loras"}
    loras = [LoraSpec.parse(x) if isinstance(x, str) else
             LoraSpec(str(x["name"]), float(x.get("strength", 1.0))) for x in preset.get("loras") or []]
    values.update({k: opts[k] for k in PARAM_OPTIONS if opts.get(k) is not None})
    loras += [LoraSpec.parse(spec) for spec in opts.get("lora") or ()]
    return GenerationParams(prompt=opts.get("prompt"), negative_prompt=opts.get("negative_prompt"),
                            loras=tuple(loras), **values)


def _pick(opts: dict[str, Any], preset: dict[str, Any], key: str, default: Any) -> Any:
    value = opts.get(key)
    if value is None:
        value = preset.get(key)
    return default if value is None else value


def _make_client(settings: "Settings", opts: dict[str, Any]) -> Any:
    from comfy_gen.comfyui import ComfyUIClient

    return ComfyUIClient(opts.get("url") or settings.comfyui_url, timeout=settings.http_timeout,
                         connect_timeout=settings.connect_timeout, retries=settings.http_retries,
                         retry_delay=settings.retry_delay,
                         job_timeout=opts.get("timeout") or settings.job_timeout,
                         poll_interval=settings.poll_interval)


def _input_size(opts: dict[str, Any]) -> tuple[int, int] | None:
    """--resize/--crop checked up front, before the server is contacted."""
    from comfy_gen.errors import UsageError
    from comfy_gen.images import parse_size

    resize = parse_size(opts["resize"]) if opts.get("resize") else None
    if opts.get("crop") and resize is None:
        raise UsageError(f"--crop {opts['crop']} needs --resize WxH")
    if resize and not opts.get("input_image"):
        raise UsageError("--resize applies to --input-image; use --width/--height for the output size")
    return resize


def _prepare_input(client: Any, req: Request, settings: "Settings", work: Path, dry_run: bool) -> "GenerationParams":
    """Fetch (URL or allowed path), resize/crop and upload the input image."""
    from comfy_gen.images import fetch_input_image, preprocess_image

    opts = req.opts
    if not opts.get("input_image"):
        return req.params
    resize = _input_size(opts)
    allowed = [Path.cwd(), Path(settings.output_dir), *settings.input_dirs]
    local = fetch_input_image(opts["input_image"], work, allowed_dirs=allowed)
    if resize:
        local = preprocess_image(local, local, resize=resize, crop=opts.get("crop"))
    if dry_run:
        return req.params  # readable and resizable is enough; uploading is a side effect
    return req.params.replace(input_image=client.upload_image(local))


def _scorer(req: Request, settings: "Settings", printer: ProgressPrinter) -> tuple[Any, Any]:
    """The CLIP scorer (None without validation) and the pass thresholds."""
    from comfy_gen.generation import Thresholds

    opts, preset = req.opts, req.preset
    validate = opts.get("validate")
    if validate is None and (opts.get("positive_threshold") is not None or opts.get("delta_threshold") is not None):
        validate = True  # a threshold on the command line asks for validation
    validate = _pick({"validate": validate}, preset, "validate", False)
    threshold = _pick(opts, preset, "positive_threshold", None)
    delta = _pick(opts, preset, "delta_threshold", None)
    if not validate:
        return None, Thresholds()
    from comfy_gen.validation import default_positive_threshold, get_validator

    scorer = get_validator(settings.clip_model)  # ValidatorUnavailable (exit 2) before anything is queued
    if threshold is None:
        threshold = default_positive_threshold(settings.clip_model)
    elif 0 < threshold <= 1.0:
        printer.warn(f"--positive-threshold {threshold} looks like the old 0-1 scale; scores are 0-100")
    return scorer, Thresholds(positive=float(threshold), delta=None if delta is None else float(delta))


def _check_strategy(name: str) -> None:
    from comfy_gen.errors import UsageError
    from comfy_gen.strategies import list_strategies

    if name not in list_strategies():
        raise UsageError(f"Unknown retry strategy {name!r}; known: {', '.join(list_strategies())}")


def _workflow_name(ref: str, settings: "Settings") -> str:
    """How the metadata names the workflow: its name when it lives in the workflows
    folder, else its absolute path (so `reproduce` finds it from any folder)."""
    from comfy_gen.workflow import resolve_workflow_path

    path = resolve_workflow_path(ref, workflows_dir=settings.workflows_dir)
    return path.stem if path.parent == Path(settings.workflows_dir).resolve() else str(path)


def _final_target(target: Path, produced: Path) -> Path:
    # `-o result` gets the produced file's extension, so viewers know what it is.
    return target if target.suffix else target.with_suffix(produced.suffix or ".png")


def run_generate(req: Request) -> int:
    """The body of `generate` and `reproduce`; returns the exit code."""
    from comfy_gen.config import get_settings
    from comfy_gen.errors import ComfyUIUnavailable, UsageError, ValidationFailed
    from comfy_gen.generation import run_attempts
    from comfy_gen.outputs import adhoc_output_path, store_output
    from comfy_gen.params import validate_ranges
    from comfy_gen.pipeline import compose
    from comfy_gen.workflow import check_workflow, load_workflow, normalize_graph

    settings = get_settings()
    opts = req.opts
    printer = ProgressPrinter(json_progress=opts["json_progress"], quiet=opts["quiet"])
    if not req.params.prompt and not opts["dry_run"]:
        raise UsageError("--prompt is required (unless --dry-run)")
    validate_ranges(req.params)
    if opts.get("tags"):
        from comfy_gen.metadata import parse_tags

        parse_tags(opts["tags"])  # a bad --tags fails now, not after the render
    strategy = _pick(opts, req.preset, "retry_strategy", "progressive")
    max_attempts = int(_pick(opts, req.preset, "max_attempts", 3))
    _check_strategy(strategy)
    _input_size(opts)
    target = adhoc_output_path(settings, opts.get("output"))  # PathNotAllowed before any work

    work_root = Path(settings.state_dir) / "work"
    work_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="generate-", dir=work_root))
    client = _make_client(settings, opts)
    current: dict[str, str] = {}
    stored: dict[str, Any] | None = None
    final: Path | None = None
    try:
        if not client.is_available():
            raise ComfyUIUnavailable(f"ComfyUI is not reachable at {client.base_url}", url=client.base_url,
                                     hint="Start it (comfy-gen server start), or pass --url / set "
                                          "COMFY_GEN_COMFYUI_URL.")
        object_info = client.object_info()
        if isinstance(req.workflow, dict):
            workflow = normalize_graph(req.workflow, object_info=object_info, source=req.workflow_name)
        else:
            workflow = load_workflow(req.workflow, workflows_dir=settings.workflows_dir, object_info=object_info)
            req.workflow_name = _workflow_name(req.workflow, settings)
        params = _prepare_input(client, req, settings, work, opts["dry_run"])
        # Preflight the composed graph (a fixed seed: the check must not depend on chance).
        probe = params if params.seed not in (None, -1) else params.replace(seed=0)
        check_workflow(compose(workflow, probe), object_info)
        if opts["dry_run"]:
            printer.info(f"Dry run OK: workflow {req.workflow_name} and every model it needs exist on "
                         f"{client.base_url}; nothing was queued.")
            if opts["json_progress"]:
                printer.emit({"type": "result", "status": "dry_run", "workflow": req.workflow_name})
            return 0
        scorer, thresholds = _scorer(req, settings, printer)
        started = time.monotonic()
        outcome = run_attempts(
            client, workflow, params, dest_dir=work, name="attempt",
            scorer=scorer, thresholds=thresholds, strategy=strategy, max_attempts=max_attempts,
            validation_prompt=params.prompt, on_event=printer,
            on_submitted=lambda pid: current.update(prompt_id=pid),
            on_attempt=lambda a: _report_attempt(printer, a, max_attempts if scorer else 1),
            timeout=opts.get("timeout"),
        )
        best = outcome.best
        if best is None or not best.files:
            from comfy_gen.errors import ExecutionFailed

            raise ExecutionFailed("The job finished without an output image", prompt_id=current.get("prompt_id"))
        final = _final_target(target, best.files[0])
        stored = store_output(
            best.files[0], final, settings=settings, outcome=outcome, workflow_name=req.workflow_name,
            params=best.params, job_key=None, item=None, recipe=None, run_id=None, flow_run_id=None,
            upload=opts["upload"], metadata=not opts["no_metadata"], preset=req.preset_name,
            organization={"project": opts.get("project"), "batch_id": opts.get("batch_id"),
                          "tags": opts.get("tags")},
            generation_time=time.monotonic() - started,
        )
    except KeyboardInterrupt:
        _interrupted(client, current.get("prompt_id"), final if stored is None else None, printer)
        return EXIT_INTERRUPTED
    finally:
        shutil.rmtree(work, ignore_errors=True)
        client.close()

    _report_result(printer, opts, outcome, stored)
    if outcome.status in ("best_effort", "failed"):
        raise ValidationFailed(
            f"Validation failed after {len(outcome.attempts)} attempt(s): {best.reason}; "
            f"the best attempt (#{best.number}) was kept at {stored['file']}",
            best=best.to_dict(), attempts=[a.to_dict() for a in outcome.attempts])
    return 0


def _interrupted(client: Any, prompt_id: str | None, partial: Path | None, printer: ProgressPrinter) -> None:
    """Ctrl-C: cancel only our prompt (never a bare /interrupt) and drop partial output."""
    from comfy_gen.errors import ComfyGenError
    from comfy_gen.outputs import remove_output

    if prompt_id:
        try:
            state = client.cancel(prompt_id)
            printer.info(f"Cancelled our job {prompt_id} ({state}).")
        except ComfyGenError as exc:
            printer.warn(f"Could not cancel job {prompt_id}: {exc}")
    if partial is not None:
        remove_output(partial)
    click.echo("Interrupted.", err=True)


def _report_attempt(printer: ProgressPrinter, attempt: Any, limit: int) -> None:
    if printer.json_progress:
        data = attempt.to_dict()
        data.pop("files", None)  # work files: only the kept attempt survives, as the result's file
        printer.emit({"type": "attempt", **data})
        return
    score = (attempt.scores or {}).get("positive_score")
    detail = attempt.reason or "rendered"
    if score is not None:
        detail += f" (CLIP {score:.2f})"
    printer.info(f"Attempt {attempt.number}/{limit} seed {attempt.params.seed}: {detail}")


def _report_result(printer: ProgressPrinter, opts: dict[str, Any], outcome: Any, stored: dict[str, Any]) -> None:
    if stored.get("upload") == "queued":
        printer.warn(f"upload failed ({stored.get('upload_error') or 'storage unavailable'}); the image is "
                     f"kept at {stored['file']} and queued in the outbox (retry: comfy-gen storage sync)")
    elif stored.get("upload") == "local-only":
        printer.warn("--upload given but no object storage is configured (COMFY_GEN_MINIO_ENDPOINT); "
                     "the image stays local")
    if opts["json_progress"]:
        printer.emit({"type": "result", "status": outcome.status, **stored,
                      "attempts": [{k: v for k, v in a.to_dict().items() if k != "files"}
                                   for a in outcome.attempts]})
    elif not opts["quiet"]:
        click.echo(stored["file"])
        if stored.get("url"):
            click.echo(stored["url"])


def _common_options(fn: Any) -> Any:
    options = [
        click.option("--url", default=None, help="ComfyUI URL (default: COMFY_GEN_COMFYUI_URL)."),
        click.option("--output", "-o", default=None,
                     help="Output file, inside the working directory or the output folder "
                          "(default: <output_dir>/adhoc/<time>.png)."),
        click.option("--json-progress", is_flag=True, help="One JSON object per event on stdout."),
        click.option("--quiet", "-q", is_flag=True, help="Print only warnings and errors."),
        click.option("--validate/--no-validate", default=None, help="CLIP-validate the image (default: off)."),
        click.option("--positive-threshold", type=float, default=None,
                     help="Minimum CLIP score (0-100 scale, 100*cos; default: per model). Implies --validate."),
        click.option("--delta-threshold", type=float, default=None,
                     help="Minimum positive-negative margin. Implies --validate."),
        click.option("--retry-strategy", default=None,
                     help="progressive (default) | seed_search | prompt_enhance | validation_retry."),
        click.option("--max-attempts", type=click.IntRange(1, 20), default=None,
                     help="Attempts when validation fails (default 3)."),
        click.option("--upload/--no-upload", default=False,
                     help="Upload to S3/MinIO (a failed upload is kept locally in the outbox)."),
        click.option("--no-metadata", is_flag=True, help="Do not write the sidecar or embed PNG metadata."),
        click.option("--project", default=None), click.option("--batch-id", default=None),
        click.option("--tags", default=None, help='Organisation tags "k:v,flag".'),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Overall wait for one job (s)."),
        click.option("--dry-run", is_flag=True, help="Check server, workflow and models; queue nothing."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.command("generate")
@click.option("--workflow", "-w", required=True, help="Workflow name in workflows/ or a path (API format).")
@click.option("--prompt", "-p", default=None, help="Positive prompt.")
@click.option("--negative-prompt", "-n", default=None, help="Negative prompt (default: the workflow's).")
@click.option("--input-image", "-i", default=None, help="Input image: a path in an allowed folder or an http(s) URL.")
@click.option("--resize", default=None, help="Resize the input image to WxH.")
@click.option("--crop", type=click.Choice(["cover", "contain", "center"]), default=None,
              help="How --resize keeps the aspect ratio (default: plain resize).")
@click.option("--denoise", type=float, default=None, help="Denoise strength 0-1 (img2img).")
@click.option("--lora", multiple=True, help="NAME[:STRENGTH], repeatable.")
@click.option("--steps", type=int, default=None)
@click.option("--cfg", type=float, default=None)
@click.option("--seed", type=int, default=None, help="-1 or unset = random (the seed used is recorded).")
@click.option("--width", type=int, default=None)
@click.option("--height", type=int, default=None)
@click.option("--sampler", default=None)
@click.option("--scheduler", default=None)
@click.option("--checkpoint", default=None, help="Override the workflow's model file.")
@click.option("--preset", default=None, help="Named preset (comfy_gen/presets.yaml or COMFY_GEN_PRESETS_FILE).")
@_common_options
def generate(**opts: Any) -> int:
    """Render one image, optionally CLIP-validated with retries, stored locally (and uploaded)."""
    from comfy_gen.config import get_settings
    from comfy_gen.presets import get_preset

    preset = get_preset(opts["preset"], get_settings().presets_file) if opts.get("preset") else {}
    req = Request(workflow=opts["workflow"], workflow_name=str(opts["workflow"]),
                  params=params_from_options(opts, preset), opts=opts, preset=preset,
                  preset_name=opts.get("preset"))
    return run_generate(req)


@click.command("reproduce")
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@_common_options
def reproduce(image: str, **opts: Any) -> int:
    """Re-render IMAGE from its metadata: same workflow, parameters and seed.

    Uses the comfy-gen PNG chunk or sidecar; for a plain ComfyUI image, its
    embedded API graph is queued as it is.
    """
    from comfy_gen.errors import MetadataNotFound
    from comfy_gen.metadata import read_metadata
    from comfy_gen.params import GenerationParams

    meta = read_metadata(image)
    opts.update(input_image=None, resize=None, crop=None)
    info = meta.get("comfy_gen") or {}
    workflow = info.get("workflow") or (meta.get("workflow") or {}).get("name")
    if info.get("params") and workflow:
        params = GenerationParams.from_dict(info["params"])
        return run_generate(Request(workflow=workflow, workflow_name=str(workflow), params=params, opts=opts))
    if isinstance(meta.get("prompt"), dict):
        from comfy_gen.workflow import get_params, normalize_graph

        graph = normalize_graph(meta["prompt"], source=image)
        base = get_params(graph)
        # Queue the embedded graph as it is; only the seed must be pinned (None = random).
        params = GenerationParams(prompt=base.prompt, seed=base.seed if base.seed is not None else 0)
        return run_generate(Request(workflow=graph, workflow_name=f"{Path(image).name} (embedded graph)",
                                    params=params, opts=opts))
    raise MetadataNotFound(f"{image} has no workflow and parameters in its metadata; cannot reproduce it")
