"""BatchingScorer: many threads, shared batches, exceptions, clean close."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from comfy_gen.errors import ValidatorUnavailable
from comfy_gen.validation import BatchingScorer


class RecordingValidator:
    """Scores ``len(prompt)``; records every score_many call; fails on prompt "boom"."""

    name = "recording"

    def __init__(self, delay: float = 0.0, gate: threading.Event | None = None) -> None:
        self.calls: list[list[str]] = []
        self.delay = delay
        self.gate = gate  # when given, every call waits for it (set it to let scoring finish)
        self.scoring = threading.Event()  # set once a call has begun
        self.lock = threading.Lock()

    def score_many(self, images, prompts, negatives=None) -> list[dict[str, Any]]:
        with self.lock:
            self.calls.append(list(prompts))
        self.scoring.set()
        if self.gate is not None:
            assert self.gate.wait(60), "the test never let scoring finish"
        time.sleep(self.delay)
        if "boom" in prompts:
            raise ValidatorUnavailable("model went away")
        return [{"positive_score": float(len(p)), "image": img, "negative": n}
                for img, p, n in zip(images, prompts, negatives)]

    def evaluate(self, score, thresholds=None):  # pragma: no cover - protocol completeness
        raise NotImplementedError


def test_concurrent_callers_share_batches_with_real_clip(validator, images):
    prompts = ["a red car", "a blue sea", "a dog", "a bird"]
    expected = validator.score_many(images, [prompts[i % 4] for i in range(len(images))], "blurry")
    barrier = threading.Barrier(len(images))

    def work(i: int) -> dict[str, Any]:
        barrier.wait()
        return scorer.score(images[i], prompts[i % 4], "blurry", timeout=30)

    with BatchingScorer(validator, max_batch=16, max_wait=0.2) as scorer:
        with ThreadPoolExecutor(len(images)) as pool:
            got = list(pool.map(work, range(len(images))))
    for g, e in zip(got, expected):
        assert g["positive_score"] == pytest.approx(e["positive_score"], abs=1e-3)
        assert g["score_delta"] == pytest.approx(e["score_delta"], abs=1e-3)
    assert sum(scorer.batch_sizes) == len(images)
    assert len(scorer.batch_sizes) < len(images)  # requests were actually batched


def test_many_threads_each_get_their_own_result():
    fake = RecordingValidator()
    prompts = [f"p{'x' * i}" for i in range(40)]
    with BatchingScorer(fake, max_batch=8, max_wait=0.02) as scorer:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda i: scorer.score(f"img{i}", prompts[i], f"n{i}"), range(40)))
    for i, r in enumerate(results):
        assert r == {"positive_score": float(len(prompts[i])), "image": f"img{i}", "negative": f"n{i}"}
    assert max(scorer.batch_sizes) <= 8
    assert sum(scorer.batch_sizes) == 40


def test_max_wait_bounds_latency_of_a_lone_request():
    fake = RecordingValidator()
    with BatchingScorer(fake, max_batch=16, max_wait=0.05) as scorer:
        start = time.monotonic()
        assert scorer.score("a.png", "abc")["positive_score"] == 3.0
        assert time.monotonic() - start < 2.0
    assert scorer.batch_sizes == [1]


def test_batch_exception_reaches_every_caller_of_that_batch():
    fake = RecordingValidator()
    with BatchingScorer(fake, max_batch=4, max_wait=0.5) as scorer:
        futures = [scorer.submit("a.png", p) for p in ("ok1", "boom", "ok2", "ok3")]
        for f in futures:
            with pytest.raises(ValidatorUnavailable, match="model went away"):
                f.result(timeout=10)
        # The scorer keeps working after a failed batch.
        assert scorer.score("b.png", "fine", timeout=10)["positive_score"] == 4.0


def test_close_finishes_queued_requests_then_refuses_new_ones():
    fake = RecordingValidator(delay=0.05)
    scorer = BatchingScorer(fake, max_batch=2, max_wait=0.0)
    futures = [scorer.submit(f"{i}.png", "abcd") for i in range(6)]
    scorer.close(timeout=10)
    assert all(f.result(timeout=0)["positive_score"] == 4.0 for f in futures)
    assert scorer.closed
    with pytest.raises(RuntimeError, match="closed"):
        scorer.submit("x.png", "late")
    scorer.close()  # idempotent
    assert scorer._thread is not None and not scorer._thread.is_alive()


def test_cancelled_requests_are_skipped():
    gate = threading.Event()
    fake = RecordingValidator(gate=gate)
    with BatchingScorer(fake, max_batch=1, max_wait=0.0) as scorer:
        first = scorer.submit("a.png", "first")
        assert fake.scoring.wait(60)  # "first" is being scored, and stays so until the gate opens
        second = scorer.submit("b.png", "second")
        assert second.cancel()
        gate.set()
        assert first.result(timeout=60)["positive_score"] == 5.0
    assert ["second"] not in fake.calls


def test_unused_scorer_starts_no_thread():
    scorer = BatchingScorer(RecordingValidator())
    scorer.close()
    assert scorer._thread is None


def test_bad_arguments():
    with pytest.raises(ValueError):
        BatchingScorer(RecordingValidator(), max_batch=0)
    with pytest.raises(ValueError):
        BatchingScorer(RecordingValidator(), max_wait=-1)
