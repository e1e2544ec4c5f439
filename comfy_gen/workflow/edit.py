"""Single-purpose graph edits. Each public ``set_*`` returns a new graph.

The in-place ``_set_*`` variants record what they change into an ``ApplyReport``
so ``apply_params`` can tell a ``--dry-run`` exactly which nodes it touched.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

from comfy_gen.errors import UsageError, WorkflowError
from comfy_gen.workflow._graph import Graph, class_of, input_specs, next_id, nodes_of, rewire, sort_ids
from comfy_gen.workflow.discovery import (
    CHECKPOINT_LOADERS,
    PromptNodes,
    find_prompt_nodes,
    main_model_loader,
    text_inputs,
)

log = logging.getLogger(__name__)

#: class -> seed input. One seed goes to all of them (refiner graphs share noise).
SEED_INPUTS = {"KSampler": "seed", "KSamplerAdvanced": "noise_seed", "RandomNoise": "noise_seed",
               "SamplerCustom": "noise_seed"}
CFG_CLASSES = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "CFGGuider", "PerpNegGuider")
SAMPLER_NAME_CLASSES = ("KSampler", "KSamplerAdvanced", "KSamplerSelect")
SCHEDULER_CLASSES = ("KSampler", "KSamplerAdvanced", "BasicScheduler")


@dataclass(frozen=True)
class Change:
    """One input written by an edit (``old`` is None for inputs that were absent)."""

    node_id: str
    class_type: str
    input_name: str
    old: Any
    new: Any

    def to_dict(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "class_type": self.class_type, "input": self.input_name,
                "old": self.old, "new": self.new}


@dataclass
class ApplyReport:
    """What ``apply_params`` did: the resolved seed, every change, added nodes, warnings."""

    seed: int | None = None
    changes: list[Change] = field(default_factory=list)
    added_nodes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    prompt_nodes: PromptNodes | None = None

    def touched(self) -> dict[str, list[str]]:
        """``{node_id: [input names]}`` of every written input, in id order."""
        out: dict[str, list[str]] = {}
        for c in self.changes:
            names = out.setdefault(c.node_id, [])
            if c.input_name not in names:
                names.append(c.input_name)
        return {k: out[k] for k in sort_ids(list(out))}

    def warn(self, message: str) -> None:
        log.warning(message)
        self.warnings.append(message)

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "changes": [c.to_dict() for c in self.changes],
                "added_nodes": self.added_nodes, "warnings": self.warnings,
                "prompt_nodes": self.prompt_nodes.to_dict() if self.prompt_nodes else None}


def _write(wf: Graph, node_id: str, name: str, value: Any, report: ApplyReport | None) -> None:
    inputs = wf[node_id].setdefault("inputs", {})
    old = inputs.get(name)
    inputs[name] = value
    if report is not None:
        report.changes.append(Change(node_id, str(class_of(wf, node_id)), name, old, value))


def _nodes_with(wf: Graph, predicate: Any) -> list[str]:
    return sort_ids([nid for nid, node in wf.items() if predicate(str(node.get("class_type")), node)])


def latent_nodes(wf: Graph) -> list[str]:
    """Nodes that make the latent and so fix the output size: Empty*Latent* with a size
    (EmptyLatentImage, EmptySD3LatentImage, video latents), and image-to-video nodes
    that make the video latent from a start image (WanImageToVideo, LTXVImgToVideo:
    width, height and length)."""
    def makes_latent(cls: str, node: dict[str, Any]) -> bool:
        inputs = node.get("inputs") or {}
        if cls.startswith("Empty") and "Latent" in cls and "width" in inputs:
            return True
        return {"width", "height", "length"} <= set(inputs)
    return _nodes_with(wf, makes_latent)


def steps_nodes(wf: Graph) -> list[str]:
    return _nodes_with(wf, lambda cls, n: cls in ("KSampler", "KSamplerAdvanced")
                       or (cls.endswith("Scheduler") and "steps" in (n.get("inputs") or {})))


def denoise_nodes(wf: Graph) -> list[str]:
    return _nodes_with(wf, lambda cls, n: cls == "KSampler"
                       or (cls.endswith("Scheduler") and "denoise" in (n.get("inputs") or {})))


def seed_nodes(wf: Graph) -> list[str]:
    return nodes_of(wf, *SEED_INPUTS)


# --- in-place edits --------------------------------------------------------------


def _set_prompt(wf: Graph, positive: str | None, negative: str | None, report: ApplyReport) -> None:
    found = find_prompt_nodes(wf)
    report.prompt_nodes = found
    if positive is not None:
        targets = found.positive
        if not targets and found.shared:
            targets = found.shared
            report.warn(f"Prompt node(s) {', '.join(found.shared)} feed both positive and negative; "
                        "the prompt was written to them, so the negative side uses it too")
        elif found.shared:
            report.warn(f"Prompt node(s) {', '.join(found.shared)} feed both positive and negative; left unchanged")
        if not targets:
            report.warn("The workflow has no text-encoder node for the prompt; prompt ignored")
        for nid in targets:
            for name in text_inputs(wf, nid):
                _write(wf, nid, name, positive, report)
    if negative is not None:
        if not found.negative:
            if negative:
                report.warn("The workflow has no negative prompt node; negative prompt ignored")
        for nid in found.negative:
            for name in text_inputs(wf, nid):
                _write(wf, nid, name, negative, report)
        if found.negative and found.shared and negative:
            report.warn(f"Negative prompt not written to shared node(s) {', '.join(found.shared)}")


def _set_seed(wf: Graph, seed: int, report: ApplyReport) -> None:
    report.seed = seed
    for nid in seed_nodes(wf):
        _write(wf, nid, SEED_INPUTS[str(class_of(wf, nid))], seed, report)


def _set_sampler_params(wf: Graph, report: ApplyReport, *, steps: int | None = None, cfg: float | None = None,
                        sampler: str | None = None, scheduler: str | None = None,
                        denoise: float | None = None) -> None:
    if steps is not None:
        targets = steps_nodes(wf)
        for nid in targets:
            inputs = wf[nid].get("inputs") or {}
            old = inputs.get("steps")
            if class_of(wf, nid) == "KSamplerAdvanced" and isinstance(old, int) and old > 0:
                _scale_split(wf, nid, old, steps, report)
            _write(wf, nid, "steps", steps, report)
        _need(report, targets, "steps", steps)
    for value, name, classes in ((cfg, "cfg", CFG_CLASSES), (sampler, "sampler_name", SAMPLER_NAME_CLASSES),
                                 (scheduler, "scheduler", SCHEDULER_CLASSES)):
        if value is None:
            continue
        targets = nodes_of(wf, *classes)
        for nid in targets:
            _write(wf, nid, name, value, report)
        _need(report, targets, name, value)
    if denoise is not None:
        targets = denoise_nodes(wf)
        for nid in targets:
            _write(wf, nid, "denoise", denoise, report)
        _need(report, targets, "denoise", denoise)


def _scale_split(wf: Graph, nid: str, old_steps: int, new_steps: int, report: ApplyReport) -> None:
    """Keep a KSamplerAdvanced base/refiner split proportional when steps change."""
    inputs = wf[nid]["inputs"]
    for name in ("start_at_step", "end_at_step"):
        value = inputs.get(name)
        if isinstance(value, int) and 0 < value < old_steps:
            _write(wf, nid, name, round(value * new_steps / old_steps), report)


def _need(report: ApplyReport, targets: list[str], name: str, value: Any) -> None:
    if not targets:
        report.warn(f"{name}={value!r} given but no node in the workflow takes it; ignored")


def _set_size(wf: Graph, report: ApplyReport, width: int | None, height: int | None,
              batch_size: int | None) -> None:
    targets = latent_nodes(wf)
    for nid in targets:
        if width is not None:
            _write(wf, nid, "width", width, report)
        if height is not None:
            _write(wf, nid, "height", height, report)
        if batch_size is not None and "batch_size" in wf[nid]["inputs"]:
            _write(wf, nid, "batch_size", batch_size, report)
    if not targets and (width, height, batch_size) != (None, None, None):
        report.warn("Size/batch given but the workflow has no empty-latent node (img2img takes "
                    "the size of its input image); ignored")


def _set_checkpoint(wf: Graph, name: str, report: ApplyReport) -> None:
    loader = main_model_loader(wf)
    if loader is None:
        report.warn(f"checkpoint={name!r} given but the workflow has no checkpoint/UNET loader; ignored")
        return
    field_name = "ckpt_name" if class_of(wf, loader) in CHECKPOINT_LOADERS else "unet_name"
    _write(wf, loader, field_name, name, report)


def _set_vae(wf: Graph, name: str, report: ApplyReport) -> None:
    loaders = nodes_of(wf, "VAELoader")
    for nid in loaders:
        _write(wf, nid, "vae_name", name, report)
    if loaders:
        return
    # No VAELoader: the checkpoint's own VAE (output 2) is in use; add a loader and rewire.
    ckpt = main_model_loader(wf)
    if ckpt is None or class_of(wf, ckpt) not in CHECKPOINT_LOADERS:
        report.warn(f"vae={name!r} given but the workflow has no VAE loader; ignored")
        return
    nid = next_id(wf)
    wf[nid] = {"class_type": "VAELoader", "inputs": {"vae_name": name}, "_meta": {"title": f"VAE: {name}"}}
    report.added_nodes.append(nid)
    for consumer in rewire(wf, (ckpt, 2), (nid, 0), skip={nid}):
        report.changes.append(Change(consumer, str(class_of(wf, consumer)), "vae", [ckpt, 2], [nid, 0]))


def _set_input_image(wf: Graph, name: str, report: ApplyReport) -> None:
    targets = nodes_of(wf, "LoadImage")
    if not targets:
        raise WorkflowError("An input image was given but the workflow has no LoadImage node",
                            hint="Use an img2img workflow, e.g. sd15-img2img.")
    for nid in targets:
        _write(wf, nid, "image", name, report)


def _set_extra(wf: Graph, extra: tuple[tuple[str, Any], ...], report: ApplyReport,
               object_info: dict[str, Any] | None) -> None:
    for key, value in extra:
        node_id, sep, input_name = key.rpartition(".")
        if not sep or not node_id or not input_name:
            raise UsageError(f"Invalid extra input {key!r}: use NODE_ID.INPUT_NAME")
        if node_id not in wf:
            raise UsageError(f"Extra input {key!r}: the workflow has no node {node_id!r}")
        known = set(wf[node_id].get("inputs") or {})
        info = (object_info or {}).get(str(class_of(wf, node_id)))
        if info:
            known |= set(input_specs(info))
        if input_name not in known:
            raise UsageError(f"Extra input {key!r}: node {node_id} ({class_of(wf, node_id)}) has no "
                             f"input {input_name!r}; known: {', '.join(sorted(known)) or '(none)'}")
        _write(wf, node_id, input_name, value, report)


# --- pure wrappers ----------------------------------------------------------------


def set_prompt(wf: Graph, positive: str | None, negative: str | None = None) -> Graph:
    out = copy.deepcopy(wf)
    _set_prompt(out, positive, negative, ApplyReport())
    return out


def set_seed(wf: Graph, seed: int) -> Graph:
    out = copy.deepcopy(wf)
    _set_seed(out, seed, ApplyReport())
    return out


def set_sampler_params(wf: Graph, *, steps: int | None = None, cfg: float | None = None,
                       sampler: str | None = None, scheduler: str | None = None,
                       denoise: float | None = None) -> Graph:
    out = copy.deepcopy(wf)
    _set_sampler_params(out, ApplyReport(), steps=steps, cfg=cfg, sampler=sampler, scheduler=scheduler,
                        denoise=denoise)
    return out


def set_size(wf: Graph, width: int | None, height: int | None, batch_size: int | None = None) -> Graph:
    out = copy.deepcopy(wf)
    _set_size(out, ApplyReport(), width, height, batch_size)
    return out


def set_checkpoint(wf: Graph, name: str) -> Graph:
    out = copy.deepcopy(wf)
    _set_checkpoint(out, name, ApplyReport())
    return out


def set_vae(wf: Graph, name: str) -> Graph:
    out = copy.deepcopy(wf)
    _set_vae(out, name, ApplyReport())
    return out


def set_input_image(wf: Graph, name: str) -> Graph:
    out = copy.deepcopy(wf)
    _set_input_image(out, name, ApplyReport())
    return out
