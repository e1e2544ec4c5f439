"""load_workflow: name resolution, confinement, clear errors, UI-format conversion."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from comfy_gen.errors import PathNotAllowed, WorkflowError
from comfy_gen.workflow import load_workflow, preflight
from tests.workflow.conftest import SHIPPED_DIR


@pytest.fixture
def wf_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "wfs"
    folder.mkdir()
    for name in ("tiny-sd15", "flux-dev"):
        (folder / f"{name}.json").write_text((SHIPPED_DIR / f"{name}.json").read_text())
    return folder


@pytest.mark.parametrize("ref", ["tiny-sd15", "tiny-sd15.json"])
def test_name_with_or_without_extension(ref, wf_dir):
    wf = load_workflow(ref, workflows_dir=wf_dir)
    assert wf["1"]["inputs"]["ckpt_name"] == "tiny_sd15.safetensors"


def test_default_folder_comes_from_settings(wf_dir, monkeypatch):
    from comfy_gen.config import reset_settings_cache

    monkeypatch.setenv("COMFY_GEN_WORKFLOWS_DIR", str(wf_dir))
    reset_settings_cache()
    assert "10" in load_workflow("flux-dev")


def test_shipped_folder_is_the_default_in_a_checkout():
    assert load_workflow("sd15-txt2img")["7"]["inputs"]["filename_prefix"] == "comfy-gen/sd15"


def test_unknown_name_lists_the_available_ones(wf_dir):
    with pytest.raises(WorkflowError) as info:
        load_workflow("nope", workflows_dir=wf_dir)
    assert "Unknown workflow 'nope'" in info.value.message
    assert "flux-dev, tiny-sd15" in (info.value.hint or "")


def test_names_cannot_escape_the_folder(wf_dir, tmp_path):
    outside = tmp_path.parent / f"{tmp_path.name}-secret.json"
    outside.write_text("{}")
    try:
        with pytest.raises(PathNotAllowed):
            load_workflow(f"../../{outside.name}", workflows_dir=wf_dir)
        with pytest.raises(PathNotAllowed):
            load_workflow(str(outside), workflows_dir=wf_dir)
    finally:
        outside.unlink()


def test_symlink_pointing_outside_is_refused(wf_dir, tmp_path):
    secret = tmp_path.parent / f"{tmp_path.name}-link-target.json"
    secret.write_text((SHIPPED_DIR / "tiny-sd15.json").read_text())
    try:
        (wf_dir / "sneaky.json").symlink_to(secret)
        with pytest.raises(PathNotAllowed):
            load_workflow("sneaky", workflows_dir=wf_dir)
    finally:
        secret.unlink()


def test_absolute_and_cwd_relative_paths_inside_allowed_folders(wf_dir, tmp_path):
    assert load_workflow(str(wf_dir / "tiny-sd15.json"), workflows_dir=wf_dir)
    (tmp_path / "mine.json").write_text((SHIPPED_DIR / "tiny-sd15.json").read_text())  # cwd is tmp_path
    assert load_workflow("mine.json", workflows_dir=wf_dir)
    with pytest.raises(PathNotAllowed):
        load_workflow(str(tmp_path / "mine.json"), workflows_dir=wf_dir, allowed_dirs=[wf_dir])
    assert load_workflow(str(SHIPPED_DIR / "flux-dev.json"), workflows_dir=wf_dir, allowed_dirs=[SHIPPED_DIR])


def test_invalid_json_reports_line_and_column(wf_dir):
    (wf_dir / "broken.json").write_text('{\n  "1": {"class_type": "X",\n}')
    with pytest.raises(WorkflowError, match=r"invalid JSON at line 3 column 1"):
        load_workflow("broken", workflows_dir=wf_dir)


@pytest.mark.parametrize(("content", "message"), [
    ("[1, 2]", "expected a JSON object of nodes, got list"),
    ("{}", "no nodes with a class_type"),
    ('{"1": {"inputs": {}}}', "missing the class_type"),
    ('{"1": {"class_type": "X", "inputs": [1]}}', "'inputs' that is not an object"),
], ids=["list", "empty", "no-class-type", "bad-inputs"])
def test_not_a_graph(content, message, wf_dir):
    (wf_dir / "bad.json").write_text(content)
    with pytest.raises(WorkflowError, match=message):
        load_workflow("bad", workflows_dir=wf_dir)


def test_non_node_keys_dropped_with_warning_and_string_ids_kept(wf_dir, caplog):
    data = json.loads((SHIPPED_DIR / "tiny-sd15.json").read_text())
    data["save-node"] = data.pop("7")
    data["version"] = 2
    (wf_dir / "odd.json").write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING):
        wf = load_workflow("odd", workflows_dir=wf_dir)
    assert "save-node" in wf and "version" not in wf
    assert "not nodes: version" in caplog.text


def test_prompt_request_body_is_unwrapped(wf_dir):
    data = {"prompt": json.loads((SHIPPED_DIR / "tiny-sd15.json").read_text()), "client_id": "x"}
    (wf_dir / "body.json").write_text(json.dumps(data))
    assert set(load_workflow("body", workflows_dir=wf_dir)) == {"1", "2", "3", "4", "5", "6", "7"}


def _ui_workflow(object_links: bool = False) -> dict:
    """A UI-format txt2img with a Reroute, a PrimitiveNode, a Note, a bypassed and a muted node."""
    def n(id_, type_, inputs=(), widgets=None, mode=0, outputs=(), title=None):
        out = {"id": id_, "type": type_, "mode": mode, "pos": [0, 0], "size": [100, 100],
               "inputs": [dict(i) for i in inputs], "outputs": [dict(o) for o in outputs]}
        if widgets is not None:
            out["widgets_values"] = widgets
        if title:
            out["title"] = title
        return out

    nodes = [
        n(4, "CheckpointLoaderSimple", widgets=["tiny_sd15.safetensors"]),
        n(6, "CLIPTextEncode", [{"name": "clip", "type": "CLIP", "link": 3}], ["a lighthouse"], title="Positive"),
        n(7, "CLIPTextEncode", [{"name": "clip", "type": "CLIP", "link": 5}], ["blurry"]),
        n(5, "EmptyLatentImage", [{"name": "width", "type": "INT", "link": 20, "widget": {"name": "width"}}],
          [64, 64, 1]),
        n(20, "PrimitiveNode", widgets=[96, "fixed"], outputs=[{"name": "INT", "type": "INT", "links": [20]}]),
        n(30, "Reroute", [{"name": "", "type": "*", "link": 1}],
          outputs=[{"name": "", "type": "MODEL", "links": [31]}]),
        n(3, "KSampler", [{"name": "model", "type": "MODEL", "link": 31},
                          {"name": "positive", "type": "CONDITIONING", "link": 4},
                          {"name": "negative", "type": "CONDITIONING", "link": 6},
                          {"name": "latent_image", "type": "LATENT", "link": 2}],
          [156680208700286, "randomize", 3, 7, "euler", "normal", 1]),
        n(40, "LatentUpscaleBy", [{"name": "samples", "type": "LATENT", "link": 7}], ["nearest-exact", 1.5], mode=4,
          outputs=[{"name": "LATENT", "type": "LATENT", "links": [9]}]),
        n(8, "VAEDecode", [{"name": "samples", "type": "LATENT", "link": 9},
                           {"name": "vae", "type": "VAE", "link": 8}]),
        n(9, "SaveImage", [{"name": "images", "type": "IMAGE", "link": 10}], ["ui_test"]),
        n(50, "Note", widgets=["remember to export"]),
        n(60, "PreviewImage", [{"name": "images", "type": "IMAGE", "link": 11}], mode=2),
    ]
    links = [[1, 4, 0, 30, 0, "MODEL"], [31, 30, 0, 3, 0, "MODEL"], [3, 4, 1, 6, 0, "CLIP"],
             [5, 4, 1, 7, 0, "CLIP"], [4, 6, 0, 3, 1, "CONDITIONING"], [6, 7, 0, 3, 2, "CONDITIONING"],
             [2, 5, 0, 3, 3, "LATENT"], [20, 20, 0, 5, 0, "INT"], [7, 3, 0, 40, 0, "LATENT"],
             [9, 40, 0, 8, 0, "LATENT"], [8, 4, 2, 8, 1, "VAE"], [10, 8, 0, 9, 0, "IMAGE"], [11, 8, 0, 60, 0, "IMAGE"]]
    if object_links:
        keys = ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")
        links = [dict(zip(keys, link, strict=True)) for link in links]
    return {"last_node_id": 60, "last_link_id": 31, "nodes": nodes, "links": links, "groups": [], "version": 0.4}


def test_ui_format_without_object_info_explains_the_api_export(wf_dir):
    (wf_dir / "ui.json").write_text(json.dumps(_ui_workflow()))
    with pytest.raises(WorkflowError) as info:
        load_workflow("ui", workflows_dir=wf_dir)
    assert "UI-format" in info.value.message and "Export (API)" in (info.value.hint or "")


@pytest.mark.parametrize("object_links", [False, True], ids=["array-links", "object-links"])
def test_ui_format_is_converted_with_object_info(object_links, wf_dir, object_info):
    (wf_dir / "ui.json").write_text(json.dumps(_ui_workflow(object_links)))
    wf = load_workflow("ui", workflows_dir=wf_dir, object_info=object_info)
    assert {k: (v["class_type"], v["inputs"]) for k, v in wf.items()} == {
        "4": ("CheckpointLoaderSimple", {"ckpt_name": "tiny_sd15.safetensors"}),
        "6": ("CLIPTextEncode", {"text": "a lighthouse", "clip": ["4", 1]}),
        "7": ("CLIPTextEncode", {"text": "blurry", "clip": ["4", 1]}),
        "5": ("EmptyLatentImage", {"width": 96, "height": 64, "batch_size": 1}),
        "3": ("KSampler", {"seed": 156680208700286, "steps": 3, "cfg": 7, "sampler_name": "euler",
                           "scheduler": "normal", "denoise": 1, "model": ["4", 0], "positive": ["6", 0],
                           "negative": ["7", 0], "latent_image": ["5", 0]}),
        "8": ("VAEDecode", {"samples": ["3", 0], "vae": ["4", 2]}),
        "9": ("SaveImage", {"filename_prefix": "ui_test", "images": ["8", 0]}),
    }
    assert wf["6"]["_meta"]["title"] == "Positive"
    assert preflight(wf, object_info) == []


def test_ui_format_with_unknown_nodes_is_refused(wf_dir, object_info):
    data = _ui_workflow()
    data["nodes"].append({"id": 70, "type": "SomeCustomNode", "mode": 0, "inputs": [], "outputs": []})
    (wf_dir / "ui.json").write_text(json.dumps(data))
    with pytest.raises(WorkflowError, match=r"not on the server: 70 \(SomeCustomNode\)"):
        load_workflow("ui", workflows_dir=wf_dir, object_info=object_info)
