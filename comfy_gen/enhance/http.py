"""The http backend: an OpenAI-compatible chat-completions endpoint.

Ollama (``http://HOST:11434/v1``), vLLM and the llama.cpp server all answer
``POST <url>/chat/completions`` with ``choices[0].message.content`` and list
their models at ``GET <url>/models``, which is the cheap start-up probe.
httpx errors are translated here, once: EnhancerUnavailable at the probe
(exit 2), EnhancementFailed per request (the caller keeps the prompt). The
URL is always shown redacted and the API key never.
"""

from __future__ import annotations

from typing import Any

import httpx

from comfy_gen.errors import EnhancementFailed, EnhancerUnavailable
from comfy_gen.urls import redact_text, redact_url

#: Sampling as close to deterministic as the protocol allows (servers may still vary).
TEMPERATURE = 0.0
SEED = 0


class HttpBackend:
    """``complete(system, user)`` against ``url``; ``probe()`` checks it answers."""

    name = "http"

    def __init__(self, url: str, model: str, *, timeout: float = 60.0, api_key: str | None = None,
                 max_tokens: int = 96, client: httpx.Client | None = None) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.max_tokens = max_tokens
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                                              headers=headers, trust_env=False)

    @property
    def shown_url(self) -> str:
        return redact_url(self.url)

    def probe(self) -> None:
        """``GET <url>/models`` answers (any status but 401/403/5xx); else EnhancerUnavailable."""
        try:
            response = self._client.get(f"{self.url}/models")
        except httpx.HTTPError as exc:
            raise EnhancerUnavailable(
                f"The prompt enhancer endpoint {self.shown_url} is not reachable: {_describe(exc)}",
                hint="Start the server (e.g. `ollama serve`) or fix COMFY_GEN_ENHANCE_URL.") from exc
        if response.status_code in (401, 403):
            raise EnhancerUnavailable(f"The prompt enhancer endpoint {self.shown_url} refused our credentials "
                                      f"(HTTP {response.status_code})", hint="Set COMFY_GEN_ENHANCE_API_KEY.")
        if response.status_code >= 500:
            raise EnhancerUnavailable(f"The prompt enhancer endpoint {self.shown_url} answered HTTP "
                                      f"{response.status_code}", hint="Check the server at COMFY_GEN_ENHANCE_URL.")

    def complete(self, system: str, user: str) -> str:
        """``choices[0].message.content`` of one chat completion; EnhancementFailed otherwise."""
        body: dict[str, Any] = {
            "model": self.model, "temperature": TEMPERATURE, "seed": SEED, "max_tokens": self.max_tokens,
            "stream": False,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        }
        try:
            response = self._client.post(f"{self.url}/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise EnhancementFailed(f"the enhancer endpoint {self.shown_url} failed: {_describe(exc)}") from exc
        if response.status_code != 200:
            raise EnhancementFailed(f"the enhancer endpoint {self.shown_url} answered HTTP {response.status_code}")
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise EnhancementFailed(f"the enhancer endpoint {self.shown_url} sent no chat completion") from exc
        if not isinstance(content, str):
            raise EnhancementFailed(f"the enhancer endpoint {self.shown_url} sent no text")
        return content

    def close(self) -> None:
        self._client.close()


def _describe(exc: httpx.HTTPError) -> str:
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else type(exc).__name__
    detail = redact_text(str(exc))[:200]
    return f"{kind} ({detail})" if detail else kind
