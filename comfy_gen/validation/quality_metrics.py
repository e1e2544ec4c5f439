"""Loading the quality metrics: pyiqa's BRISQUE, NIQE and TOPIQ, and the LAION
aesthetic predictor on a transformers CLIP. Each loads once per process (cached
by metric, device and weights) and scores a batch of PIL images.

A metric that cannot load is *missing*, with a reason (never a made-up score):
``load_metrics`` returns the loaded ones and a ``{name: reason}`` map.

pyiqa (``pip install 'comfygen-orchestrator[quality]'``) is optional: it needs
torchvision, whose PyPI wheels are CUDA builds. Its own weight download is used
unless ``COMFY_GEN_QUALITY_WEIGHTS_DIR`` holds the files under pyiqa's names
(``PYIQA_WEIGHT_FILES``); then they are passed as ``pretrained_model_path``.

LAION aesthetic is not taken from pyiqa: pyiqa's ``laion_aes`` hard-codes an
OpenAI ``clip.load('ViT-L/14')`` download. Here it is the same regression head
(improved-aesthetic-predictor's MLP) on the normalised image embedding of a
transformers CLIP (``COMFY_GEN_QUALITY_AESTHETIC_CLIP``, ViT-L/14 by default),
loaded through ``comfy_gen.validation.clip.get_validator``, so a CLIP that the
validation already loaded is shared. The head is a local file or ``REPO:FILE``
on the Hugging Face hub (``COMFY_GEN_QUALITY_AESTHETIC_HEAD``).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, cast

from comfy_gen.errors import ValidatorUnavailable
from comfy_gen.validation.quality_score import BRISQUE, LAION_AES, NIQE, TOPIQ_NR

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

    from comfy_gen.config import Settings

log = logging.getLogger(__name__)

#: The file names pyiqa downloads, looked up in COMFY_GEN_QUALITY_WEIGHTS_DIR.
PYIQA_WEIGHT_FILES: dict[str, str] = {
    BRISQUE: "brisque_svm_weights.pth",
    NIQE: "niqe_modelparameters.mat",
    TOPIQ_NR: "cfanet_nr_koniq_res50-9a73138b.pth",
}
DEFAULT_AESTHETIC_CLIP = "openai/clip-vit-large-patch14"
DEFAULT_AESTHETIC_HEAD = "chaofengc/IQA-PyTorch-Weights:sac+logos+ava1-l14-linearMSE.pth"

#: A loaded metric: PIL images in, one raw score each out.
Metric = Callable[[Sequence["Image"]], list[float]]


class MetricMissing(Exception):
    """A metric could not be loaded; the message says why (reported, not raised further)."""


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}".rstrip(": ")


# --- pyiqa ---------------------------------------------------------------------------

def _to_tensor(images: Sequence["Image"], device: str) -> "torch.Tensor":
    import numpy as np
    import torch

    array = np.stack([np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0 for img in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous().to(device)


class PyiqaMetric:
    """One pyiqa metric; images of the same size go through it as one batch."""

    def __init__(self, name: str, device: str, weights: Path | None) -> None:
        try:
            import pyiqa
        except Exception as exc:  # ImportError, or torchvision failing to load its ops
            raise MetricMissing(f"pyiqa is not usable ({_reason(exc)}); install the [quality] extra "
                                "with a torchvision built for your torch") from exc
        kwargs: dict[str, Any] = {}
        if weights is not None:
            kwargs["pretrained_model_path"] = str(weights)
            if name == TOPIQ_NR:
                kwargs["backbone_pretrain"] = False  # the checkpoint holds the backbone too
        try:
            self.metric = pyiqa.create_metric(name, device=device, **kwargs)
        except Exception as exc:  # a failed download, a bad file: pyiqa raises anything
            raise MetricMissing(f"pyiqa could not load {name} ({_reason(exc)})") from exc
        self.name, self.device = name, device
        self._lock = threading.Lock()

    def __call__(self, images: Sequence["Image"]) -> list[float]:
        import torch

        out: list[float] = [0.0] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(img.size, []).append(i)
        with self._lock, torch.inference_mode():
            for indices in groups.values():
                values = self.metric(_to_tensor([images[i] for i in indices], self.device))
                for i, value in zip(indices, values.reshape(-1).tolist()):
                    out[i] = float(value)
        return out


# --- LAION aesthetic -------------------------------------------------------------------

def build_aesthetic_head(state: dict[str, "torch.Tensor"]) -> "torch.nn.Module":
    """improved-aesthetic-predictor's MLP (Linear, Dropout, ... at indices 0, 2, 4, 6, 7
    of ``layers``), sized from the weights' shapes."""
    import torch

    linear = sorted({int(k.split(".")[1]) for k in state if k.startswith("layers.") and k.endswith(".weight")})
    if not linear:
        raise ValueError("not an aesthetic head: no layers.N.weight tensors")
    modules: list[torch.nn.Module] = []
    for index in range(linear[-1] + 1):
        if index in linear:
            out_features, in_features = state[f"layers.{index}.weight"].shape
            modules.append(torch.nn.Linear(int(in_features), int(out_features)))
        else:
            modules.append(torch.nn.Dropout(0.0))  # dropout in training only
    head = torch.nn.Module()
    head.layers = torch.nn.Sequential(*modules)
    head.load_state_dict(state, strict=True)
    return head.eval()


def _head_file(source: str) -> Path:
    path = Path(source).expanduser()
    if path.exists() or ":" not in source:
        if not path.is_file():
            raise MetricMissing(f"aesthetic head file not found: {path}")
        return path
    repo, _, filename = source.partition(":")
    from comfy_gen.config import hub_offline

    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo, filename, local_files_only=hub_offline()))
    except Exception as exc:  # not cached and offline, hub unreachable, no such file
        raise MetricMissing(f"aesthetic head {source} is not available ({_reason(exc)})") from exc


def load_head_state(path: Path) -> dict[str, "torch.Tensor"]:
    """The head's state dict from a .safetensors or torch file (weights only)."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "params" in state and isinstance(state["params"], dict):
        state = state["params"]  # pyiqa's checkpoint layout
    return {k.removeprefix("mlp."): v for k, v in state.items()}


class AestheticMetric:
    """LAION aesthetic: the head on the CLIP image embedding (L2-normalised)."""

    def __init__(self, clip_model: str, head: str, device: str) -> None:
        from comfy_gen.validation.clip import get_validator

        path = _head_file(head)
        try:
            model = build_aesthetic_head(load_head_state(path)).to(device)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise MetricMissing(f"cannot read the aesthetic head {path} ({_reason(exc)})") from exc
        try:
            self.clip = get_validator(clip_model, device=device)
        except ValidatorUnavailable as exc:
            raise MetricMissing(f"the aesthetic CLIP did not load ({exc.message})") from exc
        self.mlp = cast("torch.nn.Sequential", model.layers)
        width = int(cast("torch.nn.Linear", self.mlp[0]).in_features)
        dim = int(self.clip.model.config.projection_dim)
        if width != dim:
            raise MetricMissing(f"the aesthetic head expects {width}-d CLIP embeddings; {clip_model} gives {dim}")
        self.device = device
        self._lock = threading.Lock()

    def __call__(self, images: Sequence["Image"]) -> list[float]:
        import torch

        with self._lock, torch.inference_mode():
            embeddings = self.clip.image_embeddings(list(images))  # already normalised
            return [float(v) for v in self.mlp(embeddings.to(self.device)).reshape(-1).tolist()]


# --- the process cache ---------------------------------------------------------------

_CACHE: dict[tuple[str, ...], Metric] = {}
_FAILED: dict[tuple[str, ...], str] = {}
_LOCK = threading.Lock()


def _cached(key: tuple[str, ...], build: Callable[[], Metric]) -> Metric:
    with _LOCK:  # held while loading: two threads never build the same metric
        if key in _CACHE:
            return _CACHE[key]
        if key in _FAILED:  # one failed load per process, not one per image
            raise MetricMissing(_FAILED[key])
        try:
            metric = build()
        except MetricMissing as exc:
            _FAILED[key] = str(exc)
            raise
        _CACHE[key] = metric
        return metric


def clear_metrics() -> None:
    """Forget loaded and failed metrics (tests; frees memory)."""
    with _LOCK:
        _CACHE.clear()
        _FAILED.clear()


def device_for(settings: "Settings") -> str:
    from comfy_gen.validation.clip import default_device

    return settings.clip_device or default_device()


def load_metric(name: str, settings: "Settings") -> Metric:
    """The process's ``name`` metric (MetricMissing with the reason when it cannot load)."""
    device = device_for(settings)
    if name == LAION_AES:
        clip_model, head = settings.quality_aesthetic_clip, settings.quality_aesthetic_head
        return _cached((name, device, clip_model, head), lambda: AestheticMetric(clip_model, head, device))
    if name not in PYIQA_WEIGHT_FILES:
        raise MetricMissing(f"unknown quality metric {name!r}")
    folder = settings.quality_weights_dir
    weights = Path(folder).expanduser() / PYIQA_WEIGHT_FILES[name] if folder else None
    if weights is not None and not weights.is_file():
        raise MetricMissing(f"{weights} not found (COMFY_GEN_QUALITY_WEIGHTS_DIR)")
    return _cached((name, device, str(weights)), lambda: PyiqaMetric(name, device, weights))


def load_metrics(names: Sequence[str], settings: "Settings") -> tuple[dict[str, Metric], dict[str, str]]:
    """Every metric of ``names`` that loads, and ``{name: reason}`` for the others."""
    loaded: dict[str, Metric] = {}
    missing: dict[str, str] = {}
    for name in names:
        try:
            loaded[name] = load_metric(name, settings)
        except MetricMissing as exc:
            missing[name] = str(exc)
    return loaded, missing
