"""A small dynamic batcher so per-item pipeline tasks share validator batches.

Each Prefect task (one per recipe item) renders, then calls ``scorer.score_many(...)``
(or ``score``) and blocks. A background thread gathers the requests that arrive within
``max_wait`` seconds of the oldest one (or ``max_batch`` of them) and scores them
with one ``score_many`` call, so validation overlaps rendering and the model sees
batches instead of single images.

Usage::

    with BatchingScorer(get_validator(), max_batch=16, max_wait=0.05) as scorer:
        score = scorer.score("out/0001.png", "a red car", "blurry")   # from any thread
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from comfy_gen.validation.base import ImageInput, Thresholds, ValidationResult, Validator

log = logging.getLogger(__name__)


@dataclass
class _Request:
    image: ImageInput
    prompt: str
    negative: str | None
    future: "Future[dict[str, Any]]" = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


class BatchingScorer:
    """Thread-safe front for ``validator.score_many``; see the module docstring.

    It is a Validator itself (same ``name``, ``score_many`` and ``evaluate``), so
    callers never need to know whether they hold a batcher. Exceptions raised by
    ``score_many`` reach every caller of that batch. ``close()`` scores what is
    already queued, then stops the thread; later calls raise RuntimeError.
    """

    def __init__(self, validator: Validator, max_batch: int = 16, max_wait: float = 0.05) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if max_wait < 0:
            raise ValueError("max_wait must be >= 0")
        self.validator = validator
        self.name = validator.name
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.batch_sizes: list[int] = []  # one entry per score_many call (stats, tests)
        self._queue: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    # --- callers -----------------------------------------------------------------

    def submit(self, image: ImageInput, prompt: str, negative: str | None = None) -> "Future[dict[str, Any]]":
        """Queue one image; the future resolves to its score dict."""
        request = _Request(image, prompt, negative)
        with self._cond:
            if self._closed:
                raise RuntimeError("BatchingScorer is closed")
            if self._thread is None:
                # Started lazily so a scorer that is never used costs no thread.
                self._thread = threading.Thread(target=self._run, name=f"{self.name}-batcher", daemon=True)
                self._thread.start()
            self._queue.append(request)
            self._cond.notify_all()
        return request.future

    def score(self, image: ImageInput, prompt: str, negative: str | None = None,
              timeout: float | None = None) -> dict[str, Any]:
        """Score one image, blocking until its batch is done (re-raises batch errors)."""
        return self.submit(image, prompt, negative).result(timeout)

    def score_many(
        self,
        images: Sequence[ImageInput],
        prompts: Sequence[str] | str,
        negatives: Sequence[str | None] | str | None = None,
    ) -> list[dict[str, Any]]:
        """The Validator call: each image joins the shared batches; blocks until all are scored."""
        n = len(images)
        texts = [prompts] * n if isinstance(prompts, str) else list(prompts)
        negs: list[str | None] = [negatives] * n if negatives is None or isinstance(negatives, str) else list(negatives)
        if len(texts) != n or len(negs) != n:
            raise ValueError(f"expected {n} prompts and negatives (one per image)")
        futures = [self.submit(img, p, q) for img, p, q in zip(images, texts, negs)]
        return [f.result() for f in futures]

    def evaluate(
        self, score: Mapping[str, Any], thresholds: Thresholds | Mapping[str, float | None] | None = None
    ) -> ValidationResult:
        """The wrapped validator's pass rule."""
        return self.validator.evaluate(score, thresholds)

    def close(self, timeout: float | None = None) -> None:
        """Finish queued requests, then stop the background thread (idempotent)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "BatchingScorer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- background thread -------------------------------------------------------

    def _next_batch(self) -> list[_Request] | None:
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            # Wait for company, bounded by max_wait from the oldest request's arrival.
            deadline = self._queue[0].arrived + self.max_wait
            while len(self._queue) < self.max_batch and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            count = min(self.max_batch, len(self._queue))
            return [self._queue.popleft() for _ in range(count)]

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            # Skip requests whose callers cancelled their future.
            batch = [r for r in batch if r.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            self.batch_sizes.append(len(batch))
            try:
                scores = self.validator.score_many(
                    [r.image for r in batch], [r.prompt for r in batch], [r.negative for r in batch]
                )
                if len(scores) != len(batch):
                    raise RuntimeError(f"score_many returned {len(scores)} results for {len(batch)} images")
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
                log.debug("batch of %d failed: %s", len(batch), exc)
                for r in batch:
                    r.future.set_exception(exc)
                continue
            for r, score in zip(batch, scores):
                r.future.set_result(score)
