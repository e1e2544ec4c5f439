"""Video and transparency edits: found by links, nothing else touched; params stay id-stable."""

from __future__ import annotations

import json

import pytest

from comfy_gen.errors import WorkflowError
from comfy_gen.params import GenerationParams
from comfy_gen.workflow import add_background_removal, apply_params_with_report, get_params, is_video_workflow
from tests.workflow._cases import SHIPPED


def _load(name: str) -> dict:
    return json.loads((SHIPPED / f"{name}.json").read_text())


def test_unset_video_fields_leave_params_dict_and_ids_unchanged() -> None:
    data = GenerationParams(prompt="x", seed=1).to_dict()
    assert not {"frames", "fps", "transparent", "transparent_subject"} & set(data)
    video = GenerationParams(prompt="x", seed=1, frames=9, fps=8.0)
    assert video.to_dict()["frames"] == 9
    assert GenerationParams.from_dict(video.to_dict()) == video
    assert video.fingerprint() != GenerationParams(prompt="x", seed=1).fingerprint()


def test_get_params_reads_frames_and_fps_from_the_video_path() -> None:
    assert (get_params(_load("ltxv-t2v")).frames, get_params(_load("ltxv-t2v")).fps) == (97, 24.0)
    assert (get_params(_load("wan22-t2v-vhs")).frames, get_params(_load("wan22-t2v-vhs")).fps) == (81, 16.0)
    assert get_params(_load("sd15-txt2img")).frames is None
    assert is_video_workflow(_load("ltxv-i2v")) and not is_video_workflow(_load("flux-dev"))


def test_only_nodes_on_a_video_outputs_path_are_touched() -> None:
    wf = _load("ltxv-t2v")
    # an image branch in the same graph: its own latent with a `length`, saved as a still
    wf["50"] = {"class_type": "EmptyHunyuanLatentVideo",
                "inputs": {"width": 64, "height": 64, "length": 5, "batch_size": 1}}
    wf["51"] = {"class_type": "VAEDecode", "inputs": {"samples": ["50", 0], "vae": ["1", 2]}}
    wf["52"] = {"class_type": "SaveImage", "inputs": {"images": ["51", 0], "filename_prefix": "still"}}
    graph, report = apply_params_with_report(wf, GenerationParams(seed=1, frames=25, fps=10.0))
    assert graph["6"]["inputs"]["length"] == 25 and graph["50"]["inputs"]["length"] == 5
    assert graph["7"]["inputs"]["frame_rate"] == 10.0 and graph["12"]["inputs"]["fps"] == 10.0
    assert report.warnings == []


def test_background_removal_shares_one_cut_out_per_image_source() -> None:
    wf = _load("sd15-txt2img")
    wf["20"] = {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "copy"}}
    out = add_background_removal(wf, "bicycle")
    joins = [n for n, node in out.items() if node["class_type"] == "JoinImageWithAlpha"]
    assert len(joins) == 1
    assert out["7"]["inputs"]["images"] == out["20"]["inputs"]["images"] == [joins[0], 0]
    assert out["20"]["inputs"]["filename_prefix"] == "copy_transparent"
    assert wf["20"]["inputs"]["images"] == ["6", 0], "the input graph is not modified"
    twice = add_background_removal(out, "bicycle")  # prefixes are not suffixed twice
    assert twice["20"]["inputs"]["filename_prefix"] == "copy_transparent"


@pytest.mark.parametrize("name, message", [("ltxv-t2v", "writes a video")], ids=["video"])
def test_background_removal_refuses_graphs_without_saved_images(name: str, message: str) -> None:
    with pytest.raises(WorkflowError, match=message):
        add_background_removal(_load(name), "x")
    no_saver = {k: v for k, v in _load("sd15-txt2img").items() if v["class_type"] != "SaveImage"}
    with pytest.raises(WorkflowError, match="SaveImage"):
        add_background_removal(no_saver, "x")
