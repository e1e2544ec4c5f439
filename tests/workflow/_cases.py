"""Golden-file cases: a workflow, fixed params, and the expected composed graph.

Regenerate deliberately with ``python -m tests.workflow.regen_goldens`` (or run
the tests with UPDATE_GOLDENS=1); never as a side effect of a normal run.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfy_gen.params import GenerationParams, LoraSpec
from comfy_gen.workflow import apply_params_with_report, normalize_graph

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = REPO_ROOT / "workflows"
RECORDED = REPO_ROOT / "tests" / "recordings" / "workflows"
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"

BASE = GenerationParams(
    prompt="a red bicycle leaning on a garden wall",
    negative_prompt="blurry, lowres",
    seed=123456789,
    steps=12,
    cfg=6.5,
    sampler="euler_ancestral",
    scheduler="karras",
    width=768,
    height=512,
    batch_size=2,
    loras=(LoraSpec("detail_tweaker.safetensors", 0.6), LoraSpec("film_grain.safetensors", 0.8, 0.4)),
)


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    params: GenerationParams
    rng_seed: int | None = None


def _has_load_image(path: Path) -> bool:
    return any(n.get("class_type") == "LoadImage" for n in json.loads(path.read_text()).values())


def cases() -> list[Case]:
    found = []
    for folder, prefix in ((SHIPPED, "shipped"), (RECORDED, "recorded")):
        for path in sorted(folder.glob("*.json")):
            params = BASE.replace(input_image="golden_input.png") if _has_load_image(path) else BASE
            found.append(Case(f"{prefix}__{path.stem}", path, params))
    found += [
        Case("variant__sd15_checkpoint_vae_extra", SHIPPED / "sd15-txt2img.json",
             GenerationParams(checkpoint="other_sd15.safetensors", vae="better_vae.safetensors", denoise=0.9,
                              seed=42, extra=(("7.filename_prefix", "golden/extra"),))),
        Case("variant__tiny_random_seed_no_changes", SHIPPED / "tiny-sd15.json", GenerationParams(), rng_seed=7),
        Case("variant__flux_one_lora_steps", SHIPPED / "flux-dev.json",
             GenerationParams(steps=4, seed=1, loras=(LoraSpec("flux_style.safetensors", 1.0),))),
        # video: frames on the latent, fps on the save node (and LTXV conditioning), by links
        Case("variant__ltxv_t2v_frames_fps_size", SHIPPED / "ltxv-t2v.json",
             GenerationParams(prompt="a kite over hills", seed=5, frames=49, fps=12.0, width=512, height=320)),
        Case("variant__ltxv_i2v_frames_not_8k_plus_1", SHIPPED / "ltxv-i2v.json",
             GenerationParams(seed=5, frames=20, input_image="golden_input.png")),
        Case("variant__wan_vhs_frames_fps", SHIPPED / "wan22-t2v-vhs.json",
             GenerationParams(seed=5, frames=33, fps=8.0, extra=(("10.format", "image/webp"),))),
        Case("variant__sd15_video_params_ignored", SHIPPED / "sd15-txt2img.json",
             GenerationParams(seed=5, frames=33, fps=8.0)),
        # --transparent: segment-anything cut-out between the decoded image and SaveImage
        Case("variant__sd15_transparent_subject", SHIPPED / "sd15-txt2img.json",
             GenerationParams(prompt="a red bicycle by a wall", seed=5, transparent=True,
                              transparent_subject="bicycle")),
        Case("variant__flux_transparent_prompt_with_lora", SHIPPED / "flux-dev.json",
             GenerationParams(prompt="a glass teapot icon", seed=5, transparent=True,
                              loras=(LoraSpec("flux_style.safetensors", 1.0),))),
    ]
    return found


def render(case: Case) -> str:
    """The case's golden text: composed workflow + report, sorted keys."""
    wf = normalize_graph(json.loads(case.path.read_text()), source=case.path.name)
    rng = random.Random(case.rng_seed) if case.rng_seed is not None else None
    graph, report = apply_params_with_report(wf, case.params, rng=rng)
    payload: dict[str, Any] = {"workflow": graph, "report": report.to_dict()}
    return json.dumps(payload, indent=2, sort_keys=True) + "\n"


def golden_path(case: Case) -> Path:
    return GOLDEN_DIR / f"{case.name}.json"
