"""``apply_params``: the one compose step (params -> graph), and ``get_params`` (graph -> params)."""

from __future__ import annotations

import copy
import random
from typing import Any

from comfy_gen.params import GenerationParams, LoraSpec, resolve_seed
from comfy_gen.workflow._graph import Graph, class_of, is_link, nodes_of, sort_ids
from comfy_gen.workflow.discovery import CHECKPOINT_LOADERS, find_prompt_nodes, main_model_loader, text_inputs
from comfy_gen.workflow.edit import (
    CFG_CLASSES,
    SAMPLER_NAME_CLASSES,
    SCHEDULER_CLASSES,
    SEED_INPUTS,
    ApplyReport,
    Change,
    _set_checkpoint,
    _set_extra,
    _set_input_image,
    _set_prompt,
    _set_sampler_params,
    _set_seed,
    _set_size,
    _set_vae,
    _write,
    denoise_nodes,
    latent_nodes,
    steps_nodes,
)
from comfy_gen.workflow.loras import add_loras, lora_chain
from comfy_gen.workflow.transparent import add_background_removal, subject_text
from comfy_gen.workflow.video import FPS_INPUTS, fps_nodes, frame_step_warning, frames_nodes, read_video


def apply_params_with_report(wf: Graph, params: GenerationParams, *, rng: random.Random | None = None,
                             object_info: dict[str, Any] | None = None) -> tuple[Graph, ApplyReport]:
    """A new graph with ``params`` written in, and a report of what was touched.

    ``None`` fields keep the workflow's value, except the seed: ``None``/``-1``
    becomes a fresh random seed (from ``rng`` when given), so repeated runs never
    silently reuse the seed baked into the file. ``report.seed`` is the seed used.
    Raises UsageError for bad ``extra`` keys, WorkflowError for an input image on a
    graph without LoadImage.
    """
    before = set(wf)
    out = add_loras(wf, params.loras) if params.loras else copy.deepcopy(wf)
    report = ApplyReport()
    report.added_nodes = sort_ids([nid for nid in out if nid not in before])
    _record_diff(wf, out, report)

    if params.checkpoint is not None:
        _set_checkpoint(out, params.checkpoint, report)
    if params.vae is not None:
        _set_vae(out, params.vae, report)
    _set_prompt(out, params.prompt, params.negative_prompt, report)
    _set_seed(out, resolve_seed(params.seed, rng), report)
    _set_sampler_params(out, report, steps=params.steps, cfg=params.cfg, sampler=params.sampler,
                        scheduler=params.scheduler, denoise=params.denoise)
    _set_size(out, report, params.width, params.height, params.batch_size)
    if params.input_image is not None:
        _set_input_image(out, params.input_image, report)
    if params.frames is not None or params.fps is not None:
        _set_video(out, report, params.frames, params.fps)
    if params.extra:
        _set_extra(out, params.extra, report, object_info)
    if params.transparent:
        # Last, so the cut-out sits between the final image and SaveImage.
        cut = add_background_removal(out, subject_text(params.transparent_subject, params.prompt))
        report.added_nodes += sort_ids([nid for nid in cut if nid not in out])
        _record_diff(out, cut, report)
        out = cut
    return out, report


def _set_video(wf: Graph, report: ApplyReport, frames: int | None, fps: float | None) -> None:
    """Frames on the video latent, fps on the save/conditioning nodes of the video's path."""
    if frames is not None:
        targets = frames_nodes(wf)
        for nid in targets:
            _write(wf, nid, "length", frames, report)
            note = frame_step_warning(wf, nid, frames)
            if note:
                report.warn(note)
        if not targets:
            report.warn(f"frames={frames} given but the workflow has no video latent on a video "
                        "output's path (a `length` input); ignored")
    if fps is not None:
        targets = fps_nodes(wf)
        for nid in targets:
            _write(wf, nid, FPS_INPUTS[str(class_of(wf, nid))], fps, report)
        if not targets:
            report.warn(f"fps={fps:g} given but the workflow has no video output; ignored")


def _record_diff(before: Graph, after: Graph, report: ApplyReport) -> None:
    """Record every input that differs between two graphs (new nodes: all literals)."""
    for nid in sort_ids(list(after)):
        old_inputs = (before.get(nid) or {}).get("inputs") or {}
        new_inputs = after[nid].get("inputs") or {}
        is_new = nid not in before
        for name, value in new_inputs.items():
            if is_new and is_link(value):
                continue
            if is_new or old_inputs.get(name) != value:
                report.changes.append(Change(nid, str(class_of(after, nid)), name, old_inputs.get(name), value))


def apply_params(wf: Graph, params: GenerationParams, *, rng: random.Random | None = None,
                 object_info: dict[str, Any] | None = None) -> Graph:
    """A new graph with ``params`` applied (see ``apply_params_with_report``)."""
    return apply_params_with_report(wf, params, rng=rng, object_info=object_info)[0]


def _literal(wf: Graph, node_ids: list[str], name: str | dict[str, str]) -> Any:
    """The first literal value of input ``name`` (or per-class names) among ``node_ids``."""
    for nid in node_ids:
        key = name if isinstance(name, str) else name.get(str(class_of(wf, nid)), "")
        value = (wf[nid].get("inputs") or {}).get(key)
        if value is not None and not is_link(value):
            return value
    return None


def _num(value: Any, kind: type) -> Any:
    if value is None or isinstance(value, bool):
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        return None


def get_params(wf: Graph) -> GenerationParams:
    """The values the graph itself would render with (literal inputs only).

    Used as the base for retry strategies, so a 4-step workflow stays at 4 steps.
    The seed is the baked one: callers that want a fresh render should resolve a
    new seed instead of reusing it.
    """
    prompts = find_prompt_nodes(wf)

    def text(node_ids: list[str]) -> str | None:
        for nid in node_ids:
            for name in text_inputs(wf, nid):
                value = (wf[nid].get("inputs") or {}).get(name)
                if isinstance(value, str):
                    return value
        return None

    loader = main_model_loader(wf)
    checkpoint = None
    if loader is not None:
        key = "ckpt_name" if class_of(wf, loader) in CHECKPOINT_LOADERS else "unet_name"
        checkpoint = _literal(wf, [loader], key)
    loras = []
    for nid in lora_chain(wf):
        inputs = wf[nid]["inputs"]
        name = inputs.get("lora_name")
        if not isinstance(name, str):
            continue
        strength = _num(inputs.get("strength_model"), float)
        clip = _num(inputs.get("strength_clip"), float)
        strength = 1.0 if strength is None else strength
        loras.append(LoraSpec(name=name, strength_model=strength,
                              strength_clip=None if clip is None or clip == strength else clip))
    latents = latent_nodes(wf)
    frames, fps = read_video(wf)
    return GenerationParams(
        prompt=text(prompts.positive or prompts.shared),
        negative_prompt=text(prompts.negative),
        seed=_num(_literal(wf, nodes_of(wf, *SEED_INPUTS), SEED_INPUTS), int),
        steps=_num(_literal(wf, steps_nodes(wf), "steps"), int),
        cfg=_num(_literal(wf, nodes_of(wf, *CFG_CLASSES), "cfg"), float),
        sampler=_literal(wf, nodes_of(wf, *SAMPLER_NAME_CLASSES), "sampler_name"),
        scheduler=_literal(wf, nodes_of(wf, *SCHEDULER_CLASSES), "scheduler"),
        denoise=_num(_literal(wf, denoise_nodes(wf), "denoise"), float),
        width=_num(_literal(wf, latents, "width"), int),
        height=_num(_literal(wf, latents, "height"), int),
        batch_size=_num(_literal(wf, latents, "batch_size"), int),
        checkpoint=checkpoint,
        vae=_literal(wf, nodes_of(wf, "VAELoader"), "vae_name"),
        loras=tuple(loras),
        input_image=_literal(wf, nodes_of(wf, "LoadImage"), "image"),
        frames=frames,
        fps=fps,
    )
