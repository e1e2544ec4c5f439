"""Pure editing of ComfyUI API-format graphs: every edit returns a new dict.

Nodes are found by following links from the samplers (see ``discovery``), never
by fixed ids; titles only break ties.

    wf = load_workflow("sd15-txt2img")
    graph, report = apply_params_with_report(wf, GenerationParams(prompt="a lighthouse", seed=-1))
    check_workflow(graph, client.object_info())      # PreflightError with every problem
"""

from comfy_gen.workflow.apply import apply_params, apply_params_with_report, get_params
from comfy_gen.workflow.discovery import PromptNodes, find_prompt_nodes, main_model_loader
from comfy_gen.workflow.edit import (
    ApplyReport,
    Change,
    set_checkpoint,
    set_input_image,
    set_prompt,
    set_sampler_params,
    set_seed,
    set_size,
    set_vae,
)
from comfy_gen.workflow.loader import available_workflows, load_workflow, normalize_graph, resolve_workflow_path
from comfy_gen.workflow.custom_nodes import NodePack, missing_packs, pack_for
from comfy_gen.workflow.loras import add_loras
from comfy_gen.workflow.models import referenced_models, validate_workflow_models
from comfy_gen.workflow.preflight import Problem, check_workflow, find_model_fallbacks, preflight
from comfy_gen.workflow.transparent import add_background_removal
from comfy_gen.workflow.video import is_video_workflow, video_outputs
from comfy_gen.workflow.ui_format import convert_ui_workflow, is_ui_format

__all__ = [
    "ApplyReport", "Change", "NodePack", "Problem", "PromptNodes", "add_background_removal", "add_loras",
    "apply_params", "apply_params_with_report", "available_workflows", "check_workflow", "convert_ui_workflow",
    "find_model_fallbacks", "find_prompt_nodes", "get_params", "is_ui_format", "is_video_workflow",
    "load_workflow", "main_model_loader", "missing_packs", "normalize_graph", "pack_for", "preflight",
    "referenced_models", "resolve_workflow_path", "set_checkpoint", "set_input_image", "set_prompt",
    "set_sampler_params", "set_seed", "set_size", "set_vae", "validate_workflow_models", "video_outputs",
]
