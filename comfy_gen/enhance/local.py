"""The local backend: a transformers chat model on this machine's CPU.

Loaded once per process (``comfy_gen.enhance.get_enhancer`` keeps it) with
``AutoTokenizer``/``AutoModelForCausalLM.from_pretrained`` and never
``trust_remote_code``; decoding is greedy with a bounded ``max_new_tokens``,
so one prompt always gives the same answer from the same weights. CPU because
the GPU belongs to ComfyUI; the default Qwen2.5-0.5B-Instruct answers in a few
seconds there (bench/README.md).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

from comfy_gen.errors import EnhancementFailed, EnhancerUnavailable


class LocalBackend:
    """``complete(system, user)`` with a local chat model; ``probe()`` loads it."""

    name = "local"

    def __init__(self, model: str, *, max_tokens: int = 96) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self._tokenizer: Any = None
        self._model: Any = None
        # One generate() at a time: flow items run on threads, and torch already
        # uses every core for one call.
        self._lock = threading.Lock()

    def probe(self) -> None:
        """Load the tokenizer and model (once); EnhancerUnavailable naming the setting."""
        with self._lock:
            if self._model is not None:
                return
            try:
                from transformers import AutoModelForCausalLM, AutoTokenizer
            except ImportError as exc:
                raise EnhancerUnavailable(
                    "The local prompt enhancer needs transformers and torch",
                    hint="Install transformers and torch (comfy-gen dependencies), "
                         "or set COMFY_GEN_ENHANCE_BACKEND=http") from exc
            from transformers.utils import logging as hf_logging

            # Library progress bars would land in the CLI's stderr and the flow's logs.
            disable_progress_bar: Callable[[], None] = hf_logging.disable_progress_bar  # untyped upstream
            disable_progress_bar()
            folder = Path(self.model).expanduser()
            source = str(folder) if folder.is_dir() else self.model
            try:
                tokenizer = AutoTokenizer.from_pretrained(source)
                model = AutoModelForCausalLM.from_pretrained(source)
            except (OSError, ValueError, KeyError) as exc:  # not found, offline, not a causal LM
                raise EnhancerUnavailable(
                    f"The prompt enhancer model {self.model!r} cannot be loaded: {_first_line(exc)}",
                    hint="Set COMFY_GEN_ENHANCE_MODEL to a hub id or a local folder holding a chat model "
                         "(download it first when HF_HUB_OFFLINE is set), or use COMFY_GEN_ENHANCE_BACKEND=http."
                ) from exc
            if not getattr(tokenizer, "chat_template", None):
                raise EnhancerUnavailable(
                    f"The prompt enhancer model {self.model!r} has no chat template (not an instruct model)",
                    hint="Set COMFY_GEN_ENHANCE_MODEL to an instruct/chat model, e.g. Qwen/Qwen2.5-0.5B-Instruct.")
            model.eval()  # type: ignore[no-untyped-call]  # inference mode: no dropout
            self._tokenizer, self._model = tokenizer, model

    def complete(self, system: str, user: str) -> str:
        """The model's answer to one chat turn (greedy, at most ``max_tokens`` new tokens)."""
        import torch

        self.probe()
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        with self._lock:
            try:
                text = self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                inputs = self._tokenizer(text, return_tensors="pt")
                pad = self._tokenizer.pad_token_id
                if pad is None:
                    pad = self._tokenizer.eos_token_id
                with torch.inference_mode():
                    out = self._model.generate(**inputs, do_sample=False, max_new_tokens=self.max_tokens,
                                               pad_token_id=pad)
                new = out[0][inputs["input_ids"].shape[1]:]
                return str(self._tokenizer.decode(new, skip_special_tokens=True))
            except (RuntimeError, ValueError, IndexError) as exc:  # torch errors, a broken template
                raise EnhancementFailed(f"the local enhancer model failed: {_first_line(exc)}") from exc

    def close(self) -> None:
        self._tokenizer = self._model = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
