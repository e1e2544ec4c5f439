"""Generation tools: generate_image, img2img, generate_video, image_to_video, validate_workflow.

Each builds a ``GenerateRequest(paths="confined")`` and calls the one service
(``comfy_gen.service.generate``): output paths and input images are confined to
the server's folders, the policy tier comes from the server's settings, progress
goes out as MCP progress notifications, and cancelling the call cancels our job.

(No ``from __future__ import annotations`` in tool modules: FastMCP reads the
annotations at registration to build each tool's JSON schema.)
"""

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.fastmcp import Context
from pydantic import Field

from comfy_gen.errors import UsageError, WorkflowError
from comfy_gen.mcp._bridge import SeedProgress, run_blocking
from comfy_gen.params import GenerationParams, LoraSpec
from comfy_gen.workflow.transparent import transparent_fields

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.mcp.server import App

#: Model family -> the shipped workflow for each kind of job.
TXT2IMG = {"sd15": "sd15-txt2img", "sdxl": "sdxl-txt2img", "flux": "flux-dev"}
IMG2IMG = {"sd15": "sd15-img2img"}
#: Video workflows, the seed's first; the first one installed is used (an error names them all).
#: First installed wins. LTX-Video needs only ComfyUI's core nodes and writes an
#: animated WEBP; the Wan workflow needs VideoHelperSuite and writes MP4.
TEXT_TO_VIDEO = ("ltxv-t2v", "wan22-t2v-vhs")
IMAGE_TO_VIDEO = ("ltxv-i2v",)

Family = Literal["sd15", "sdxl", "flux"]
Json = dict[str, Any]
Ctx = Context[Any, Any, Any]  # FastMCP injects the request context into a parameter of this type

# Shared argument types: the descriptions are what an agent reads.
Prompt = Annotated[str, Field(description="What to draw.", min_length=1, max_length=10000)]
Negative = Annotated[str | None, Field(description="What to avoid; null keeps the workflow's default, "
                                                   "\"\" means none.", max_length=10000)]
Size = Annotated[int | None, Field(description="Pixels, 64-2048, divisible by 8; null: the workflow's.",
                                   ge=64, le=2048)]
Steps = Annotated[int | None, Field(description="Sampling steps 1-150; null: preset, else the workflow's.",
                                    ge=1, le=150)]
Cfg = Annotated[float | None, Field(description="CFG scale 1-20; null: preset, else the workflow's.", ge=1, le=20)]
Seed = Annotated[int, Field(description="-1 = random (the seed used is returned).", ge=-1, le=2**64 - 1)]
OutputPath = Annotated[str | None, Field(
    description="Where to keep the image, relative to the server's output folder (a path outside it is "
                "refused); default: <output>/adhoc/<UTC time>.png.")]
JsonProgress = Annotated[bool, Field(description="Also return every progress event as progress_updates.")]


def register(app: "App") -> None:
    mcp = app.mcp

    @mcp.tool()
    async def generate_image(
        ctx: Ctx,
        prompt: Prompt,
        negative_prompt: Negative = None,
        model: Annotated[Family, Field(description="Model family; picks the shipped workflow.")] = "sd15",
        workflow: Annotated[str | None, Field(description="A workflow name in the server's workflows "
                                                          "folder; overrides model.")] = None,
        width: Size = None, height: Size = None, steps: Steps = None, cfg: Cfg = None,
        sampler: Annotated[str | None, Field(description="Sampler name, e.g. euler.")] = None,
        scheduler: Annotated[str | None, Field(description="Scheduler name, e.g. normal, karras.")] = None,
        seed: Seed = -1,
        preset: Annotated[str | None, Field(description="A named parameter preset (draft, balanced, "
                                                        "high-quality, ...).")] = None,
        lora_preset: Annotated[str | None, Field(description="A LoRA preset of the LoRA catalog (its "
                                                             "default LoRAs at their recommended strength).")] = None,
        loras: Annotated[list[str] | None, Field(description="LoRAs as NAME[:STRENGTH].")] = None,
        categories: Annotated[list[str] | None, Field(description="Category ids composed into the prompt "
                                                                  "and settings (see list_categories).")] = None,
        validate: Annotated[bool | None, Field(description="CLIP-validate the image; null: the preset's "
                                                           "choice, else off.")] = None,
        positive_threshold: Annotated[float | None, Field(description="Minimum CLIP score 0-100 "
                                                                      "(implies validate).", ge=0, le=100)] = None,
        retry_strategy: Annotated[Literal["progressive", "seed_search", "prompt_enhance", "validation_retry"],
                                  Field(description="How a failed validation is retried.")] = "progressive",
        max_attempts: Annotated[int, Field(description="Attempts when validation fails.", ge=1, le=20)] = 3,
        upload: Annotated[bool | None, Field(description="Upload to object storage; null: when storage "
                                                         "is configured.")] = None,
        checks: Annotated[list[str | dict[str, Any]] | None, Field(
            description="Validators to run (implies validate): names such as technical, clip, or "
                        "{name, threshold, ...options}; the technical checks join any validation.",
            max_length=16)] = None,
        enhance_style: Annotated[Literal["photographic", "cinematic", "illustration", "minimal"] | None,
                                 Field(description="Rewrite the prompt with the server's prompt enhancer first, "
                                                   "in this style; the metadata keeps both prompts (null: "
                                                   "no enhancement).")] = None,
        transparent: Annotated[bool, Field(description="Remove the background: the subject is cut out with "
                                                       "segment-anything and kept as an RGBA PNG (the ComfyUI "
                                                       "server needs the comfyui_segment_anything nodes).")
                               ] = False,
        transparent_subject: Annotated[str | None, Field(description="What to keep with transparent "
                                                                     "(default: the prompt).",
                                                         max_length=1000)] = None,
        output_path: OutputPath = None,
        json_progress: JsonProgress = False,
    ) -> Json:
        """Render one image on ComfyUI, optionally CLIP-validated with retries.

        Returns status (passed | best_effort | unvalidated | failed), local_path, url, prompt_id,
        generation_id, attempt, validation scores, the resolved metadata and, with json_progress,
        progress_updates. Progress is also sent as MCP progress notifications; cancelling the call
        cancels the job on ComfyUI.
        """
        params = _params(app, prompt=prompt, negative_prompt=negative_prompt, width=width, height=height,
                         steps=steps, cfg=cfg, sampler=sampler, scheduler=scheduler, seed=seed,
                         preset=preset, lora_preset=lora_preset, loras=loras)
        chosen = workflow or TXT2IMG[model]
        if categories:
            chosen, params = _with_categories(app, categories, params, workflow)
        # The CLI's mapping (and its refusal of a subject without the switch), named as arguments here.
        params = params.replace(**transparent_fields(transparent, transparent_subject,
                                                     names=("transparent", "transparent_subject")))
        request = _request(app, chosen, params, preset=preset, validate=validate,
                           positive_threshold=positive_threshold, retry_strategy=retry_strategy,
                           max_attempts=max_attempts, upload=upload, output_path=output_path, checks=checks,
                           enhance_style=enhance_style)
        return await generate_with_progress(app, ctx, request, json_progress)

    @mcp.tool()
    async def img2img(
        ctx: Ctx,
        input_image: Annotated[str, Field(description="An image in the server's output or input folders "
                                                      "(relative to the output folder), or an http(s) URL.")],
        prompt: Prompt,
        negative_prompt: Negative = "",
        denoise: Annotated[float, Field(description="How much to change the image, 0-1.", ge=0, le=1)] = 0.7,
        model: Annotated[Literal["sd15"], Field(description="Model family.")] = "sd15",
        workflow: Annotated[str | None, Field(description="An img2img workflow name; overrides model.")] = None,
        steps: Annotated[int, Field(ge=1, le=150)] = 20,
        cfg: Annotated[float, Field(ge=1, le=20)] = 7.0,
        seed: Seed = -1,
        output_path: OutputPath = None,
        json_progress: JsonProgress = False,
    ) -> Json:
        """Transform an input image (uploaded to ComfyUI for real) guided by a prompt.

        Returns the same fields as generate_image.
        """
        params = GenerationParams(prompt=prompt, negative_prompt=negative_prompt, denoise=denoise, steps=steps,
                                  cfg=cfg, seed=seed)
        request = _request(app, workflow or IMG2IMG[model], params, input_image=input_image,
                           output_path=output_path)
        return await generate_with_progress(app, ctx, request, json_progress)

    @mcp.tool()
    async def generate_video(
        ctx: Ctx,
        prompt: Prompt,
        negative_prompt: Negative = "static, blurry, watermark",
        width: Annotated[int, Field(ge=64, le=2048)] = 832,
        height: Annotated[int, Field(ge=64, le=2048)] = 480,
        frames: Annotated[int, Field(description="Number of frames.", ge=1, le=1000)] = 81,
        fps: Annotated[int, Field(description="Frames per second.", ge=1, le=120)] = 16,
        steps: Annotated[int, Field(ge=1, le=150)] = 30,
        cfg: Annotated[float, Field(ge=1, le=20)] = 6.0,
        seed: Seed = -1,
        output_path: OutputPath = None,
        json_progress: JsonProgress = False,
    ) -> Json:
        """Render a video from a prompt (the first installed of ltxv-t2v, wan22-t2v-vhs).

        Returns the same fields as generate_image (local_path is the video file).
        """
        name = video_workflow(app, TEXT_TO_VIDEO, what="text-to-video")
        params = _video_params(prompt=prompt, negative_prompt=negative_prompt, width=width, height=height,
                               steps=steps, cfg=cfg, seed=seed, frames=frames, fps=fps)
        request = _request(app, name, params, output_path=output_path, timeout=600)
        return await generate_with_progress(app, ctx, request, json_progress)

    @mcp.tool()
    async def image_to_video(
        ctx: Ctx,
        input_image: Annotated[str, Field(description="The first frame: an image in the server's folders "
                                                      "or an http(s) URL.")],
        prompt: Prompt,
        negative_prompt: Negative = "",
        frames: Annotated[int, Field(ge=1, le=1000)] = 81,
        fps: Annotated[int, Field(ge=1, le=120)] = 16,
        steps: Annotated[int, Field(ge=1, le=150)] = 30,
        seed: Seed = -1,
        output_path: OutputPath = None,
        json_progress: JsonProgress = False,
    ) -> Json:
        """Animate an input image (uploaded to ComfyUI) guided by a prompt (ltxv-i2v workflow).

        Returns the same fields as generate_image (local_path is the video file).
        """
        name = video_workflow(app, IMAGE_TO_VIDEO, what="image-to-video")
        params = _video_params(prompt=prompt, negative_prompt=negative_prompt, steps=steps, seed=seed,
                               frames=frames, fps=fps)
        request = _request(app, name, params, input_image=input_image, output_path=output_path, timeout=600)
        return await generate_with_progress(app, ctx, request, json_progress)

    @mcp.tool()
    async def validate_workflow(
        model: Annotated[Family, Field(description="Model family; picks the shipped workflow.")] = "sd15",
        workflow: Annotated[str | None, Field(description="A workflow name; overrides model.")] = None,
        prompt: Annotated[str, Field(description="A test prompt.")] = "test prompt",
        width: Size = 512, height: Size = 512,
    ) -> Json:
        """Dry run: load the workflow, check its nodes and models against ComfyUI, queue nothing.

        Returns status valid | invalid, workflow_file, is_valid, errors, warnings and missing_models
        (each with suggestions of installed models).
        """
        from comfy_gen.errors import ConfigError, PreflightError
        from comfy_gen.service import generate

        name = workflow or TXT2IMG[model]
        request = _request(app, name, GenerationParams(prompt=prompt, width=width, height=height, seed=0),
                           dry_run=True)
        report: Json = {"workflow_file": name, "errors": [], "warnings": [], "missing_models": []}
        try:
            result = await run_blocking(lambda token, emit: generate(request, settings=app.settings, cancel=token))
            report["warnings"] = list(result.warnings)
        except PreflightError as exc:
            for problem in exc.problems:
                data = problem.to_dict() if hasattr(problem, "to_dict") else {"message": str(problem)}
                report["errors"].append(str(problem))
                if data.get("kind") == "missing_model":
                    report["missing_models"].append(data)
        except ConfigError as exc:  # not a usable workflow at all (unknown file, bad JSON, bad path)
            if not isinstance(exc, WorkflowError):
                raise
            report["errors"].append(str(exc))
        report["is_valid"] = not report["errors"]
        report["status"] = "valid" if report["is_valid"] else "invalid"
        return report


# --- helpers shared by the tools --------------------------------------------------------------


def _params(app: Any, *, prompt: str, negative_prompt: str | None, width: int | None, height: int | None,
            steps: int | None, cfg: float | None, sampler: str | None, scheduler: str | None, seed: int,
            preset: str | None, lora_preset: str | None, loras: list[str] | None) -> GenerationParams:
    """Arguments > preset > workflow (None keeps the workflow's value), as the CLI does;
    LoRAs in the seed's order: the preset's, the LoRA preset's, then ``loras``."""
    from comfy_gen.presets import PARAM_KEYS, get_preset

    values = get_preset(preset, app.settings.presets_file) if preset else {}
    merged: dict[str, Any] = {k: values[k] for k in PARAM_KEYS if k in values and k != "loras"}
    given = {"width": width, "height": height, "steps": steps, "cfg": cfg, "sampler": sampler,
             "scheduler": scheduler}
    merged.update({k: v for k, v in given.items() if v is not None})
    specs = [LoraSpec.parse(x) if isinstance(x, str) else LoraSpec(str(x["name"]), float(x.get("strength", 1.0)))
             for x in values.get("loras") or []]
    if lora_preset:
        from comfy_gen.catalogs import lora_catalog_for

        specs += lora_catalog_for(app.settings).preset_loras(lora_preset)
    specs += [LoraSpec.parse(spec) for spec in loras or ()]
    merged["seed"] = seed
    return GenerationParams(prompt=prompt, negative_prompt=negative_prompt, loras=tuple(specs), **merged)


def _with_categories(app: Any, ids: list[str], params: GenerationParams,
                     workflow: str | None) -> tuple[str, GenerationParams]:
    """Compose the categories at the server's tier; the caller's own values win."""
    from comfy_gen.categories import compose_ids, effective_tier, get_registry

    registry = get_registry(app.settings)
    comp = compose_ids(ids, registry=registry, tier=effective_tier(app.settings.policy_tier),
                       user_text=params.prompt or "")
    base = comp.to_params()
    mine = {k: v for k, v in params.to_dict().items() if v not in (None, (), [], {}) and k != "extra"}
    mine.pop("loras", None)
    merged = base.replace(**{k: getattr(params, k) for k in mine})
    merged = merged.replace(prompt=base.prompt or params.prompt, loras=base.loras + params.loras)
    return workflow or comp.workflow, merged


def _video_params(*, frames: int, fps: int, **values: Any) -> GenerationParams:
    """Video parameters: frames and fps land on the latent and save nodes (workflow.video)."""
    return GenerationParams(**values, frames=frames, fps=float(fps))


def video_workflow(app: "App", names: tuple[str, ...], *, what: str) -> str:
    """The first of ``names`` installed in the workflows folder; a WorkflowError naming them otherwise."""
    from comfy_gen.workflow import available_workflows

    folder = Path(app.settings.workflows_dir)
    installed = set(available_workflows(folder))
    for name in names:
        if name in installed:
            return name
    raise WorkflowError(f"No {what} workflow is installed in {folder} (looked for {', '.join(names)})",
                        hint=f"Add {names[0]}.json (API format) to the workflows folder (COMFY_GEN_WORKFLOWS_DIR) "
                             "to enable this tool.")


def _request(app: Any, workflow: str, params: GenerationParams, *, input_image: str | None = None,
             preset: str | None = None, validate: bool | None = None, positive_threshold: float | None = None,
             retry_strategy: str = "progressive", max_attempts: int = 3, upload: bool | None = None,
             output_path: str | None = None, dry_run: bool = False, timeout: float | None = None,
             checks: list[Any] | None = None, enhance_style: str | None = None) -> Any:
    from comfy_gen.enhance import EnhanceOptions
    from comfy_gen.presets import get_preset
    from comfy_gen.service import GenerateRequest, InputImage, ValidationOptions
    from comfy_gen.validation.plan import checked_specs

    values = get_preset(preset, app.settings.presets_file) if preset else {}
    specs = checked_specs(checks, field="checks")
    if validate is None:
        validate = positive_threshold is not None or bool(specs) or bool(values.get("validate"))
    threshold = positive_threshold if positive_threshold is not None else values.get("positive_threshold")
    return GenerateRequest(
        workflow=workflow, params=params, input_image=InputImage(input_image) if input_image else None,
        validation=ValidationOptions(enabled=validate, positive_threshold=threshold, checks=specs),
        enhance=EnhanceOptions(enabled=enhance_style is not None, style=enhance_style),
        retry_strategy=retry_strategy, max_attempts=max_attempts, output=output_path,
        upload=app.settings.storage_configured if upload is None else upload, preset=preset,
        dry_run=dry_run, timeout=timeout, paths="confined")


async def generate_with_progress(app: Any, ctx: Any, request: Any, json_progress: bool) -> Json:
    """Run the service with progress notifications and cancellation; the tool's result."""
    from comfy_gen.service import generate

    tracker = SeedProgress()

    async def on_event(event: Any) -> None:
        for note in tracker(event):
            await ctx.report_progress(*note)

    result = await run_blocking(
        lambda token, emit: generate(request, settings=app.settings, on_event=emit, cancel=token), on_event)
    return result_dict(result, tracker.updates if json_progress else None)


def result_dict(result: Any, updates: list[Json] | None) -> Json:
    """The seed's generate_image fields next to the service's own result."""
    data: Json = result.to_dict()
    best = result.best
    meta = _sidecar(result.sidecar)
    scores = dict(best.scores or {}) if best is not None else {}
    params = best.params.to_dict() if best is not None else {}
    data.update(
        local_path=data["file"], generation_id=meta.get("generation_id"),
        attempt=best.number if best is not None else None,
        validation=None if best is None or best.passed is None else {
            "passed": best.passed, "reason": best.reason, "positive_score": scores.get("positive_score"),
            "negative_score": scores.get("negative_score"), "score_delta": scores.get("score_delta")},
        metadata={"workflow": result.workflow, **{k: params.get(k) for k in (
            "prompt", "negative_prompt", "width", "height", "steps", "cfg", "sampler", "scheduler", "seed",
            "denoise", "checkpoint", "loras")}},
    )
    if updates is not None:
        data["progress_updates"] = updates
    return data


def _sidecar(path: Path | None) -> Json:
    if path is None or not Path(path).is_file():
        return {}
    try:
        return dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}
