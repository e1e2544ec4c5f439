"""Find the nodes a parameter belongs to by following links, not by ids or titles.

Prompts are found from the samplers backwards: KSampler/KSamplerAdvanced/SamplerCustom
``positive``/``negative``, SamplerCustomAdvanced -> ``guider`` -> CFGGuider
(``positive``/``negative``) or BasicGuider (``conditioning`` = positive), then back
through conditioning pass-through nodes (FluxGuidance, ConditioningCombine,
ControlNetApply...) to the text encoders. Titles only break ties: when no sampler
leads to an encoder, and for an encoder that feeds both sides.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from comfy_gen.workflow._graph import Graph, class_of, link_source, nodes_of, norm_title, sort_ids

log = logging.getLogger(__name__)

#: sampler class -> (positive input, negative input)
SAMPLERS: dict[str, tuple[str, str | None]] = {
    "KSampler": ("positive", "negative"),
    "KSamplerAdvanced": ("positive", "negative"),
    "SamplerCustom": ("positive", "negative"),
}
#: guider class -> (positive input, negative input); reached through SamplerCustomAdvanced.guider
GUIDERS: dict[str, tuple[str, str | None]] = {
    "CFGGuider": ("positive", "negative"),
    "BasicGuider": ("conditioning", None),
    "PerpNegGuider": ("positive", "negative"),
    "DualCFGGuider": ("cond1", "negative"),
}
#: text encoder class -> the literal text inputs a prompt is written to
TEXT_ENCODERS: dict[str, tuple[str, ...]] = {
    "CLIPTextEncode": ("text",),
    "CLIPTextEncodeSDXL": ("text_g", "text_l"),
    "CLIPTextEncodeSDXLRefiner": ("text",),
    "CLIPTextEncodeFlux": ("clip_l", "t5xxl"),
    "CLIPTextEncodeSD3": ("clip_l", "clip_g", "t5xxl"),
    "CLIPTextEncodeHunyuanDiT": ("bert", "mt5xl"),
    "CLIPTextEncodePixArtAlpha": ("text",),
    "CLIPTextEncodeLumina2": ("user_prompt",),
    "CLIPTextEncodeHiDream": ("clip_l", "clip_g", "t5xxl", "llama"),
    "TextEncodeHunyuanVideo_ImageToVideo": ("prompt",),
    "TextEncodeQwenImageEdit": ("prompt",),
    "TextEncodeQwenImageEditPlus": ("prompt",),
}
#: For encoders not in the table (custom nodes named *TextEncode*): literal inputs with these names.
GENERIC_TEXT_INPUTS = ("text", "prompt")
#: conditioning is not followed through these: the text behind them does not matter
#: (Flux's negative is often ConditioningZeroOut(positive encoder)).
CONDITIONING_SINKS = frozenset({"ConditioningZeroOut"})

CHECKPOINT_LOADERS = ("CheckpointLoaderSimple", "CheckpointLoader", "ImageOnlyCheckpointLoader",
                      "unCLIPCheckpointLoader")
UNET_LOADERS = ("UNETLoader", "UnetLoaderGGUF")
CLIP_LOADERS = ("CLIPLoader", "DualCLIPLoader", "TripleCLIPLoader", "QuadrupleCLIPLoader",
                "CLIPLoaderGGUF", "DualCLIPLoaderGGUF")
MODEL_LOADERS = CHECKPOINT_LOADERS + UNET_LOADERS
LORA_CLASSES = ("LoraLoader", "LoraLoaderModelOnly")


@dataclass
class PromptNodes:
    """Text-encoder node ids feeding the samplers' positive and negative inputs.

    ``shared`` holds encoders that feed both sides with no title to decide; they
    are never written silently (see ``apply_params``).
    """

    positive: list[str] = field(default_factory=list)
    negative: list[str] = field(default_factory=list)
    shared: list[str] = field(default_factory=list)
    by_links: bool = True  # False when titles had to be used (no sampler path found)

    def to_dict(self) -> dict[str, Any]:
        return {"positive": self.positive, "negative": self.negative, "shared": self.shared,
                "by_links": self.by_links}


def text_inputs(wf: Graph, node_id: str) -> tuple[str, ...]:
    """The inputs a prompt is written to on a text-encoder node (() for other nodes)."""
    cls = class_of(wf, node_id) or ""
    if cls in TEXT_ENCODERS:
        return TEXT_ENCODERS[cls]
    if "TextEncode" in cls:
        inputs = wf[node_id].get("inputs") or {}
        return tuple(n for n in GENERIC_TEXT_INPUTS if isinstance(inputs.get(n), str))
    return ()


def is_encoder(wf: Graph, node_id: str) -> bool:
    return bool(text_inputs(wf, node_id))


def sampler_nodes(wf: Graph) -> list[str]:
    """Samplers that take conditioning, in id order (KSampler*, SamplerCustom*)."""
    return sort_ids([nid for nid, n in wf.items()
                     if n.get("class_type") in SAMPLERS or n.get("class_type") == "SamplerCustomAdvanced"])


def conditioning_inputs(wf: Graph, sampler_id: str) -> tuple[list[Any], list[Any]]:
    """The positive and negative input values of a sampler (following its guider)."""
    node = wf[sampler_id]
    inputs = node.get("inputs") or {}
    if node.get("class_type") == "SamplerCustomAdvanced":
        src = link_source(inputs.get("guider"))
        guider = wf.get(src[0]) if src else None
        if not guider:
            return [], []
        pos_name, neg_name = GUIDERS.get(str(guider.get("class_type")), ("positive", "negative"))
        g_inputs = guider.get("inputs") or {}
        return ([g_inputs[pos_name]] if pos_name in g_inputs else [],
                [g_inputs[neg_name]] if neg_name and neg_name in g_inputs else [])
    pos_name, neg_name = SAMPLERS[node["class_type"]]
    return ([inputs[pos_name]] if pos_name in inputs else [],
            [inputs[neg_name]] if neg_name and neg_name in inputs else [])


def trace_encoders(wf: Graph, value: Any, _seen: set[tuple[str, int]] | None = None) -> list[str]:
    """Text encoders behind a conditioning link, through pass-through nodes."""
    seen = _seen if _seen is not None else set()
    src = link_source(value)
    if src is None or src in seen or src[0] not in wf:
        return []
    seen.add(src)
    node_id, out_index = src
    cls = class_of(wf, node_id) or ""
    if is_encoder(wf, node_id):
        return [node_id]
    if cls in CONDITIONING_SINKS:
        return []
    inputs = wf[node_id].get("inputs") or {}
    if "positive" in inputs and "negative" in inputs:
        # ControlNetApplyAdvanced, InstructPixToPix...: output 0 is positive, output 1 negative.
        names = ["positive"] if out_index == 0 else ["negative"] if out_index == 1 else []
    else:
        names = [n for n in inputs if n.startswith("conditioning") or n in ("cond", "positive", "negative")]
    found: list[str] = []
    for name in names:
        for enc in trace_encoders(wf, inputs[name], seen):
            if enc not in found:
                found.append(enc)
    return found


def find_prompt_nodes(wf: Graph) -> PromptNodes:
    """Positive/negative text encoders, found through the samplers' links."""
    positive: list[str] = []
    negative: list[str] = []
    for sampler_id in sampler_nodes(wf):
        pos_values, neg_values = conditioning_inputs(wf, sampler_id)
        for value in pos_values:
            positive += [e for e in trace_encoders(wf, value) if e not in positive]
        for value in neg_values:
            negative += [e for e in trace_encoders(wf, value) if e not in negative]
    if not positive and not negative:
        return _by_titles(wf)
    result = PromptNodes()
    for node_id in positive:
        if node_id not in negative:
            result.positive.append(node_id)
    for node_id in negative:
        if node_id not in positive:
            result.negative.append(node_id)
    for node_id in positive:
        if node_id in negative:
            title = norm_title(wf[node_id])  # tie-breaker only
            if "negative" in title:
                result.negative.append(node_id)
            elif "positive" in title or "motionprompt" in title:
                result.positive.append(node_id)
            else:
                result.shared.append(node_id)
    return result


def _by_titles(wf: Graph) -> PromptNodes:
    """The original's title rule, for graphs where no sampler leads to an encoder."""
    encoders = sort_ids([nid for nid in wf if is_encoder(wf, nid)])
    result = PromptNodes(by_links=False)
    for node_id in encoders:
        title = norm_title(wf[node_id])
        if "negative" in title:
            result.negative.append(node_id)
        elif "positive" in title or "motionprompt" in title:
            result.positive.append(node_id)
    if not result.positive:
        rest = [e for e in encoders if e not in result.negative]
        result.positive = rest[:1]
    return result


def trace_model_loader(wf: Graph, value: Any, _depth: int = 0) -> str | None:
    """Follow a MODEL link back (through LoRAs, ModelSampling*, ...) to its loader."""
    src = link_source(value)
    if src is None or src[0] not in wf or _depth > 64:
        return None
    node_id = src[0]
    if class_of(wf, node_id) in MODEL_LOADERS:
        return node_id
    return trace_model_loader(wf, (wf[node_id].get("inputs") or {}).get("model"), _depth + 1)


def main_model_loader(wf: Graph) -> str | None:
    """The checkpoint/UNET loader feeding the first sampler; else the first loader by id.

    With several checkpoint loaders (refiner graphs) this is the one behind the
    first sampler in id order; LoRAs and ``checkpoint`` apply to it.
    """
    for sampler_id in sampler_nodes(wf):
        node = wf[sampler_id]
        inputs = node.get("inputs") or {}
        candidates = [inputs.get("model")]
        if node.get("class_type") == "SamplerCustomAdvanced":
            src = link_source(inputs.get("guider"))
            if src and src[0] in wf:
                candidates.append((wf[src[0]].get("inputs") or {}).get("model"))
        for value in candidates:
            loader = trace_model_loader(wf, value)
            if loader:
                return loader
    loaders = nodes_of(wf, *MODEL_LOADERS)
    return loaders[0] if loaders else None


def trace_clip_source(wf: Graph, value: Any, _depth: int = 0) -> tuple[str, int] | None:
    """Follow a CLIP link back through LoRAs / CLIPSetLastLayer to its loader output."""
    src = link_source(value)
    if src is None or src[0] not in wf or _depth > 64:
        return None
    cls = class_of(wf, src[0])
    if cls in CHECKPOINT_LOADERS or cls in CLIP_LOADERS:
        return src
    return trace_clip_source(wf, (wf[src[0]].get("inputs") or {}).get("clip"), _depth + 1)


def clip_source_for(wf: Graph, model_loader: str) -> tuple[str, int] | None:
    """The CLIP output that pairs with ``model_loader``: checkpoint out 1, or the
    CLIP loader behind the prompt encoders (first CLIP loader as a fallback)."""
    if class_of(wf, model_loader) in CHECKPOINT_LOADERS:
        return (model_loader, 1)
    prompts = find_prompt_nodes(wf)
    for enc in prompts.positive + prompts.negative + prompts.shared:
        src = trace_clip_source(wf, (wf[enc].get("inputs") or {}).get("clip"))
        if src:
            return src
    loaders = nodes_of(wf, *CLIP_LOADERS)
    return (loaders[0], 0) if loaders else None
