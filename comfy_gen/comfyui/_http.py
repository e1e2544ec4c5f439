"""HTTP transport with bounded retries; the one place httpx errors become ours.

5xx answers, connection errors and timeouts are retried (``retries`` attempts in
all, sleeping ``retry_delay``, then twice that, ...). 4xx answers are returned to
the caller untouched: they mean the request itself is wrong.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import httpx

from comfy_gen.errors import (ComfyGenError, ComfyUIError, ComfyUITimeout, ComfyUIUnavailable, ConfigError,
                              contextual_hint)
from comfy_gen.urls import redact_text, redact_url

log = logging.getLogger(__name__)
T = TypeVar("T")


class _ServerError(Exception):
    """A 5xx answer, raised inside one attempt so the retry loop sees it."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def translate_error(exc: Exception, url: str) -> tuple[ComfyGenError, bool]:
    """Map an httpx exception to (our error, worth retrying); the URL is shown redacted."""
    url = redact_url(url)
    where = f"ComfyUI at {url}"
    if isinstance(exc, httpx.TimeoutException):
        kind = "connecting to" if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)) else "waiting for"
        return ComfyUITimeout(f"Timed out {kind} {where}: {type(exc).__name__}", url=url), True
    if isinstance(exc, (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError)):
        return ComfyUIUnavailable(
            f"Cannot reach {where}: {redact_text(str(exc)) or type(exc).__name__}", url=url,
            hint=contextual_hint(
                cli="Is ComfyUI running? Check the URL (--url / COMFY_GEN_COMFYUI_URL).",
                deployment="Is ComfyUI running? Check COMFY_GEN_COMFYUI_URL (or COMFY_GEN_BACKENDS) in the "
                           "worker's environment or the deployment's job_variables.env."),
        ), True
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return ConfigError(f"Invalid ComfyUI URL {url!r}: {redact_text(str(exc))}",
                           hint="Use a URL like http://127.0.0.1:8188"), False
    if isinstance(exc, _ServerError):
        status = exc.response.status_code
        return ComfyUIUnavailable(f"{where} answered HTTP {status}", url=url), True
    # LocalProtocolError, DecodingError, TooManyRedirects, StreamError, ...
    return ComfyUIError(f"Request to {where} failed: {type(exc).__name__}: {redact_text(str(exc))}",
                        url=url), False


class HTTPTransport:
    """Owns the httpx.Client (or borrows the one given) and the retry policy."""

    def __init__(self, base_url: str, *, timeout: float, connect_timeout: float, retries: int,
                 retry_delay: float, http: httpx.Client | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self.retries = max(1, int(retries))
        self.retry_delay = retry_delay
        self._sleep = sleep
        self._owns_http = http is None
        self.http = http if http is not None else httpx.Client(timeout=self.timeout)

    def url(self, path: str) -> str:
        return self.base_url + path

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def delay(self, attempt: int) -> float:
        """Sleep before attempt ``attempt + 1`` (attempt counts from 1)."""
        return float(self.retry_delay * (2 ** (attempt - 1)))

    def backoff(self, attempt: int) -> None:
        """Wait the delay before attempt ``attempt + 1`` (the injectable sleep, so tests need not wait)."""
        self._sleep(self.delay(attempt))

    def retrying(self, fn: Callable[[], T], *, url: str, retry: bool = True) -> T:
        """Run ``fn`` up to ``retries`` times; translate the last failure once."""
        attempts = self.retries if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                return fn()
            except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, _ServerError) as exc:
                error, retryable = translate_error(exc, url)
                if not retryable or attempt == attempts:
                    if attempts > 1 and retryable:
                        error.message += f" (after {attempts} attempts)"
                    raise error from exc
                wait = self.delay(attempt)
                log.warning("%s; retrying in %.2fs (attempt %d/%d)", error.message, wait,
                            attempt + 1, attempts)
                self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def request(self, method: str, path: str, *, retry: bool = True, **kwargs: Any) -> httpx.Response:
        """One logical request; returns any non-5xx response (4xx included)."""
        url = self.url(path)

        def once() -> httpx.Response:
            response = self.http.request(method, url, timeout=self.timeout, **kwargs)
            if response.status_code >= 500:
                raise _ServerError(response)
            return response

        return self.retrying(once, url=url, retry=retry)

    def stream_to(self, path: str, dest: Path, *, params: dict[str, str]) -> httpx.Response:
        """GET ``path`` into ``dest`` (atomically, via a temporary file)."""
        url = self.url(path)
        tmp = dest.with_name(f".{dest.name}.part")

        def once() -> httpx.Response:
            with self.http.stream("GET", url, params=params, timeout=self.timeout) as response:
                if response.status_code >= 500:
                    raise _ServerError(response)
                if response.status_code != 200:
                    return response
                with open(tmp, "wb") as fh:
                    for chunk in response.iter_bytes():
                        fh.write(chunk)
            os.replace(tmp, dest)
            return response

        try:
            return self.retrying(once, url=url)
        finally:
            tmp.unlink(missing_ok=True)


def json_body(response: httpx.Response, url: str) -> Any:
    """Decode a JSON answer; an empty body is None, anything else not JSON is an error."""
    if not response.content:
        return None
    url = redact_url(url)
    try:
        return response.json()
    except ValueError as exc:
        raise ComfyUIError(f"ComfyUI at {url} sent invalid JSON (HTTP {response.status_code})",
                           url=url) from exc
