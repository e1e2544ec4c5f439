"""--transparent end to end: the graph edit, the emulator's segment-anything nodes, RGBA out;
and a server without the custom nodes is refused before anything is queued."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from PIL import Image

from comfy_gen.config import get_settings
from comfy_gen.emulator import Emulator
from comfy_gen.errors import PreflightError
from comfy_gen.exit_codes import EXIT_CONFIG_ERROR, exit_code_for
from comfy_gen.params import GenerationParams
from comfy_gen.service import GenerateRequest, generate
from tests.generate.helpers import chunks, run_cli

PACK_URL = "https://github.com/storyicon/comfyui_segment_anything"


def test_transparent_cli_writes_an_rgba_png_with_metadata(gen_env: Emulator, tmp_path: Path) -> None:
    code, out, err = run_cli("generate", "-w", "tiny-sd15", "-p", "a red teapot icon", "--transparent",
                             "--width", "128", "--height", "128", "-o", str(tmp_path / "icon.png"))
    assert code == 0, err
    icon = Path(out.strip())
    with Image.open(icon) as img:
        assert img.mode == "RGBA" and img.size == (128, 128)
        assert img.getpixel((0, 0))[3] == 0          # background (corner) transparent
        assert img.getpixel((64, 64))[3] == 255      # subject (centre) kept
    meta = json.loads(chunks(icon)["comfygen_metadata"])
    assert meta["parameters"]["transparent"] is True
    # The graph ComfyUI ran has the cut-out, searching for the prompt, saved with a _transparent prefix.
    graph = json.loads(chunks(icon)["prompt"])
    segment = next(n for n in graph.values() if n["class_type"] == "GroundingDinoSAMSegment (segment anything)")
    assert segment["inputs"]["prompt"] == "a red teapot icon"
    saver = next(n for n in graph.values() if n["class_type"] == "SaveImage")
    assert graph[saver["inputs"]["images"][0]]["class_type"] == "JoinImageWithAlpha"
    assert saver["inputs"]["filename_prefix"].endswith("_transparent")


def test_transparent_subject_is_what_the_segmenter_looks_for(gen_env: Emulator) -> None:
    params = GenerationParams(prompt="a teapot on a wooden table", seed=1, steps=1, width=64, height=64,
                              transparent=True, transparent_subject="teapot")
    result = generate(GenerateRequest(workflow="tiny-sd15", params=params), settings=get_settings())
    assert result.file is not None and Image.open(result.file).mode == "RGBA"
    history = httpx.get(f"{gen_env.url}/history/{result.prompt_id}").json()[str(result.prompt_id)]
    graph = history["prompt"][2]
    prompts = [n["inputs"]["prompt"] for n in graph.values()
               if n["class_type"] == "GroundingDinoSAMSegment (segment anything)"]
    assert prompts == ["teapot"]


def test_server_without_the_pack_exits_2_naming_nodes_and_source(tmp_path: Path, use_backend) -> None:
    with Emulator(step_time=0.01, data_dir=tmp_path / "bare", custom_nodes=False) as bare:
        use_backend(bare.url)
        code, out, err = run_cli("generate", "-w", "tiny-sd15", "-p", "a teapot", "--transparent")
        assert code == 2 and out == ""
        for cls in ("SAMModelLoader (segment anything)", "GroundingDinoModelLoader (segment anything)",
                    "GroundingDinoSAMSegment (segment anything)"):
            assert f"node class '{cls}' is not installed on the server" in err
        assert f"comfyui_segment_anything ({PACK_URL})" in err and "ComfyUI/custom_nodes" in err
        assert "Traceback" not in err
        assert bare.stats()["jobs_completed"] == 0
        # The same refusal through the service: a PreflightError (exit 2) whose problems name the pack.
        params = GenerationParams(prompt="a teapot", seed=1, transparent=True)
        try:
            generate(GenerateRequest(workflow="tiny-sd15", params=params), settings=get_settings())
        except PreflightError as exc:
            assert exit_code_for(exc) == EXIT_CONFIG_ERROR
            assert all(PACK_URL in p.message for p in exc.problems)
            assert PACK_URL in (exc.hint or "")
        else:
            raise AssertionError("expected PreflightError")


def test_vhs_workflow_on_a_server_without_videohelpersuite(tmp_path: Path, use_backend) -> None:
    with Emulator(step_time=0.01, data_dir=tmp_path / "bare", custom_nodes=False) as bare:
        use_backend(bare.url)
        code, _, err = run_cli("generate", "-w", "wan22-t2v-vhs", "-p", "a kite", "--dry-run")
        assert code == 2
        assert "'VHS_VideoCombine' is not installed" in err
        assert "https://github.com/Kosinkadink/ComfyUI-VideoHelperSuite" in err
