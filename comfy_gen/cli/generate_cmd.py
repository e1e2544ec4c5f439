"""`comfy-gen generate` and `comfy-gen reproduce`: one image, validated, with retries.

A thin adapter over ``comfy_gen.service``: click options (and a preset) are
parsed here into a typed ``GenerateRequest``; the service renders, validates,
keeps and publishes; this module prints events and the result. Paths typed
here are the user's own (``paths="trusted"``). Ctrl-C cancels only our own
prompt, removes partial files and exits 130.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import click

from comfy_gen.cli.quality_flags import quality_mode, quality_options, with_quality

if TYPE_CHECKING:  # pragma: no cover
    from typing import Sequence

    from comfy_gen.comfyui.events import Event
    from comfy_gen.params import GenerationParams, LoraSpec
    from comfy_gen.presets import ValidationDefaults
    from comfy_gen.service import GenerateRequest, GenerateResult, ValidationOptions

#: Options that map one to one onto GenerationParams fields.
PARAM_OPTIONS = ("steps", "cfg", "seed", "width", "height", "sampler", "scheduler", "denoise", "checkpoint")


class ProgressPrinter:
    """Prints events: one JSON object per line on stdout, a live rich display on a
    terminal (stderr), one line per event otherwise, or nothing (--quiet)."""

    def __init__(self, *, json_progress: bool, quiet: bool, validating: bool = False) -> None:
        from comfy_gen.progress_events import SeedEvents

        self.json_progress = json_progress
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.validating = validating
        self.seed_events = SeedEvents()
        self._bar: Any = None   # comfy_gen.cli.progress.SamplingBar, started on the first event

    def close(self, *, done: bool = False) -> None:
        """Stop the live display (the terminal gets its cursor back); ``done`` says so on it."""
        if self._bar is not None:
            self._bar.close(done=done)
            self._bar = None

    def __call__(self, event: "Event") -> None:
        if event.type == "warning":
            self.warn(getattr(event, "message", ""))
        elif self.json_progress:
            for data in self._json_events(event):
                self.emit(data)
        elif not self.quiet:
            self._human(event)

    def _human(self, event: Any) -> None:
        if self.tty:
            self._live(event)
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
        elif event.type == "info":
            click.echo(event.message, err=True)
        elif event.type == "attempt":
            click.echo(_attempt_line(event.attempt, event.limit), err=True)

    def _live(self, event: Any) -> None:
        """The same events on a terminal: messages above a line that shows the
        state, the sampling steps and ComfyUI's ETA."""
        if self._bar is None:
            from comfy_gen.cli.progress import SamplingBar

            self._bar = SamplingBar(sys.stderr)
        bar = self._bar
        if event.type == "progress":
            bar.step(event.step, event.max, event.eta_seconds)
        elif event.type == "execution_start":
            bar.line(f"Started {event.prompt_id}")
            bar.restart("Rendering")
        elif event.type == "execution_cached" and event.nodes:
            bar.line(f"{len(event.nodes)} node(s) cached")
        elif event.type == "execution_success":
            bar.state("Validating" if self.validating else "Saving")
        elif event.type == "info":
            bar.line(event.message)
        elif event.type == "attempt":
            bar.line(_attempt_line(event.attempt, event.limit))
            if not event.attempt.passed and event.attempt.number < event.limit:
                bar.restart("Waiting for GPU")

    def _json_events(self, event: Any) -> list[dict[str, Any]]:
        """ComfyUI events in the original's shapes (comfy_gen.progress_events, shared
        with the MCP server); comfy-gen's own events (info, attempt) as they are."""
        from comfy_gen.comfyui.events import EVENT_TYPES, Preview

        if event.type in EVENT_TYPES or isinstance(event, Preview):
            return self.seed_events(event)
        return [event.to_dict()]

    def emit(self, data: dict[str, Any]) -> None:
        click.echo(json.dumps(data, default=str))

    def warn(self, message: str) -> None:
        # Warnings reach a human even with --quiet; JSON consumers get an event too.
        if self.json_progress:
            self.emit({"type": "warning", "message": message})
        if self._bar is not None:
            self._bar.line(f"Warning: {message}", style="yellow")
        else:
            click.echo(f"Warning: {message}", err=True)


def _attempt_line(attempt: Any, limit: int) -> str:
    score = (attempt.scores or {}).get("positive_score")
    detail = attempt.reason or "rendered"
    if score is not None:
        detail += f" (CLIP {score:.2f})"
    quality = (attempt.scores or {}).get("quality_composite")
    if quality is not None and "quality" not in detail.lower():
        detail += f" (quality {quality:.2f})"
    return f"Attempt {attempt.number}/{limit} seed {attempt.params.seed}: {detail}"


def params_from_options(opts: Mapping[str, Any], preset: Mapping[str, Any], *,
                        base: Mapping[str, Any] | None = None, lora_preset: "Sequence[LoraSpec]" = ()
                        ) -> "GenerationParams":
    """CLI flags > preset > ``base`` (a prompt preset's recommended settings) > workflow
    (None keeps the workflow's value). LoRAs: the preset's, ``lora_preset``'s, then --lora."""
    from comfy_gen.params import GenerationParams, LoraSpec
    from comfy_gen.presets import PARAM_KEYS

    values: dict[str, Any] = {k: v for k, v in (base or {}).items() if k in PARAM_OPTIONS}
    values.update({k: preset[k] for k in PARAM_KEYS if k in preset and k != "loras"})
    loras = [LoraSpec.parse(x) if isinstance(x, str) else
             LoraSpec(str(x["name"]), float(x.get("strength", 1.0))) for x in preset.get("loras") or []]
    loras += list(lora_preset)
    values.update({k: opts[k] for k in PARAM_OPTIONS if opts.get(k) is not None})
    values.update(video_values(opts, preset))
    loras += [LoraSpec.parse(spec) for spec in opts.get("lora") or ()]
    return GenerationParams(prompt=opts.get("prompt"), negative_prompt=opts.get("negative_prompt"),
                            loras=tuple(loras), **values)


def video_values(opts: Mapping[str, Any], preset: Mapping[str, Any]) -> dict[str, Any]:
    """--frames/--length, --fps, --video-resolution, --transparent[-subject] (flags > preset)."""
    from comfy_gen.errors import UsageError
    from comfy_gen.images import parse_size
    from comfy_gen.workflow.transparent import transparent_fields

    values: dict[str, Any] = {}
    frames = opts.get("frames") if opts.get("frames") is not None else preset.get("frames", preset.get("length"))
    fps = opts.get("fps") if opts.get("fps") is not None else preset.get("fps")
    if frames is not None:
        values["frames"] = int(frames)
    if fps is not None:
        values["fps"] = float(fps)
    if opts.get("video_resolution"):
        width, height = parse_size(opts["video_resolution"])
        for name, value in (("width", width), ("height", height)):
            if opts.get(name) is not None and opts[name] != value:
                raise UsageError(f"--video-resolution {opts['video_resolution']} contradicts --{name} {opts[name]}")
        values.update(width=width, height=height)
    values.update(transparent_fields(opts.get("transparent"), opts.get("transparent_subject")))
    return values


def _pick(opts: Mapping[str, Any], preset: Mapping[str, Any], key: str, default: Any) -> Any:
    value = opts.get(key)
    if value is None:
        value = preset.get(key)
    return default if value is None else value


def build_request(opts: Mapping[str, Any], *, workflow: str | Mapping[str, Any], params: "GenerationParams",
                  preset: Mapping[str, Any] | None = None, preset_name: str | None = None,
                  workflow_name: str | None = None,
                  defaults: "ValidationDefaults | None" = None) -> "GenerateRequest":
    """The typed request for these click options (flags > preset > the presets
    file's ``validation`` block, ``defaults`` > built-in defaults)."""
    from comfy_gen.presets import ValidationDefaults
    from comfy_gen.service import GenerateRequest, InputImage, Organization, ValidationOptions

    preset, defaults = preset or {}, defaults or ValidationDefaults()
    validate = opts.get("validate")
    if validate is None and (opts.get("positive_threshold") is not None or opts.get("delta_threshold") is not None):
        validate = True  # a threshold on the command line asks for validation
    people = people_checks(opts)
    if people and validate is None:
        validate = True  # as in the original: each of these flags implies --validate
    return GenerateRequest(
        workflow=workflow, workflow_name=workflow_name, params=params, input_image=_input_image(opts),
        validation=check_flags(opts, ValidationOptions(
            enabled=bool(_pick({"validate": validate}, preset, "validate", defaults.enabled)),
            positive_threshold=_pick(opts, preset, "positive_threshold", defaults.threshold),
            delta_threshold=_pick(opts, preset, "delta_threshold", None),
            checks=("clip", *people) if people else ())),
        enhance=enhance_options(opts),
        retry_strategy=_pick(opts, preset, "retry_strategy", "progressive"),
        max_attempts=int(_pick(opts, preset, "max_attempts", defaults.attempts)),
        output=opts.get("output"), upload=bool(opts.get("upload")), metadata=not opts.get("no_metadata"),
        embed_metadata=not opts.get("no_embed_metadata"),
        organization=Organization(opts.get("project"), opts.get("batch_id"), opts.get("tags")),
        preset=preset_name, timeout=opts.get("timeout"), dry_run=bool(opts.get("dry_run")),
        url=opts.get("url"), paths="trusted")


def check_flags(opts: Mapping[str, Any], validation: "ValidationOptions") -> "ValidationOptions":
    """``--checks`` and ``--technical-checks/--no-technical-checks`` applied to the
    validation options. ``--checks`` names the validators (and implies --validate);
    the technical checks join any validation unless ``--no-technical-checks``;
    ``--technical-checks`` alone validates with them only (no CLIP)."""
    import dataclasses

    from comfy_gen.cli.validate_cmd import parse_check_list

    technical = opts.get("technical_checks")
    if opts.get("checks"):
        listed = list(parse_check_list(opts["checks"]))
        named = {spec if isinstance(spec, str) else spec.get("name") for spec in listed}
        # --validate-person-count & co. add to an explicit list (their "clip" does not).
        listed += [c for c in validation.checks if c != "clip" and c not in named]
        validation = dataclasses.replace(validation, enabled=True, checks=tuple(listed))
    elif technical and not validation.enabled:
        validation = dataclasses.replace(validation, enabled=True, checks=("technical",))
    if technical is not None:
        validation = dataclasses.replace(validation, technical=bool(technical))
    return validation


def _checks_options(fn: Any) -> Any:
    """The validation-checks flags (docs/validation.md), kept together."""
    options = [
        click.option("--checks", default=None, metavar="LIST",
                     help="Checks to run, comma-separated (technical,clip,...; comfy-gen validate "
                          "--list-checks). Implies --validate."),
        click.option("--technical-checks/--no-technical-checks", default=None,
                     help="The model-free technical checks (black, blank, blurred, clipped images): on "
                          "whenever validating; alone, they validate without CLIP."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def enhance_options(opts: Mapping[str, Any]) -> Any:
    """--enhance-prompt / --enhance-style (a style implies enhancing); checked before any server."""
    from comfy_gen.enhance import EnhanceOptions, check_style

    style = opts.get("enhance_style")
    if not (opts.get("enhance_prompt") or style):
        return EnhanceOptions()
    return EnhanceOptions(enabled=True, style=check_style(style) if style else None)


def _enhance_options(fn: Any) -> Any:
    """The prompt enhancer's flags (docs/validation.md#prompt-enhancer)."""
    from comfy_gen.enhance.styles import STYLES

    options = [
        click.option("--enhance-prompt", is_flag=True,
                     help="Rewrite the prompt with the prompt enhancer (COMFY_GEN_ENHANCE_*) before rendering; "
                          "the original is kept in the metadata."),
        click.option("--enhance-style", default=None, metavar="STYLE",
                     help=f"Enhancement style: {', '.join(sorted(STYLES))} (implies --enhance-prompt)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


#: --validate-person-count / --validate-pose / --validate-content -> validator names.
PEOPLE_FLAGS = (("validate_person_count", "person"), ("validate_pose", "pose"), ("validate_content", "content"))


def people_checks(opts: Mapping[str, Any]) -> tuple[str, ...]:
    """The people/pose/content checks the flags ask for, run after CLIP (docs/validation.md#people-pose-and-content)."""
    return tuple(name for flag, name in PEOPLE_FLAGS if opts.get(flag))


def _people_options(fn: Any) -> Any:
    """The original's extra checks; each implies --validate."""
    options = [
        click.option("--validate-person-count", is_flag=True,
                     help="Also check the number of people against the prompt (a person detector). "
                          "Implies --validate."),
        click.option("--validate-pose", is_flag=True,
                     help="Also check each person's pose is coherent (keypoint model). Implies --validate."),
        click.option("--validate-content", is_flag=True,
                     help="Also caption the image and ask it the prompt's subject count (BLIP). "
                          "Implies --validate."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _input_image(opts: Mapping[str, Any]) -> Any:
    """--input-image with --resize/--crop, checked before the server is contacted."""
    from comfy_gen.errors import UsageError
    from comfy_gen.images import parse_size
    from comfy_gen.service import InputImage

    resize = parse_size(opts["resize"]) if opts.get("resize") else None
    if opts.get("crop") and resize is None:
        raise UsageError(f"--crop {opts['crop']} needs --resize WxH")
    if resize and not opts.get("input_image"):
        raise UsageError("--resize applies to --input-image; use --width/--height for the output size")
    return InputImage(opts["input_image"], resize, opts.get("crop")) if opts.get("input_image") else None


def run_generate(request: "GenerateRequest", *, json_progress: bool, quiet: bool) -> int:
    """Run the service, print the result; the exit code (ValidationFailed: 3)."""
    from comfy_gen.config import get_settings
    from comfy_gen.service import generate

    printer = ProgressPrinter(json_progress=json_progress, quiet=quiet, validating=request.validation.enabled)
    result = None
    try:
        result = generate(request, settings=get_settings(), on_event=printer)
    finally:
        printer.close(done=result is not None)
    _print_result(printer, result)
    error = result.validation_error()
    if error is not None:
        raise error
    return 0


def _print_result(printer: ProgressPrinter, result: "GenerateResult") -> None:
    if printer.json_progress:
        printer.emit({"type": "result", **result.to_dict()})
    elif not printer.quiet and result.file is not None:
        click.echo(str(result.file))
        if result.url:
            click.echo(result.url)


def _common_options(fn: Any) -> Any:
    options = [
        click.option("--url", default=None, help="ComfyUI URL (default: COMFY_GEN_COMFYUI_URL)."),
        click.option("--output", "-o", default=None,
                     help="Output file or folder, any path you can write "
                          "(default: <output_dir>/adhoc/<UTC time>.png)."),
        click.option("--json-progress", is_flag=True, help="One JSON object per event on stdout."),
        click.option("--quiet", "-q", is_flag=True, help="Print only warnings and errors."),
        click.option("--validate/--no-validate", default=None, help="CLIP-validate the image (default: off)."),
        click.option("--positive-threshold", type=float, default=None,
                     help="Minimum CLIP score (0-100 scale, 100*cos; default: per model). Implies --validate."),
        click.option("--delta-threshold", type=float, default=None,
                     help="Minimum positive-negative margin. Implies --validate."),
        click.option("--retry-strategy", default=None,
                     help="progressive (default) | seed_search | prompt_enhance | validation_retry."),
        click.option("--max-attempts", "--retry-limit", type=click.IntRange(1, 20), default=None,
                     help="Attempts when validation fails (default 3; --retry-limit is the original's name)."),
        click.option("--upload/--no-upload", default=False,
                     help="Upload to S3/MinIO (a failed upload is kept locally in the outbox)."),
        click.option("--no-metadata", is_flag=True, help="Do not write the sidecar or embed PNG metadata."),
        click.option("--no-embed-metadata", is_flag=True,
                     help="Write the sidecar only; leave the image file as ComfyUI made it."),
        click.option("--project", default=None), click.option("--batch-id", default=None),
        click.option("--tags", default=None, help='Organisation tags "k:v,flag".'),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Overall wait for one job (s)."),
        click.option("--dry-run", is_flag=True, help="Check server, workflow and models; queue nothing."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _seed_options(fn: Any) -> Any:
    """The original's catalog and retry flags, kept together (comfy_gen.cli.presets_cmd)."""
    options = [
        click.option("--auto-retry/--no-auto-retry", default=None,
                     help="Retry when validation fails (the original's switch; --no-auto-retry = one attempt)."),
        click.option("--prompt-preset", default=None,
                     help="Saved prompt from the prompt catalog (--prompt replaces its text; -n is appended "
                          "to its negative)."),
        click.option("--lora-preset", default=None,
                     help="LoRA set from the LoRA catalog's model_suggestions, at their recommended strengths."),
        click.option("--list-presets", is_flag=True, help="List prompt presets and --preset presets, then exit."),
        click.option("--list-loras", is_flag=True,
                     help="List the server's LoRAs and the catalog's LoRA presets, then exit."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _video_options(fn: Any) -> Any:
    """Video and background-removal flags (docs/video.md)."""
    options = [
        click.option("--frames", "--length", "frames", type=int, default=None,
                     help="Video length in frames (video workflows; 1-1024)."),
        click.option("--fps", type=float, default=None, help="Video frame rate (video workflows)."),
        click.option("--video-resolution", default=None, help="Video size WxH (same as --width/--height)."),
        click.option("--transparent", is_flag=True,
                     help="Remove the background (segment-anything custom nodes): an RGBA PNG."),
        click.option("--transparent-subject", default=None,
                     help="What to keep with --transparent (default: the prompt)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.command("generate")
@click.option("--workflow", "-w", default=None,
              help="Workflow file (API format): a path, else a name in the workflows folder. "
                   "Required unless --list-presets/--list-loras.")
@click.option("--prompt", "-p", default=None, help="Positive prompt.")
@click.option("--negative-prompt", "-n", default=None, help="Negative prompt (default: the workflow's).")
@click.option("--input-image", "-i", default=None, help="Input image: a path or an http(s) URL.")
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
@_seed_options
@_video_options
@_checks_options
@_enhance_options
@quality_options
@_people_options
@_common_options
def generate(**opts: Any) -> int:
    """Render one image, optionally CLIP-validated with retries, stored locally (and uploaded)."""
    from comfy_gen.cli import presets_cmd
    from comfy_gen.config import get_settings
    from comfy_gen.errors import UsageError
    from comfy_gen.presets import get_preset, load_validation_defaults

    settings = get_settings()
    if opts.get("list_presets") or opts.get("list_loras"):
        if opts.get("list_presets"):
            presets_cmd.list_presets(settings, as_json=opts["json_progress"])
        if opts.get("list_loras"):
            presets_cmd.list_loras(settings, url=opts.get("url"), as_json=opts["json_progress"])
        return 0
    if not opts.get("workflow"):
        raise UsageError("Missing option '--workflow' / '-w' (required unless --list-presets or --list-loras)")
    # The original's precedence: the quality-refinement mode ignores --no-auto-retry.
    if opts.get("auto_retry") is False and opts.get("max_attempts") is None and not quality_mode(opts):
        opts = {**opts, "max_attempts": 1}
    base: Mapping[str, Any] = {}
    if opts.get("prompt_preset"):
        from comfy_gen.catalogs import prompt_catalog_for

        prompt_preset = prompt_catalog_for(settings).get(opts["prompt_preset"])
        opts, base = presets_cmd.prompt_preset_options(opts, prompt_preset), prompt_preset.recommended_settings
    lora_preset = presets_cmd.lora_preset_specs(settings, opts.get("lora_preset"))
    preset = get_preset(opts["preset"], settings.presets_file) if opts.get("preset") else {}
    params = params_from_options(opts, preset, base=base, lora_preset=lora_preset)
    request = build_request(opts, workflow=opts["workflow"], params=params, preset=preset,
                            preset_name=opts.get("preset"),
                            defaults=load_validation_defaults(settings.presets_file))
    request = with_quality(request, opts)
    return run_generate(request, json_progress=opts["json_progress"], quiet=opts["quiet"])


@click.command("reproduce")
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@_checks_options
@_common_options
def reproduce(image: str, **opts: Any) -> int:
    """Re-render IMAGE from its metadata: same workflow, parameters and seed.

    Uses the comfy-gen PNG chunk or sidecar; for a plain ComfyUI image, its
    embedded API graph is queued as it is.
    """
    from comfy_gen.errors import MetadataNotFound, UsageError
    from comfy_gen.metadata import read_metadata
    from comfy_gen.params import GenerationParams

    meta = read_metadata(image)
    opts.update(input_image=None, resize=None, crop=None)
    info = meta.get("comfy_gen") or {}
    workflow = info.get("workflow") or (meta.get("workflow") or {}).get("name")
    if info.get("params") and workflow:
        # A workflow outside the workflows folder is recorded relative to the image
        # (comfy_gen.outputs.localise_paths): resolve it from there first.
        beside = Path(image).resolve().parent / str(workflow)
        if not Path(str(workflow)).is_absolute() and beside.is_file():
            workflow = str(beside)
        try:
            params = GenerationParams.from_dict(info["params"])
        except UsageError as exc:
            raise UsageError(f"{image}: field 'comfy_gen.params' of its metadata: {exc.message}") from exc
        request = build_request(opts, workflow=str(workflow), params=params)
    elif isinstance(meta.get("prompt"), dict):
        from comfy_gen.workflow import get_params, normalize_graph

        graph = normalize_graph(meta["prompt"], source=image)
        base = get_params(graph)
        # Queue the embedded graph as it is; only the seed must be pinned (None = random).
        params = GenerationParams(prompt=base.prompt, seed=base.seed if base.seed is not None else 0)
        request = build_request(opts, workflow=graph, params=params,
                                workflow_name=f"{Path(image).name} (embedded graph)")
    else:
        raise MetadataNotFound(f"{image} has no workflow and parameters in its metadata; cannot reproduce it")
    return run_generate(request, json_progress=opts["json_progress"], quiet=opts["quiet"])
