"""CLIP image-text validation (the seed's ``ImageValidator``), batched and cached.

Score scale: torchmetrics' CLIPScore, ``100 * max(cos, 0)`` between the L2-normalised
image and text embeddings (0-100; matching pairs score roughly 25-35 with ViT-B/32).

Long prompts: CLIP's text encoder sees at most 77 positions (75 tokens plus
start/end). Rather than silently truncating (which drops the tail of long SDXL
prompts), a prompt is split by tokens into windows of <= 75 tokens, each window is
encoded as its own sequence, the normalised window embeddings are averaged and the
mean is renormalised. This keeps the seed's "chunk, average, renormalise" idea but
chunks by tokens instead of by 250 characters, so no window is ever truncated.

One model per process per (model, device): ``get_validator`` caches it; the seed
reloaded the model on every call. torch and transformers are imported on first use.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, cast

from comfy_gen.errors import ValidatorUnavailable, contextual_hint
from comfy_gen.validation.base import (
    BaseValidator,
    ImageInput,
    Thresholds,
    ValidationResult,
    default_positive_threshold,
    register_validator,
    warn_if_legacy_threshold,
)

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

    from comfy_gen.config import Settings

log = logging.getLogger(__name__)

DEFAULT_MODEL = "openai/clip-vit-base-patch32"

#: How long the hub probe may take before the hub counts as unreachable (connect only).
HUB_PROBE_TIMEOUT = 1.0


def unavailable_hint() -> str:
    """What to change when the model cannot be loaded, in the words of the context
    (CLI flags, or a deployment's worker environment and recipe fields)."""
    return contextual_hint(
        cli="Set COMFY_GEN_CLIP_MODEL to a local folder holding the CLIP model (config.json, "
            "model.safetensors, tokenizer and processor files, as written by save_pretrained), "
            "make the Hugging Face hub reachable, or skip validation (--no-validate).",
        deployment="Set COMFY_GEN_CLIP_MODEL in the worker's environment (or the deployment's "
                   "job_variables.env) to a local folder holding the CLIP model, make the Hugging Face "
                   "hub reachable from the worker, or set validation.allow_skip: true (or "
                   "validation.enabled: false) in the recipe.")


def _load_errors() -> tuple[type[BaseException], ...]:
    # Everything from_pretrained raises for "not there / not a CLIP model": hub errors
    # are OSError subclasses, except EntryNotFoundError; bad configs give ValueError/KeyError.
    errors: list[type[BaseException]] = [OSError, ValueError, KeyError, RuntimeError, ImportError, TypeError]
    try:
        from huggingface_hub.errors import EntryNotFoundError

        errors.append(EntryNotFoundError)
    except ImportError:  # older huggingface_hub: the errors are all OSErrors
        pass
    return tuple(errors)


def _looks_local(model_name: str) -> bool:
    return model_name.startswith((".", "/", "~", "\\")) or Path(model_name).expanduser().exists()


def hub_address() -> tuple[str, int]:
    """(host, port) a download would connect to first: the HTTPS proxy if one is
    set, else the hub endpoint (HF_ENDPOINT, default huggingface.co:443)."""
    import urllib.request
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    target = urllib.request.getproxies().get("https") or constants.ENDPOINT
    parts = urlsplit(target if "://" in target else f"http://{target}")
    return parts.hostname or "huggingface.co", parts.port or (443 if parts.scheme == "https" else 80)


def hub_reachable(address: tuple[str, int], timeout: float = HUB_PROBE_TIMEOUT) -> bool:
    """A TCP connect to ``address`` within ``timeout`` seconds, DNS included.

    Run in a daemon thread because name resolution has no timeout of its own
    (a resolver with no network can take 10+ s); a late answer is ignored.
    """
    import socket

    answer: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection(address, timeout=timeout):
                answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=probe, name="comfy-gen-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answer and answer[0])


def _from_pretrained(source: str, *, local_only: bool) -> tuple[Any, Any]:
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(source, local_files_only=local_only)
    processor = CLIPProcessor.from_pretrained(source, local_files_only=local_only)
    return model, processor


def _unavailable(model_name: str, exc: BaseException) -> ValidatorUnavailable:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return ValidatorUnavailable(
        f"Cannot load CLIP model {model_name!r}: {type(exc).__name__}: {detail}".rstrip(": "),
        hint=unavailable_hint())


def _in_hub_cache(model_name: str) -> bool:
    """Whether the local hub cache holds the model's config (no transformers import)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(model_name, "config.json"), str)
    except ValueError:  # not a valid repo id: only from_pretrained can say what it is
        return True


def _require_hub(model_name: str, cause: BaseException | None = None) -> None:
    """Raise ValidatorUnavailable now unless the hub can be asked for ``model_name``:
    offline mode is off and a ~1 s TCP probe reaches it."""
    from comfy_gen.config import hub_offline

    if hub_offline():
        raise ValidatorUnavailable(
            f"CLIP model {model_name!r} is not in the local model cache and hub access is off "
            "(HF_HUB_OFFLINE)", hint=unavailable_hint()) from cause
    address = hub_address()
    if not hub_reachable(address):
        raise ValidatorUnavailable(
            f"CLIP model {model_name!r} is not in the local model cache and the model hub "
            f"({address[0]}:{address[1]}) cannot be reached", hint=unavailable_hint()) from cause
    log.info("CLIP model %s is not cached; downloading it from the hub", model_name)


def precheck(model_name: str) -> None:
    """Fail now (ValidatorUnavailable) if ``model_name`` cannot be loaded for a reason
    known without torch: a missing folder, or a hub id neither cached nor reachable."""
    if _looks_local(model_name):
        path = Path(model_name).expanduser()
        if not path.is_dir():
            raise ValidatorUnavailable(f"CLIP model folder not found: {path}", hint=unavailable_hint())
    elif not _in_hub_cache(model_name):
        _require_hub(model_name)


def load_clip(model_name: str, device: str) -> tuple[Any, Any]:
    """``CLIPModel`` and ``CLIPProcessor`` from a hub id or local folder, in eval mode
    on ``device``; every load failure becomes ``ValidatorUnavailable`` (once, here).

    A hub id is read from the local cache first (``local_files_only``); the hub is
    asked only when the model is not cached, offline mode is off and a ~1 s TCP
    probe reaches it. So a missing model fails in about a second (before even
    importing transformers when the cache has no trace of it) instead of after
    the hub client's retries and time-outs (23-43 s measured).
    """
    local = _looks_local(model_name)
    source = str(Path(model_name).expanduser()) if local else model_name
    precheck(model_name)
    try:
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise ValidatorUnavailable(
            f"CLIP validation needs torch and transformers ({exc})",
            hint=contextual_hint(
                cli="pip install torch transformers, or skip validation (--no-validate).",
                deployment="Install torch and transformers where the worker runs, or set "
                           "validation.allow_skip: true (or validation.enabled: false) in the recipe."),
        ) from exc
    # Library progress bars would land in the CLI's stderr and the flow's logs.
    disable_progress_bar: Callable[[], None] = hf_logging.disable_progress_bar  # untyped upstream
    disable_progress_bar()
    try:
        try:
            model, processor = _from_pretrained(source, local_only=not local)
        except _load_errors() as cache_miss:
            if local:
                raise
            _require_hub(model_name, cache_miss)  # cached only in part (no weights, say)
            model, processor = _from_pretrained(source, local_only=False)
        # transformers types the wrapped .to() with self as its first argument.
        model = model.to(device).eval()
    except ValidatorUnavailable:
        raise
    except _load_errors() as exc:
        raise _unavailable(model_name, exc) from exc
    return model, processor


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def chunk_token_ids(ids: Sequence[int], window: int) -> list[list[int]]:
    """Split token ids into consecutive windows of at most ``window`` (>= 1 chunk)."""
    if window < 1:
        raise ValueError("window must be >= 1")
    ids = list(ids)
    return [ids[i:i + window] for i in range(0, len(ids), window)] or [[]]


def _features(output: Any) -> "torch.Tensor":
    # transformers 5 returns a model output with the projected embedding in
    # .pooler_output; older versions return the tensor itself.
    features = output if not hasattr(output, "pooler_output") else output.pooler_output
    return cast("torch.Tensor", features)


def _open_image(image: ImageInput) -> "Image":
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    with Image.open(Path(image)) as img:
        return img.convert("RGB")


def _broadcast(values: Sequence[Any] | str | None, n: int, what: str) -> list[Any]:
    if values is None or isinstance(values, str):
        return [values] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"{what}: expected {n} values (one per image), got {len(values)}")
    return values


@register_validator("clip")
class ImageValidator(BaseValidator):
    """CLIP validator: ``compute_clip_score`` / ``validate_image`` (the seed's API) and
    ``score_many`` for batches. Raises ``ValidatorUnavailable`` if the model cannot load."""

    name = "clip"
    label = "CLIP"
    description = "Prompt adherence: CLIP image-text similarity (0-100), with an optional negative-prompt margin"

    @classmethod
    def load(cls, settings: "Settings", options: Mapping[str, Any] | None = None) -> "ImageValidator":
        """The process's cached model named by ``settings.clip_model``."""
        return get_validator(settings.clip_model)

    @classmethod
    def default_positive_threshold(cls, settings: "Settings") -> float:
        """The per-model default (DEFAULT_POSITIVE_THRESHOLDS), without loading the model."""
        return default_positive_threshold(settings.clip_model or DEFAULT_MODEL)

    def __init__(self, model_name: str | None = None, *, device: str | None = None, batch_size: int = 16) -> None:
        if model_name is None:
            # The seed's default (ViT-B/32 from the hub) unless settings name another model.
            from comfy_gen.config import get_settings

            model_name = get_settings().clip_model or DEFAULT_MODEL
        self.model_name = model_name
        self.device = device or default_device()
        self.batch_size = max(1, int(batch_size))
        self.model, self.processor = load_clip(model_name, self.device)
        self.tokenizer = self.processor.tokenizer
        self.image_processor = self.processor.image_processor
        # 77 positions for OpenAI CLIP: 75 content tokens + start + end.
        self.max_positions = int(self.model.config.text_config.max_position_embeddings)
        self.window = self.max_positions - 2
        # One forward pass at a time: torch already uses every core, and callers
        # from several threads should queue here rather than oversubscribe.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ImageValidator(model_name={self.model_name!r}, device={self.device!r})"

    @property
    def default_threshold(self) -> float:
        return default_positive_threshold(self.model_name)

    # --- embeddings -------------------------------------------------------------

    def text_embeddings(self, texts: Sequence[str]) -> "torch.Tensor":
        """Normalised embeddings [len(texts), D]; long texts are chunk-averaged."""
        import torch

        tok = self.tokenizer
        ids_per_text = tok(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        rows: list[list[int]] = []
        owner: list[int] = []
        for t, ids in enumerate(ids_per_text):
            for chunk in chunk_token_ids(ids, self.window):
                rows.append([tok.bos_token_id, *chunk, tok.eos_token_id])
                owner.append(t)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        chunk_embs = []
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start:start + self.batch_size]
            width = max(len(r) for r in batch)  # pad to the longest, not to 77: same result, less work
            input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in batch], device=self.device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in batch], device=self.device)
            out = _features(self.model.get_text_features(input_ids=input_ids, attention_mask=mask))
            chunk_embs.append(torch.nn.functional.normalize(out.float(), dim=-1))
        embs = torch.cat(chunk_embs)
        owner_t = torch.tensor(owner, device=embs.device)
        summed = torch.zeros(len(texts), embs.shape[1], device=embs.device).index_add_(0, owner_t, embs)
        return torch.nn.functional.normalize(summed, dim=-1)  # mean then renormalise == sum then normalise

    def image_embeddings(self, images: Sequence["Image"]) -> "torch.Tensor":
        """Normalised embeddings [len(images), D] for already opened RGB images."""
        import torch

        pixels = self.image_processor(images=list(images), return_tensors="pt")["pixel_values"].to(self.device)
        out = _features(self.model.get_image_features(pixel_values=pixels))
        return torch.nn.functional.normalize(out.float(), dim=-1)

    # --- scoring ----------------------------------------------------------------

    def score_many(
        self,
        images: Sequence[ImageInput],
        prompts: Sequence[str] | str,
        negatives: Sequence[str | None] | str | None = None,
        *,
        batch_size: int | None = None,
    ) -> list[dict[str, Any]]:
        """Score many images: images go through the model in batches, each distinct
        text is encoded once. An unreadable image gets ``error``; others still score."""
        import torch

        n = len(images)
        pos = _broadcast(prompts, n, "prompts")
        neg = [q or None for q in _broadcast(negatives, n, "negatives")]
        results: list[dict[str, Any]] = [{} for _ in range(n)]
        if n == 0:
            return results
        texts = list(dict.fromkeys([p or "" for p in pos] + [q for q in neg if q]))
        size = max(1, batch_size or self.batch_size)
        with self._lock, torch.inference_mode():
            text_embs = self.text_embeddings(texts)
            index = {t: i for i, t in enumerate(texts)}
            for start in range(0, n, size):
                opened: list[tuple[int, Image]] = []
                for i in range(start, min(n, start + size)):
                    try:
                        opened.append((i, _open_image(images[i])))
                    except (OSError, ValueError) as exc:  # missing, truncated or not an image
                        results[i] = {"error": f"Cannot read image {images[i]}: {exc}"}
                if not opened:
                    continue
                try:
                    img_embs = self.image_embeddings([img for _, img in opened])
                except RuntimeError as exc:  # e.g. CUDA out of memory: fail these items, not silently pass
                    log.warning("CLIP image encoding failed: %s", exc)
                    for i, _ in opened:
                        results[i] = {"error": f"CLIP image encoding failed: {exc}"}
                    continue
                cos = img_embs @ text_embs.T  # [batch, texts]
                for row, (i, _) in enumerate(opened):
                    p_score = 100.0 * max(float(cos[row, index[pos[i] or ""]]), 0.0)
                    result: dict[str, Any] = {"positive_score": p_score}
                    if neg[i]:
                        n_score = 100.0 * max(float(cos[row, index[neg[i]]]), 0.0)
                        result.update(negative_score=n_score, score_delta=p_score - n_score)
                    results[i] = result
        return results

    def compute_clip_score(self, image: ImageInput, positive: str, negative: str | None = None) -> dict[str, Any]:
        """``positive_score``, plus ``negative_score`` and ``score_delta`` with a negative
        prompt; ``error`` instead when the image cannot be scored."""
        return self.score_many([image], [positive], [negative])[0]

    def evaluate(
        self, score: Mapping[str, Any], thresholds: Thresholds | Mapping[str, float | None] | None = None
    ) -> ValidationResult:
        """Pass rule with this model's default positive threshold unless one is given."""
        th = Thresholds.coerce(thresholds)
        warn_if_legacy_threshold(th.positive)
        positive = self.default_threshold if th.positive is None else th.positive
        return self.judge_scores(score, Thresholds(positive, th.delta))

    def validate_image(
        self,
        image: ImageInput,
        positive: str,
        negative: str | None = None,
        positive_threshold: float | None = None,
        delta_threshold: float | None = None,
    ) -> dict[str, Any]:
        """The seed's result dict: passed, reason, positive_score, negative_score,
        score_delta, error (plus validator and the thresholds applied)."""
        score = self.compute_clip_score(image, positive, negative)
        return self.evaluate(score, Thresholds(positive_threshold, delta_threshold)).to_dict()


# --- process-wide cache -------------------------------------------------------------

_CACHE: dict[tuple[str, str], ImageValidator] = {}
_CACHE_LOCK = threading.Lock()


def get_validator(model_name: str | None = None, *, device: str | None = None) -> ImageValidator:
    """The process's validator for (model, device), built once; defaults come from settings
    (``clip_model``, ``clip_device``, ``clip_batch_size``)."""
    from comfy_gen.config import get_settings

    settings = get_settings()
    name = model_name or settings.clip_model
    if device is None and not settings.clip_device and not any(key[0] == name for key in _CACHE):
        precheck(name)  # before torch is imported to pick a device: a missing model fails in ~1 s
    dev = device or settings.clip_device or default_device()
    key = (name, dev)
    with _CACHE_LOCK:  # held while loading so two threads never build the same model
        validator = _CACHE.get(key)
        if validator is None:
            validator = ImageValidator(name, device=dev, batch_size=settings.clip_batch_size)
            _CACHE[key] = validator
        return validator


def ensure_available(model_name: str | None = None, *, device: str | None = None) -> ImageValidator:
    """Load the model now (preflight, before anything renders); ValidatorUnavailable if not."""
    return get_validator(model_name, device=device)


def clear_validators() -> None:
    """Drop cached validators (frees their memory; tests)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def validate_image(
    image: ImageInput,
    positive: str,
    negative: str | None = None,
    positive_threshold: float | None = None,
    delta_threshold: float | None = None,
    *,
    model_name: str | None = None,
) -> dict[str, Any]:
    """Module-level ``validate_image``: same as the method, on the cached validator."""
    return get_validator(model_name).validate_image(image, positive, negative, positive_threshold, delta_threshold)
