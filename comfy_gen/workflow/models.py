"""Model files referenced by a graph, checked against the server's model lists.

``validate_workflow_models`` keeps the seed's signature; ``preflight`` is the
fuller check (it needs ``/object_info`` instead of per-folder lists).
"""

from __future__ import annotations

import re

from comfy_gen.workflow._graph import Graph, is_link, sort_ids
from comfy_gen.workflow.preflight import find_model_fallbacks

#: (input-name pattern, model folders it names; first is the canonical one, the rest aliases)
_INPUT_FOLDERS: list[tuple[str, tuple[str, ...]]] = [
    (r"ckpt_name", ("checkpoints",)),
    (r"lora_name", ("loras",)),
    (r"vae_name", ("vae",)),
    (r"unet_name", ("diffusion_models", "unet")),
    (r"clip_name\d*", ("text_encoders", "clip")),
    (r"control_net_name", ("controlnet",)),
    (r"style_model_name", ("style_models",)),
    (r"gligen_name", ("gligen",)),
    (r"hypernetwork_name", ("hypernetworks",)),
    (r"photomaker_model_name", ("photomaker",)),
]
#: class-specific overrides where the input name alone is ambiguous
_CLASS_FOLDERS: dict[tuple[str, str], tuple[str, ...]] = {
    ("CLIPVisionLoader", "clip_name"): ("clip_vision",),
    ("UpscaleModelLoader", "model_name"): ("upscale_models",),
}


def model_folders(class_type: str, input_name: str) -> tuple[str, ...]:
    """Model folders an input names files from, or () when it is not a model input."""
    if (class_type, input_name) in _CLASS_FOLDERS:
        return _CLASS_FOLDERS[(class_type, input_name)]
    for pattern, folders in _INPUT_FOLDERS:
        if re.fullmatch(pattern, input_name):
            return folders
    return ()


def referenced_models(wf: Graph) -> list[tuple[str, str, str, tuple[str, ...], str]]:
    """``(node_id, class_type, input_name, folders, file name)`` per literal model reference."""
    found = []
    for nid in sort_ids(list(wf)):
        node = wf[nid]
        cls = str(node.get("class_type"))
        for name, value in (node.get("inputs") or {}).items():
            folders = model_folders(cls, name)
            if folders and isinstance(value, str) and not is_link(value):
                found.append((nid, cls, name, folders, value))
    return found


def validate_workflow_models(workflow: Graph, available_models: dict[str, list[str]],
                             ) -> tuple[bool, list[tuple[str, str]], dict[str, list[str]]]:
    """``(is_valid, missing[(model_type, name)], suggestions{name: [...]})``.

    Only folders present in ``available_models`` are checked (checkpoints, loras,
    vae, and UNET, CLIP, upscale... when the server lists them).
    """
    missing: list[tuple[str, str]] = []
    suggestions: dict[str, list[str]] = {}
    for _nid, _cls, _name, folders, value in referenced_models(workflow):
        key = next((f for f in folders if f in available_models), None)
        if key is None:
            continue
        candidates = list(available_models.get(key) or [])
        if value in candidates or (key, value) in missing:
            continue
        missing.append((key, value))
        suggestions[value] = find_model_fallbacks(value, candidates)
    return not missing, missing, suggestions
