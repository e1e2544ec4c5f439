"""Loading the person, pose and content models: one per process per (setting, model,
device), with every failure turned into ``ValidatorUnavailable`` naming the setting.

The rules are CLIP's (``comfy_gen.validation.clip.load_clip``): a local folder must
exist; a hub id is read from the local cache first and the hub is asked only when
offline mode is off and a ~1 s probe reaches it, so a missing model fails in about
a second, before rendering, instead of after the hub client's retries.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from comfy_gen.errors import ValidatorUnavailable, contextual_hint

if TYPE_CHECKING:
    from comfy_gen.config import Settings

log = logging.getLogger(__name__)

_T = TypeVar("_T")
#: ``build(source, local_only, revision)`` -> whatever the validator keeps (model, processor).
Builder = Callable[[str, bool, "str | None"], _T]

_CACHE: dict[tuple[str, str, str, str | None], Any] = {}
_LOCK = threading.Lock()


def unavailable_hint(setting: str, check: str) -> str:
    """What to change, in the words of the context (CLI or deployment)."""
    env = f"COMFY_GEN_{setting.upper()}"
    return contextual_hint(
        cli=f"Set {env} to a local folder holding the model (as written by save_pretrained), make the "
            f"Hugging Face hub reachable, or drop the {check} check (docs/validation.md#people-pose-and-content).",
        deployment=f"Set {env} in the worker's environment (or the deployment's job_variables.env) to a "
                   f"local folder holding the model, make the hub reachable from the worker, or set "
                   f"validation.allow_skip: true (or remove '{check}' from validation.checks) in the recipe.")


def device_for(settings: "Settings") -> str:
    """``validator_device``, else ``clip_device``, else cuda when available."""
    chosen = settings.validator_device or settings.clip_device
    if chosen:
        return chosen
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _fail(setting: str, check: str, model_name: str, message: str) -> ValidatorUnavailable:
    return ValidatorUnavailable(f"{setting} ({model_name!r}): {message}", hint=unavailable_hint(setting, check))


def _in_hub_cache(model_name: str, revision: str | None) -> bool:
    """Whether the local hub cache holds the model's config at ``revision`` (no transformers import)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(model_name, "config.json", revision=revision), str)
    except ValueError:  # not a valid repo id: only from_pretrained can say what it is
        return True


def _precheck(setting: str, check: str, model_name: str, revision: str | None) -> bool:
    """True when ``model_name`` is a local folder; raise now when it cannot be had."""
    from comfy_gen.config import hub_offline
    from comfy_gen.validation.clip import _looks_local, hub_address, hub_reachable

    if _looks_local(model_name):
        if not Path(model_name).expanduser().is_dir():
            raise _fail(setting, check, model_name, "model folder not found")
        return True
    if not _in_hub_cache(model_name, revision):
        if hub_offline():
            raise _fail(setting, check, model_name,
                        "not in the local model cache and hub access is off (HF_HUB_OFFLINE)")
        address = hub_address()
        if not hub_reachable(address):
            raise _fail(setting, check, model_name, f"not in the local model cache and the model hub "
                                                    f"({address[0]}:{address[1]}) cannot be reached")
        log.info("%s %s is not cached; downloading it from the hub", setting, model_name)
    return False


def load_cached(setting: str, check: str, model_name: str, device: str, build: "Builder[_T]", *,
                revision: str | None = None) -> _T:
    """``build(source, local_only, revision)`` once per process per (setting, model,
    device, revision); ValidatorUnavailable (naming ``setting``) for any load failure."""
    key = (setting, model_name, device, revision)
    with _LOCK:  # held while loading: two threads never build the same model
        if key in _CACHE:
            return _CACHE[key]  # type: ignore[no-any-return]
        local = _precheck(setting, check, model_name, revision)
        source = str(Path(model_name).expanduser()) if local else model_name
        from comfy_gen.validation.clip import _load_errors

        try:
            from transformers.utils import logging as hf_logging

            disable_progress_bar: Callable[[], None] = hf_logging.disable_progress_bar
            disable_progress_bar()
            try:
                loaded = build(source, not local, None if local else revision)
            except _load_errors():
                if local:
                    raise
                loaded = build(source, False, revision)  # cached only in part: ask the hub
        except ValidatorUnavailable:
            raise
        except _load_errors() as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise _fail(setting, check, model_name, f"cannot load: {type(exc).__name__}: {detail}") from exc
        _CACHE[key] = loaded
        return loaded


def clear_cache() -> None:
    """Drop the loaded models (frees their memory; tests)."""
    with _LOCK:
        _CACHE.clear()
