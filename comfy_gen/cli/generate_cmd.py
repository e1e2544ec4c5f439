"""`comfy-gen generate` and `comfy-gen reproduce`: one image, validated, with retries."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from comfy_gen.cli._errors import EXIT_INTERRUPTED


class ProgressPrinter:
    """Prints events: one JSON object per line, a live bar on a terminal, or nothing."""

    def __init__(self, *, json_progress: bool, quiet: bool) -> None:
        self.json_progress = json_progress
        self.quiet = quiet
        self.tty = sys.stderr.isatty()

    def __call__(self, event: Any) -> None:
        if self.json_progress:
            data = event.to_dict()
            if event.type == "progress":
                data.update(max_steps=event.max, percent=round(100 * event.fraction, 1))
            click.echo(json.dumps(data, default=str))
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
            click.echo("Started", err=True)

    def info(self, message: str) -> None:
        if not self.quiet and not self.json_progress:
            click.echo(message, err=True)
        elif self.json_progress:
            click.echo(json.dumps({"type": "info", "message": message}))


def _params_from_options(opts: dict[str, Any]) -> "Any":
    from comfy_gen.params import GenerationParams, LoraSpec
    from comfy_gen.presets import PARAM_KEYS

    values: dict[str, Any] = {}
    loras: list[Any] = []
    if opts.get("preset_values"):
        preset = opts["preset_values"]
        values.update({k: preset[k] for k in PARAM_KEYS if k in preset and k != "loras"})
        loras += [LoraSpec.parse(x) if isinstance(x, str) else
                  LoraSpec(x["name"], float(x.get("strength", 1.0))) for x in preset.get("loras") or []]
    for key in ("steps", "cfg", "seed", "width", "height", "sampler", "scheduler", "denoise", "checkpoint"):
        if opts.get(key) is not None:
            values[key] = opts[key]
    loras += [LoraSpec.parse(spec) for spec in opts.get("lora") or ()]
    return GenerationParams(prompt=opts.get("prompt"), negative_prompt=opts.get("negative_prompt"),
                            loras=tuple(loras), **values)


def run_generate(opts: dict[str, Any]) -> int:
    """The body of `generate` (also used by `reproduce`); returns the exit code."""
    from comfy_gen.comfyui import ComfyUIClient
    from comfy_gen.config import get_settings
    from comfy_gen.errors import ComfyUIUnavailable, UsageError, ValidationFailed
    from comfy_gen.generation import Thresholds, run_attempts
    from comfy_gen.images import fetch_input_image, parse_size, preprocess_image
    from comfy_gen.outputs import adhoc_output_path, store_output
    from comfy_gen.params import validate_ranges
    from comfy_gen.pipeline import compose, remove_files
    from comfy_gen.presets import get_preset
    from comfy_gen.workflow import check_workflow, load_workflow

    settings = get_settings()
    printer = ProgressPrinter(json_progress=opts["json_progress"], quiet=opts["quiet"])
    if opts.get("preset"):
        opts["preset_values"] = get_preset(opts["preset"], settings.presets_file)
    preset = opts.get("preset_values") or {}
    params = _params_from_options(opts)
    if not params.prompt and not opts["dry_run"]:
        raise UsageError("--prompt is required (unless --dry-run)")
    validate_ranges(params)
    resize = parse_size(opts["resize"]) if opts.get("resize") else None

    url = opts.get("url") or settings.comfyui_url
    client = ComfyUIClient(url, timeout=settings.http_timeout, connect_timeout=settings.connect_timeout,
                           retries=settings.http_retries, retry_delay=settings.retry_delay,
                           job_timeout=opts.get("timeout") or settings.job_timeout,
                           poll_interval=settings.poll_interval)
    with client:
        if not client.is_available():
            raise ComfyUIUnavailable(f"ComfyUI is not reachable at {url}", url=url,
                                     hint="Start it (comfy-gen server start), or pass --url / set COMFY_GEN_COMFYUI_URL.")
        object_info = client.object_info()
        workflow = load_workflow(opts["workflow"], workflows_dir=settings.workflows_dir, object_info=object_info)

        allowed = [Path.cwd(), Path(settings.output_dir), *settings.input_dirs]
        if opts.get("input_image"):
            work = Path(settings.state_dir) / "inputs"
            local = fetch_input_image(opts["input_image"], work, allowed_dirs=allowed)
            if resize or opts.get("crop"):
                local = preprocess_image(local, work / f"prep_{local.name}", resize=resize, crop=opts.get("crop"))
            params = params.replace(input_image=client.upload_image(local))

        check_workflow(compose(workflow, params.replace(seed=params.seed if params.seed not in (None, -1) else 0)),
                       object_info)
        if opts["dry_run"]:
            printer.info(f"Dry run OK: workflow {opts['workflow']} and every model exist on {url}; nothing queued.")
            return 0

        validate = opts["validate"] if opts["validate"] is not None else bool(preset.get("validate", False))
        scorer = None
        if validate:
            from comfy_gen.validation import get_validator

            scorer = get_validator(settings.clip_model)  # ValidatorUnavailable -> exit 2
        threshold = opts.get("positive_threshold") or preset.get("positive_threshold")
        if threshold is None and scorer is not None:
            from comfy_gen.validation import default_threshold

            threshold = default_threshold(settings.clip_model)
        thresholds = Thresholds(positive=threshold, delta=opts.get("delta_threshold"))
        output = adhoc_output_path(settings, opts.get("output"))
        current: dict[str, str] = {}
        started = time.monotonic()
        try:
            outcome = run_attempts(
                client, workflow, params, dest_dir=output.parent / ".work", name=output.stem,
                scorer=scorer, thresholds=thresholds, strategy=opts["retry_strategy"],
                max_attempts=opts["max_attempts"], on_event=printer,
                on_submitted=lambda pid: current.update(prompt_id=pid),
                on_attempt=lambda a: printer.info(
                    f"Attempt {a.number}: " + (a.reason or "rendered") +
                    (f" (score {a.scores.get('positive_score'):.2f})" if a.scores and a.scores.get("positive_score") is not None else "")),
            )
        except KeyboardInterrupt:
            if current.get("prompt_id"):
                state = client.cancel(current["prompt_id"])
                printer.info(f"Cancelled our job {current['prompt_id']} ({state}).")
            remove_files(sorted((output.parent / ".work").glob(f"{output.stem}_a*")))
            return EXIT_INTERRUPTED
        stored = store_output(
            outcome.best.files[0], output, settings=settings, outcome=outcome,
            workflow_name=str(opts["workflow"]), params=outcome.best.params, job_key=None, item=None,
            recipe=None, run_id=None, flow_run_id=None, upload=opts["upload"],
            metadata=not opts["no_metadata"], organization={"project": opts.get("project"),
                                                            "batch_id": opts.get("batch_id"),
                                                            "tags": opts.get("tags")},
            generation_time=time.monotonic() - started,
        )
    if opts["json_progress"]:
        click.echo(json.dumps({"type": "result", "status": outcome.status, **stored,
                               "attempts": [a.to_dict() for a in outcome.attempts]}, default=str))
    elif not opts["quiet"]:
        click.echo(stored["file"])
        if stored.get("url"):
            click.echo(stored["url"])
    if outcome.status in ("best_effort", "failed"):
        best = outcome.best
        raise ValidationFailed(
            f"Validation failed after {len(outcome.attempts)} attempt(s): {best.reason if best else 'no image'}; "
            f"the best attempt was kept at {stored['file']}",
            best=best.to_dict() if best else None, attempts=[a.to_dict() for a in outcome.attempts])
    return 0


def _common_options(fn: Any) -> Any:
    options = [
        click.option("--url", default=None, help="ComfyUI URL (default: COMFY_GEN_COMFYUI_URL)."),
        click.option("--output", "-o", default=None, help="Output file (default: <output_dir>/adhoc/<time>.png)."),
        click.option("--json-progress", is_flag=True, help="One JSON object per event on stdout."),
        click.option("--quiet", "-q", is_flag=True, help="Print only errors."),
        click.option("--validate/--no-validate", default=None, help="CLIP-validate the image."),
        click.option("--positive-threshold", type=float, default=None,
                     help="Minimum CLIP score (scale 0-100, 100*cos)."),
        click.option("--delta-threshold", type=float, default=None, help="Minimum positive-negative margin."),
        click.option("--retry-strategy", default="progressive", show_default=True,
                     help="progressive | seed_search | prompt_enhance | any registered strategy."),
        click.option("--max-attempts", type=click.IntRange(1, 20), default=3, show_default=True,
                     help="Attempts when validation fails."),
        click.option("--upload/--no-upload", default=False, help="Upload to S3/MinIO (failed uploads are kept in the outbox)."),
        click.option("--no-metadata", is_flag=True, help="Do not write the sidecar or embed PNG metadata."),
        click.option("--project", default=None), click.option("--batch-id", default=None),
        click.option("--tags", default=None, help='Organisation tags "k:v,flag".'),
        click.option("--timeout", type=float, default=None, help="Overall wait for the job (s)."),
        click.option("--dry-run", is_flag=True, help="Check server, workflow and models; queue nothing."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.command("generate")
@click.option("--workflow", "-w", required=True, help="Workflow name in workflows/ or a path (API format).")
@click.option("--prompt", "-p", default=None, help="Positive prompt.")
@click.option("--negative-prompt", "-n", default=None, help="Negative prompt (default: the workflow's).")
@click.option("--input-image", "-i", default=None, help="Input image (path in an allowed folder, or http(s) URL).")
@click.option("--resize", default=None, help="Resize the input image to WxH.")
@click.option("--crop", type=click.Choice(["cover", "contain", "center"]), default=None)
@click.option("--denoise", type=float, default=None)
@click.option("--lora", multiple=True, help="NAME[:STRENGTH], repeatable.")
@click.option("--steps", type=int, default=None)
@click.option("--cfg", type=float, default=None)
@click.option("--seed", type=int, default=None, help="-1 or unset = random (always written).")
@click.option("--width", type=int, default=None)
@click.option("--height", type=int, default=None)
@click.option("--sampler", default=None)
@click.option("--scheduler", default=None)
@click.option("--checkpoint", default=None, help="Override the workflow's model file.")
@click.option("--preset", default=None, help="Named preset (comfy_gen/presets.yaml).")
@_common_options
def generate(**opts: Any) -> int:
    """Render one image, optionally validated with retries, stored locally (and uploaded)."""
    return run_generate(opts)


@click.command("reproduce")
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@_common_options
def reproduce(image: str, **opts: Any) -> int:
    """Re-render IMAGE from its embedded metadata (same workflow, parameters and seed)."""
    from comfy_gen.metadata import read_metadata

    meta = read_metadata(image)
    info = meta.get("comfy_gen") or {}
    params = info.get("params") or {}
    workflow = info.get("workflow") or (meta.get("workflow") or {}).get("name")
    if not workflow:
        from comfy_gen.errors import UsageError

        raise UsageError(f"{image} has no workflow name in its metadata; cannot reproduce it")
    opts.update(workflow=workflow, prompt=params.get("prompt"), negative_prompt=params.get("negative_prompt"),
                input_image=None, resize=None, crop=None,
                lora=[f"{lo['name']}:{lo.get('strength_model', 1.0)}" for lo in params.get("loras") or []],
                preset=None)
    for key in ("steps", "cfg", "seed", "width", "height", "sampler", "scheduler", "denoise", "checkpoint"):
        opts[key] = params.get(key)
    return run_generate(opts)
