"""``--transparent``: cut the subject out with segment-anything, save an RGBA PNG.

A pure graph edit. For each image that reaches a SaveImage node::

    image --> GroundingDinoSAMSegment(prompt=subject) --MASK--> InvertMask
      |                                                            |
      +------------------> JoinImageWithAlpha(image, alpha) <------+ --> SaveImage

GroundingDINO finds boxes for the subject text, SAM turns them into a mask
(1 = subject). JoinImageWithAlpha uses ``alpha = 1 - mask`` (ComfyUI
nodes_compositing: a mask marks what to make transparent, like LoadImage's), so
the subject mask is inverted first; SaveImage writes the 4-channel result as
RGBA. The original inserted a ``SAMDetector (segment anything)`` and an
``ImageCompositeMasked`` with a ``channel`` input, neither of which exists in
those forms, so its graphs were rejected; these classes are the real ones
(storyicon/comfyui_segment_anything, ComfyUI core). The pack downloads its
models on first use, so no model file has to be listed here.
"""

from __future__ import annotations

import copy
from typing import Any

from comfy_gen.errors import UsageError, WorkflowError
from comfy_gen.workflow._graph import Graph, link_source, next_id, nodes_of
from comfy_gen.workflow.video import video_outputs

SAM_LOADER = "SAMModelLoader (segment anything)"
DINO_LOADER = "GroundingDinoModelLoader (segment anything)"
SEGMENT = "GroundingDinoSAMSegment (segment anything)"
#: ViT-B as in the original (sam_vit_b_01ec64.pth), under the pack's own choice name.
SAM_MODEL = "sam_vit_b (375MB)"
DINO_MODEL = "GroundingDINO_SwinT_OGC (694MB)"
#: The pack's default box threshold.
THRESHOLD = 0.3
#: GroundingDINO reads at most 256 tokens; a long prompt is cut (at a word) well before that.
SUBJECT_MAX_CHARS = 200
PREFIX_SUFFIX = "_transparent"
DEFAULT_SUBJECT = "main subject"


def subject_text(subject: str | None, prompt: str | None) -> str:
    """What GroundingDINO looks for: ``subject``, else the prompt (shortened), else a default."""
    text = (subject or prompt or DEFAULT_SUBJECT).strip() or DEFAULT_SUBJECT
    if len(text) > SUBJECT_MAX_CHARS:
        text = text[:SUBJECT_MAX_CHARS].rsplit(" ", 1)[0]
    return text


def transparent_fields(transparent: bool | None, subject: str | None, *,
                       names: tuple[str, str] = ("--transparent", "--transparent-subject")) -> dict[str, Any]:
    """The GenerationParams fields for a face's transparent switch and subject (CLI flags,
    MCP arguments): none when off. A subject without the switch is a UsageError naming the
    face's own ``names``, so the two faces refuse the same input the same way."""
    if transparent:
        return {"transparent": True, "transparent_subject": subject or None}
    if subject:
        raise UsageError(f"{names[1]} applies to {names[0]}")
    return {}


def add_background_removal(wf: Graph, subject: str) -> Graph:
    """A copy of ``wf`` whose saved images have the background removed (RGBA).

    Raises WorkflowError when there is nothing to cut out: no SaveImage node, or
    a video workflow (frames are written by a video node, which has no alpha).
    """
    out = copy.deepcopy(wf)
    if video_outputs(out):
        raise WorkflowError("--transparent works on image workflows; this one writes a video",
                            hint="Drop --transparent, or use an image workflow.")
    savers = [nid for nid in nodes_of(out, "SaveImage") if link_source(out[nid]["inputs"].get("images"))]
    if not savers:
        raise WorkflowError("--transparent needs a workflow that saves images with SaveImage",
                            hint="Background removal rewires the SaveImage node's images.")
    sam = next_id(out)
    out[sam] = {"class_type": SAM_LOADER, "inputs": {"model_name": SAM_MODEL},
                "_meta": {"title": "Load SAM model"}}
    dino = next_id(out)
    out[dino] = {"class_type": DINO_LOADER, "inputs": {"model_name": DINO_MODEL},
                 "_meta": {"title": "Load GroundingDINO model"}}
    joined: dict[tuple[str, int], str] = {}  # one cut-out per distinct image source
    for saver in savers:
        inputs = out[saver]["inputs"]
        source = link_source(inputs["images"])
        assert source is not None
        if source not in joined:
            joined[source] = _cut_out(out, source, sam, dino, subject)
        inputs["images"] = [joined[source], 0]
        prefix = inputs.get("filename_prefix")
        if isinstance(prefix, str) and not prefix.endswith(PREFIX_SUFFIX):
            inputs["filename_prefix"] = prefix + PREFIX_SUFFIX
    return out


def _cut_out(wf: Graph, source: tuple[str, int], sam: str, dino: str, subject: str) -> str:
    """Segment, invert, join: returns the JoinImageWithAlpha node id."""
    image = [source[0], source[1]]
    seg = next_id(wf)
    wf[seg] = {"class_type": SEGMENT,
               "inputs": {"sam_model": [sam, 0], "grounding_dino_model": [dino, 0], "image": image,
                          "prompt": subject, "threshold": THRESHOLD},
               "_meta": {"title": "Find the subject (GroundingDINO + SAM)"}}
    inv = next_id(wf)
    wf[inv] = {"class_type": "InvertMask", "inputs": {"mask": [seg, 1]},
               "_meta": {"title": "Background mask"}}
    join = next_id(wf)
    wf[join] = {"class_type": "JoinImageWithAlpha", "inputs": {"image": list(image), "alpha": [inv, 0]},
                "_meta": {"title": "Subject on transparent background"}}
    return join
