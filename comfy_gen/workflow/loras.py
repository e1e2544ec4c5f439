"""Insert a LoraLoader chain after the model loader and rewire every consumer."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

from comfy_gen.errors import WorkflowError
from comfy_gen.params import LoraSpec
from comfy_gen.workflow._graph import Graph, class_of, consumers, next_id, rewire
from comfy_gen.workflow.discovery import LORA_CLASSES, clip_source_for, main_model_loader

log = logging.getLogger(__name__)


def add_loras(wf: Graph, loras: Sequence[LoraSpec]) -> Graph:
    """A copy of ``wf`` with ``loras`` chained (in order) after the model loader.

    Source: the checkpoint loader feeding the samplers (MODEL out 0, CLIP out 1), or
    a UNETLoader plus the CLIP loader behind the prompt encoders (CLIP out 0). Every
    consumer of the source MODEL and CLIP outputs is redirected to the end of the
    chain, so LoRA CLIP weights take effect for UNET graphs and for chains of
    several LoRAs, not only for one LoRA on a checkpoint. Without any CLIP
    source, LoraLoaderModelOnly nodes are inserted instead.
    """
    out = copy.deepcopy(wf)
    if not loras:
        return out
    loader = main_model_loader(out)
    if loader is None:
        raise WorkflowError(
            "Cannot add LoRAs: the workflow has no checkpoint or UNET loader",
            hint="LoRAs attach after CheckpointLoaderSimple or UNETLoader.",
        )
    model_src = (loader, 0)
    clip_src = clip_source_for(out, loader)
    if clip_src is None:
        log.warning("No CLIP loader found next to %s (%s): LoRAs are applied to the model only",
                    loader, class_of(out, loader))

    new_ids: list[str] = []
    prev_model, prev_clip = model_src, clip_src
    for lora in loras:
        nid = next_id(out)
        if clip_src is None:
            out[nid] = {
                "class_type": "LoraLoaderModelOnly",
                "inputs": {"model": list(prev_model), "lora_name": lora.name,
                           "strength_model": lora.strength_model},
                "_meta": {"title": f"LoRA: {lora.name}"},
            }
        else:
            assert prev_clip is not None
            out[nid] = {
                "class_type": "LoraLoader",
                "inputs": {"model": list(prev_model), "clip": list(prev_clip), "lora_name": lora.name,
                           "strength_model": lora.strength_model, "strength_clip": lora.clip_strength},
                "_meta": {"title": f"LoRA: {lora.name}"},
            }
            prev_clip = (nid, 1)
        prev_model = (nid, 0)
        new_ids.append(nid)

    skip = set(new_ids)
    rewire(out, model_src, prev_model, skip=skip)
    if clip_src is not None and prev_clip is not None:
        rewire(out, clip_src, prev_clip, skip=skip)
    return out


def lora_chain(wf: Graph) -> list[str]:
    """LoRA loader ids between the main model loader and the samplers, loader side first."""
    loader = main_model_loader(wf)
    chain: list[str] = []
    current = loader
    while current is not None:
        nxt = None
        for nid, name in consumers(wf, current, 0):
            if name == "model" and class_of(wf, nid) in LORA_CLASSES and nid not in chain:
                nxt = nid
                break
        if nxt is None:
            break
        chain.append(nxt)
        current = nxt
    return chain
