"""``enhance_prompt``: one prompt rewritten by the configured backend, or kept.

A backend is anything with ``name``, ``model``, ``probe()`` (raises
EnhancerUnavailable) and ``complete(system, user) -> str`` (raises
EnhancementFailed); ``LocalBackend`` and ``HttpBackend`` are the two shipped.
``get_enhancer(settings)`` builds one per configuration per process and
probes it: a model is loaded once, however many generations use it.

Failure policy: unavailable at start-up is an error (exit 2, before anything
renders); a failure while enhancing one prompt is not: ``enhance_prompt``
returns the original prompt with ``warning`` set.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from comfy_gen.enhance.clean import clean_output
from comfy_gen.enhance.styles import check_style, system_prompt
from comfy_gen.errors import EnhancementFailed, EnhancerUnavailable
from comfy_gen.hashing import digest

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.config import Settings

log = logging.getLogger(__name__)

#: Version of the cached-enhancement record; bump when prompts or cleaning change meaning.
CACHE_VERSION = "e1"


class EnhancerBackend(Protocol):
    """What ``enhance_prompt`` needs from a backend."""

    name: str
    model: str

    def probe(self) -> None: ...

    def complete(self, system: str, user: str) -> str: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Enhanced:
    """An enhancement: ``prompt`` is what renders (the original when it failed)."""

    prompt: str
    original: str
    backend: str
    model: str
    style: str
    detail: int = 1
    #: Why the original was kept (a run-time failure), else None.
    warning: str | None = None
    cached: bool = False
    elapsed_seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return self.warning is None and self.prompt != self.original

    def record(self) -> dict[str, Any]:
        """The metadata's ``input.enhancement`` block."""
        data: dict[str, Any] = {"backend": self.backend, "model": self.model, "style": self.style,
                                "status": "kept_original" if self.warning else "enhanced"}
        if self.detail > 1:
            data["detail"] = self.detail
        if self.warning:
            data["warning"] = self.warning
        return data


@dataclass
class Enhancer:
    """A probed backend plus an optional cache folder (recipes: ``<state_dir>/enhance``)."""

    backend: EnhancerBackend
    cache_dir: Path | None = None

    @property
    def label(self) -> str:
        return f"{self.backend.name}:{self.backend.model}"

    def with_cache(self, folder: Path | None) -> "Enhancer":
        return Enhancer(self.backend, folder)

    def enhance(self, prompt: str, *, style: str | None = None, detail: int = 1) -> Enhanced:
        """``prompt`` rewritten in ``style``; the original with ``warning`` on any run-time failure."""
        name = check_style(style)
        base = Enhanced(prompt=prompt, original=prompt, backend=self.backend.name, model=self.backend.model,
                        style=name, detail=detail)
        cached = self._cached(prompt, name, detail)
        if cached is not None:
            return replace(base, prompt=cached, cached=True)
        started = time.monotonic()
        try:
            answer = self.backend.complete(system_prompt(name, detail=detail), prompt)
            text = clean_output(answer)
            if text is None:
                raise EnhancementFailed(f"the enhancer's answer is not a usable prompt ({_preview(answer)})")
        except EnhancementFailed as exc:
            log.warning("Prompt enhancement failed, keeping the original prompt: %s", exc.message)
            return replace(base, warning=f"prompt enhancement failed, the original prompt is kept: {exc.message}",
                           elapsed_seconds=time.monotonic() - started)
        self._store(prompt, name, detail, text)
        return replace(base, prompt=text, elapsed_seconds=time.monotonic() - started)

    # -- the cache: (prompt, style, backend, model, detail) -> enhanced text ----------
    def _cache_file(self, prompt: str, style: str, detail: int) -> Path | None:
        if self.cache_dir is None:
            return None
        key = digest({"v": CACHE_VERSION, "prompt": prompt, "style": style, "detail": detail,
                      "backend": self.backend.name, "model": self.backend.model}, 32)
        return Path(self.cache_dir) / f"{key}.json"

    def _cached(self, prompt: str, style: str, detail: int) -> str | None:
        path = self._cache_file(prompt, style, detail)
        if path is None or not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # a torn or foreign file: enhance again
        text = data.get("prompt") if isinstance(data, dict) and data.get("original") == prompt else None
        return text if isinstance(text, str) and text else None

    def _store(self, prompt: str, style: str, detail: int, text: str) -> None:
        from comfy_gen.storage.local import atomic_write_json

        path = self._cache_file(prompt, style, detail)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"original": prompt, "prompt": text, "style": style, "detail": detail,
                                 "backend": self.backend.name, "model": self.backend.model})


def _preview(text: str | None) -> str:
    shown = " ".join((text or "").split())
    return repr(shown[:60] + ("..." if len(shown) > 60 else "")) if shown else "empty"


# --- one enhancer per configuration per process ---------------------------------------

_ENHANCERS: dict[str, Enhancer] = {}
_ENHANCERS_LOCK = threading.Lock()


def backend_from_settings(settings: "Settings") -> EnhancerBackend:
    """The configured backend, not yet probed."""
    if settings.enhance_backend == "http":
        if not settings.enhance_url:
            raise EnhancerUnavailable("COMFY_GEN_ENHANCE_BACKEND=http needs COMFY_GEN_ENHANCE_URL",
                                      hint="Set COMFY_GEN_ENHANCE_URL, e.g. http://127.0.0.1:11434/v1 (Ollama).")
        from comfy_gen.enhance.http import HttpBackend

        return HttpBackend(settings.enhance_url, settings.enhance_model, timeout=settings.enhance_timeout,
                           api_key=settings.secret("enhance_api_key"), max_tokens=settings.enhance_max_tokens)
    from comfy_gen.enhance.local import LocalBackend

    return LocalBackend(settings.enhance_model, max_tokens=settings.enhance_max_tokens)


def get_enhancer(settings: "Settings") -> Enhancer:
    """The process's enhancer for these settings, probed (EnhancerUnavailable: exit 2)."""
    key = digest({"backend": settings.enhance_backend, "model": settings.enhance_model,
                  "url": settings.enhance_url, "timeout": settings.enhance_timeout,
                  "key": settings.secret("enhance_api_key"), "max_tokens": settings.enhance_max_tokens})
    with _ENHANCERS_LOCK:
        enhancer = _ENHANCERS.get(key)
        if enhancer is None:
            backend = backend_from_settings(settings)
            try:
                backend.probe()
            except BaseException:
                backend.close()
                raise
            enhancer = _ENHANCERS[key] = Enhancer(backend)
        return enhancer


def reset_enhancers() -> None:
    """Drop every loaded enhancer (tests; frees the model's memory)."""
    with _ENHANCERS_LOCK:
        for enhancer in _ENHANCERS.values():
            enhancer.backend.close()
        _ENHANCERS.clear()


def enhance_prompt(prompt: str, *, style: str | None = None, settings: "Settings", detail: int = 1) -> Enhanced:
    """``prompt`` enhanced by the configured backend (see the module docstring for failures)."""
    return get_enhancer(settings).enhance(prompt, style=style, detail=detail)
