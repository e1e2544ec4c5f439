"""The workflow editor keeps graphs valid: any in-range parameters, LoRAs included,
applied to a shipped workflow give a graph the node catalog accepts.

The catalog is the emulator's (ComfyUI's recorded /object_info with live model
lists), checked by comfy_gen.workflow.preflight: the same check a real server's
validation makes before queueing.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from comfy_gen.emulator.catalog import Catalog, normalize_models
from comfy_gen.params import GenerationParams, LoraSpec
from comfy_gen.workflow import apply_params, load_workflow, preflight
from tests.conftest import REPO_ROOT

WORKFLOWS = sorted(p.stem for p in (REPO_ROOT / "workflows").glob("*.json"))
MODELS = normalize_models(None)
INPUT = "input_0001.png"


@pytest.fixture(scope="module")
def object_info(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("input")
    (folder / INPUT).write_bytes(b"\x89PNG\r\n\x1a\n")  # LoadImage lists it by name
    return Catalog(MODELS, folder).object_info()


def _choices(info: dict[str, Any], cls: str, name: str) -> list[str]:
    spec = info[cls]["input"]["required"][name]
    return list(spec[0]) if isinstance(spec[0], list) else list(spec[1].get("options", []))


@st.composite
def params_for(draw: st.DrawFn, info: dict[str, Any], graph: dict[str, Any]) -> GenerationParams:
    classes = {node["class_type"] for node in graph.values()}
    unet = "UNETLoader" in classes
    size = st.integers(8, 256).map(lambda n: n * 8)  # 64..2048, divisible by 8
    loras = draw(st.lists(st.sampled_from(MODELS["loras"]), max_size=3, unique=True))
    return GenerationParams(
        prompt=draw(st.text(min_size=1, max_size=80)).replace("\x00", " ") or "x",
        negative_prompt=draw(st.none() | st.text(max_size=40).map(lambda t: t.replace("\x00", " "))),
        seed=draw(st.integers(0, 2**32 - 1)), steps=draw(st.integers(1, 150)),
        cfg=draw(st.floats(1.0, 30.0, allow_nan=False).map(lambda v: round(v, 2))),
        sampler=draw(st.sampled_from(_choices(info, "KSampler", "sampler_name"))),
        scheduler=draw(st.sampled_from(_choices(info, "KSampler", "scheduler"))),
        width=draw(size), height=draw(size),
        denoise=draw(st.floats(0.0, 1.0, allow_nan=False)) if "LoadImage" in classes else None,
        checkpoint=draw(st.sampled_from(MODELS["diffusion_models" if unet else "checkpoints"])),
        loras=tuple(LoraSpec(name, draw(st.floats(0.0, 2.0, allow_nan=False).map(lambda v: round(v, 2))))
                    for name in loras),
        input_image=INPUT if "LoadImage" in classes else None,
    )


@pytest.mark.parametrize("name", WORKFLOWS)
def test_edited_graphs_stay_valid_against_the_catalog(name: str, object_info: dict[str, Any]) -> None:
    graph = load_workflow(REPO_ROOT / "workflows" / f"{name}.json", object_info=object_info)
    assert preflight(graph, object_info) == [], "the shipped workflow itself must be valid"
    original = json.dumps(graph, sort_keys=True)

    @given(params_for(object_info, graph))
    def check(params: GenerationParams) -> None:
        edited = apply_params(graph, params, rng=random.Random(0), object_info=object_info)
        assert preflight(edited, object_info) == []
        assert json.dumps(graph, sort_keys=True) == original  # edits return a new graph
        # every link still points at an existing node's existing output
        for node in edited.values():
            for value in node["inputs"].values():
                if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                    assert value[0] in edited

    check()


def test_every_shipped_workflow_is_covered() -> None:
    assert set(WORKFLOWS) >= {"tiny-sd15", "sd15-img2img", "sdxl-txt2img", "flux-dev"}
    assert all((REPO_ROOT / "workflows" / f"{n}.json").is_file() for n in WORKFLOWS)
    assert Path(REPO_ROOT / "workflows").is_dir()
