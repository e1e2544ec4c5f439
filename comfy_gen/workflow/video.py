"""Video parameters on a graph: frame count and frame rate, found by following links.

A video workflow ends in a node that writes frames as one file (``VIDEO_OUTPUTS``).
Walking the links upstream from those nodes finds what the parameters belong to:
the node that makes the video latent (its ``length`` input: EmptyLTXVLatentVideo,
EmptyHunyuanLatentVideo, WanImageToVideo, LTXVImgToVideo, the original's
EmptyLatentVideo, ...) and every node with a frame rate (the save node itself,
CreateVideo, LTXVConditioning). Nodes off those paths are never touched, so an
image branch in the same graph keeps its own values.
"""

from __future__ import annotations

from typing import Any

from comfy_gen.workflow._graph import Graph, class_of, link_source, sort_ids

#: Output nodes that write a video or an animated image (ComfyUI core, and
#: VideoHelperSuite's VHS_VideoCombine, the original's video path).
VIDEO_OUTPUTS = frozenset({"SaveAnimatedWEBP", "SaveAnimatedPNG", "SaveWEBM", "SaveVideo", "VHS_VideoCombine"})

#: class -> its frame-rate input. LTXVConditioning is here because LTX-Video is
#: conditioned on the frame rate it will be played at: it must match the file's.
FPS_INPUTS: dict[str, str] = {
    "SaveAnimatedWEBP": "fps", "SaveAnimatedPNG": "fps", "SaveWEBM": "fps", "CreateVideo": "fps",
    "VHS_VideoCombine": "frame_rate", "LTXVConditioning": "frame_rate",
}

#: Latent classes that pack several frames per latent frame: valid lengths are
#: k * step + 1 (comfy_extras nodes_lt / nodes_hunyuan / nodes_wan round others down).
FRAME_STEPS: dict[str, int] = {
    "EmptyLTXVLatentVideo": 8, "LTXVImgToVideo": 8, "EmptyCosmosLatentVideo": 8,
    "EmptyHunyuanLatentVideo": 4, "HunyuanImageToVideo": 4, "WanImageToVideo": 4,
    "Wan22ImageToVideoLatent": 4, "EmptyMochiLatentVideo": 6,
}


def video_outputs(wf: Graph) -> list[str]:
    """Ids of the nodes that write a video or an animated image."""
    return sort_ids([nid for nid, node in wf.items() if node.get("class_type") in VIDEO_OUTPUTS])


def is_video_workflow(wf: Graph) -> bool:
    return bool(video_outputs(wf))


def writes_container(wf: Graph) -> bool:
    """True when a video output writes a container (MP4, WEBM, ...), which has no
    still frame here: SaveWEBM, SaveVideo, or VHS_VideoCombine with a ``video/`` format."""
    for nid in video_outputs(wf):
        cls = class_of(wf, nid)
        fmt = (wf[nid].get("inputs") or {}).get("format")
        if cls in ("SaveWEBM", "SaveVideo") or (cls == "VHS_VideoCombine" and str(fmt).startswith("video/")):
            return True
    return False


def upstream(wf: Graph, start: list[str]) -> list[str]:
    """``start`` and every node they read from, directly or through other nodes."""
    seen: set[str] = set()
    stack = list(start)
    while stack:
        nid = stack.pop()
        if nid in seen or nid not in wf:
            continue
        seen.add(nid)
        for value in (wf[nid].get("inputs") or {}).values():
            src = link_source(value)
            if src is not None:
                stack.append(src[0])
    return sort_ids(list(seen))


def frames_nodes(wf: Graph) -> list[str]:
    """Nodes on a video output's path with a ``length`` (frame count) input."""
    return [nid for nid in upstream(wf, video_outputs(wf)) if "length" in (wf[nid].get("inputs") or {})]


def fps_nodes(wf: Graph) -> list[str]:
    """Nodes on a video output's path that take the frame rate."""
    return [nid for nid in upstream(wf, video_outputs(wf)) if class_of(wf, nid) in FPS_INPUTS]


def frame_step_warning(wf: Graph, node_id: str, frames: int) -> str | None:
    """A note when ``frames`` is not k*step+1 for this latent class (the model rounds it)."""
    step = FRAME_STEPS.get(str(class_of(wf, node_id)))
    if step is None or (frames - 1) % step == 0:
        return None
    lower = (frames - 1) // step * step + 1
    return (f"frames={frames}: {class_of(wf, node_id)} (node {node_id}) renders {step}*k+1 frames, "
            f"so the video will have {lower}; use {lower} or {lower + step}")


def read_video(wf: Graph) -> tuple[int | None, float | None]:
    """The graph's own (frames, fps): literal values on the video output's path."""
    frames = fps = None
    for nid in frames_nodes(wf):
        value = wf[nid]["inputs"].get("length")
        if isinstance(value, int) and not isinstance(value, bool):
            frames = value
            break
    for nid in fps_nodes(wf):
        rate: Any = wf[nid]["inputs"].get(FPS_INPUTS[str(class_of(wf, nid))])
        if isinstance(rate, (int, float)) and not isinstance(rate, bool):
            fps = float(rate)
            break
    return frames, fps
