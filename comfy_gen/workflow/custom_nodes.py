"""Node classes that come from custom-node packs, and where to get each pack.

comfy-gen adds some of these itself (``--transparent``: segment-anything) and the
original's video path uses VideoHelperSuite. A server without the pack does not
list the classes in ``/object_info``; preflight then names the pack and its
source instead of only "node class not installed".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from comfy_gen.workflow._graph import Graph, sort_ids


@dataclass(frozen=True)
class NodePack:
    """A custom-node pack: its name, where it lives, how to install it."""

    name: str
    url: str

    @property
    def install(self) -> str:
        return (f"install {self.name} ({self.url}): ComfyUI-Manager, or `git clone {self.url}` into "
                "ComfyUI/custom_nodes and pip install its requirements.txt, then restart ComfyUI")


SEGMENT_ANYTHING = NodePack("comfyui_segment_anything", "https://github.com/storyicon/comfyui_segment_anything")
VIDEO_HELPER_SUITE = NodePack("ComfyUI-VideoHelperSuite", "https://github.com/Kosinkadink/ComfyUI-VideoHelperSuite")

#: class_type -> the pack that provides it (NODE_CLASS_MAPPINGS of each pack).
NODE_PACKS: dict[str, NodePack] = {
    "SAMModelLoader (segment anything)": SEGMENT_ANYTHING,
    "GroundingDinoModelLoader (segment anything)": SEGMENT_ANYTHING,
    "GroundingDinoSAMSegment (segment anything)": SEGMENT_ANYTHING,
    "InvertMask (segment anything)": SEGMENT_ANYTHING,
    "IsMaskEmpty": SEGMENT_ANYTHING,
    "VHS_VideoCombine": VIDEO_HELPER_SUITE,
    "VHS_LoadVideo": VIDEO_HELPER_SUITE,
    "VHS_LoadImages": VIDEO_HELPER_SUITE,
}


def pack_for(class_type: str) -> NodePack | None:
    return NODE_PACKS.get(class_type)


def missing_packs(wf: Graph, object_info: dict[str, Any]) -> dict[NodePack, list[str]]:
    """Packs whose classes ``wf`` uses but the server lacks -> those class names."""
    out: dict[NodePack, list[str]] = {}
    for nid in sort_ids(list(wf)):
        cls = wf[nid].get("class_type")
        pack = pack_for(cls) if isinstance(cls, str) else None
        if pack is not None and cls not in object_info:
            names = out.setdefault(pack, [])
            if cls not in names:
                names.append(str(cls))
    return out
