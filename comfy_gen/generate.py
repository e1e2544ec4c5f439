"""The seed's documented module-level API, as a thin facade over the core.

Scripts written for the original ``generate.py`` import these names and keep
working with only their host settings changed (``COMFY_GEN_COMFYUI_URL``,
``COMFY_GEN_MINIO_*``). Return conventions follow the seed: ``None``/``False``
on failure instead of exceptions, errors logged. New code should use
``ComfyUIClient``, ``comfy_gen.workflow`` and ``comfy_gen.pipeline`` directly.

Differences from the original, on purpose: prompts are found by following the
sampler's links (not node ids 2/3), ``modify_sampler_params`` covers every
sampler type, ``cancel_prompt`` interrupts only when the prompt is the running
one, and ``wait_for_completion`` has an overall timeout.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comfy_gen.exit_codes import EXIT_CONFIG_ERROR, EXIT_FAILURE, EXIT_SUCCESS, EXIT_VALIDATION_FAILED
from comfy_gen.errors import ComfyGenError
from comfy_gen.params import GenerationParams
from comfy_gen.storage import upload_to_minio
from comfy_gen.strategies import adjust_prompt_for_retry, get_retry_params

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.comfyui import ComfyUIClient

log = logging.getLogger(__name__)

MAX_RETRIES = 3
RETRY_DELAY = 2
RETRY_BACKOFF = 2

_local = threading.local()


def _client() -> "ComfyUIClient":
    """A client for the configured server, one per thread (the facade has no client argument)."""
    from comfy_gen.comfyui import ComfyUIClient
    from comfy_gen.config import get_settings

    settings = get_settings()
    client = getattr(_local, "client", None)
    if client is None or client.base_url != settings.comfyui_url.rstrip("/"):
        if client is not None:
            client.close()  # the URL changed: drop the old connection and socket thread
        client = _local.client = ComfyUIClient.from_settings(settings)
    return client


def check_server_availability() -> bool:
    """True if the configured ComfyUI answers ``/system_stats``."""
    return bool(_client().is_available())


def get_available_models() -> dict[str, list[str]] | None:
    """Models per folder (checkpoints, loras, vae, ...), or None on failure."""
    try:
        return _client().available_models()
    except ComfyGenError as exc:
        log.error("Could not list models: %s", exc)
        return None


def find_model_fallbacks(requested_model: str, available_models: dict[str, list[str]],
                         model_type: str = "checkpoints") -> list[str]:
    """Up to 5 alternatives for a missing model."""
    from comfy_gen.workflow import find_model_fallbacks as _fallbacks

    return _fallbacks(requested_model, (available_models or {}).get(model_type, []), limit=5)


def validate_workflow_models(workflow: dict[str, Any], available_models: dict[str, list[str]]
                             ) -> tuple[bool, list[tuple[str, str]], dict[str, list[str]]]:
    """``(is_valid, [(model_type, name)], {name: [suggestions]})``."""
    from comfy_gen.workflow import validate_workflow_models as _validate

    return _validate(workflow, available_models)


def load_workflow(workflow_path: str) -> dict[str, Any]:
    """Load an API-format workflow file.

    Raises FileNotFoundError / json.JSONDecodeError as the seed documents (other
    problems, such as a UI-format file, raise WorkflowError). A relative
    ``workflows/NAME.json`` that is not under the cwd is looked up in the
    configured workflows folder, so the seed's scripts run from anywhere.
    """
    from comfy_gen.config import get_settings
    from comfy_gen.workflow import normalize_graph

    workflows_dir = Path(get_settings().workflows_dir)
    path = Path(workflow_path).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, workflows_dir / path,
                                                    workflows_dir / path.name]
    if path.suffix != ".json":
        candidates += [c.with_name(c.name + ".json") for c in candidates]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise FileNotFoundError(f"Workflow file not found: {workflow_path} (also looked in {workflows_dir})")
    with found.open(encoding="utf-8") as fh:
        data = json.load(fh)  # json.JSONDecodeError, as the seed raised it
    return normalize_graph(data, source=str(found))


def _in_place(workflow: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    # The seed's modify_* functions changed the dict in place and returned it.
    workflow.clear()
    workflow.update(new)
    return workflow


def modify_prompt(workflow: dict[str, Any], positive_prompt: str, negative_prompt: str = "") -> dict[str, Any]:
    """Set the positive (and, if given, negative) prompt found through the sampler's links."""
    from comfy_gen.workflow import set_prompt

    return _in_place(workflow, set_prompt(workflow, positive_prompt, negative_prompt or None))


def modify_input_image(workflow: dict[str, Any], uploaded_filename: str) -> dict[str, Any]:
    from comfy_gen.workflow import set_input_image

    return _in_place(workflow, set_input_image(workflow, uploaded_filename))


def modify_denoise(workflow: dict[str, Any], denoise_value: float) -> dict[str, Any]:
    from comfy_gen.workflow import set_sampler_params

    return _in_place(workflow, set_sampler_params(workflow, denoise=denoise_value))


def modify_sampler_params(workflow: dict[str, Any], steps: int | None = None, cfg: float | None = None,
                          seed: int | None = None, sampler: str | None = None,
                          scheduler: str | None = None) -> dict[str, Any]:
    """Set sampler parameters on every sampler node (KSampler, KSamplerAdvanced, SamplerCustom...)."""
    from comfy_gen.pipeline import compose_graph

    params = GenerationParams(steps=steps, cfg=cfg, seed=seed, sampler=sampler, scheduler=scheduler)
    current_seed = None if seed is not None else _current_seed(workflow)
    if current_seed is not None:
        params = params.replace(seed=current_seed)  # keep the graph's seed when none is given
    return _in_place(workflow, compose_graph(workflow, params))


def _current_seed(workflow: dict[str, Any]) -> int | None:
    from comfy_gen.workflow import get_params

    return get_params(workflow).seed


def queue_workflow(workflow: dict[str, Any], retry: bool = True) -> str | None:
    """Queue a workflow; its prompt_id, or None on failure (5xx/connection errors retried)."""
    from comfy_gen.comfyui import ComfyUIClient
    from comfy_gen.config import get_settings

    try:
        if retry:
            return _client().queue_prompt(workflow).prompt_id
        # One attempt only: a throwaway client with retries=1 (the shared one keeps its policy).
        with ComfyUIClient.from_settings(get_settings().model_copy(update={"http_retries": 1})) as client:
            queued = client.queue_prompt(workflow)
        return queued.prompt_id
    except ComfyGenError as exc:
        log.error("Could not queue the workflow: %s", exc)
        return None


def wait_for_completion(prompt_id: str, timeout: float | None = None) -> dict[str, Any]:
    """Wait for the job; the history entry (``outputs``, ``status``), or ``{}`` on failure."""
    client = _client()
    try:
        client.wait(prompt_id, timeout=timeout)
    except ComfyGenError as exc:
        log.error("Job %s did not succeed: %s", prompt_id, exc)
    return client.history(prompt_id) or {}


def download_output(status: dict[str, Any], output_path: str) -> bool:
    """Download the first output of a finished job to ``output_path``."""
    from comfy_gen.comfyui._protocol import outputs_from_history

    outputs = [o for o in outputs_from_history(status or {}) if o.type != "temp"] or \
        outputs_from_history(status or {})
    if not outputs:
        log.error("The job has no outputs to download")
        return False
    try:
        target = Path(output_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        _client().download(outputs[0], target)
        return True
    except ComfyGenError as exc:
        log.error("Download failed: %s", exc)
        return False


def upload_image_to_comfyui(image_path: str) -> str | None:
    """Upload an input image as ``input_<8 hex><ext>``; the name to use in LoadImage, or None."""
    import shutil
    import tempfile
    import uuid

    src = Path(image_path)
    try:
        with tempfile.TemporaryDirectory(prefix="comfy-gen-upload-") as tmp:
            # A fresh name per upload, as the seed did, so two inputs never collide.
            unique = Path(tmp) / f"input_{uuid.uuid4().hex[:8]}{src.suffix.lower() or '.png'}"
            shutil.copyfile(src, unique)
            return _client().upload_image(unique, overwrite=True)
    except (ComfyGenError, OSError) as exc:
        log.error("Upload to ComfyUI failed: %s", exc)
        return None


def preprocess_image(image_path: str, resize: tuple[int, int] | None = None, crop: str | None = None) -> str:
    """Resize/crop ``image_path`` in place; returns the same path."""
    from comfy_gen.images import preprocess_image as _pre

    return str(_pre(image_path, image_path, resize=resize, crop=crop))  # type: ignore[arg-type]


def cancel_prompt(prompt_id: str) -> bool:
    """Cancel our prompt: interrupt it if it is running, else delete it from the queue."""
    try:
        return _client().cancel(prompt_id) != "not_found"
    except ComfyGenError as exc:
        log.error("Cancel failed: %s", exc)
        return False


__all__ = [
    "EXIT_CONFIG_ERROR", "EXIT_FAILURE", "EXIT_SUCCESS", "EXIT_VALIDATION_FAILED", "MAX_RETRIES",
    "RETRY_BACKOFF", "RETRY_DELAY", "adjust_prompt_for_retry", "cancel_prompt", "check_server_availability",
    "download_output", "find_model_fallbacks", "get_available_models", "get_retry_params", "load_workflow",
    "modify_denoise", "modify_input_image", "modify_prompt", "modify_sampler_params", "preprocess_image",
    "queue_workflow", "upload_image_to_comfyui", "upload_to_minio", "validate_workflow_models",
    "wait_for_completion",
]
