"""The attempt loop's pure parts: choosing the kept attempt and the final status."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfy_gen.generation import Attempt, best_of, final_status
from comfy_gen.params import GenerationParams
from comfy_gen.validation.plan import Verdict


def _att(number: int, score: float | None, passed: bool | None, error: str | None = None) -> Attempt:
    scores = None if score is None and error is None else {"positive_score": score}
    if error:
        scores = {**(scores or {}), "error": error}
    verdicts = [] if passed is None else [Verdict("clip", passed, scores or {}, "ok" if passed else "low")]
    return Attempt(number=number, params=GenerationParams(seed=number), prompt_id=f"p{number}",
                   files=[Path(f"a{number}.png")], elapsed=0.1, verdicts=verdicts)


@pytest.mark.parametrize(
    ("attempts", "best", "status"),
    [
        pytest.param([_att(1, 20.0, False), _att(2, 26.0, True), _att(3, 30.0, True)], 3, "passed", id="best-passing"),
        pytest.param([_att(1, 35.0, False), _att(2, 26.0, True)], 2, "passed", id="passing-beats-higher-failing"),
        pytest.param([_att(1, 18.0, False), _att(2, 21.0, False), _att(3, 19.0, False)], 2, "best_effort",
                     id="best-effort"),
        pytest.param([_att(1, 21.0, False), _att(2, 21.0, False)], 1, "best_effort", id="tie-earliest"),
        pytest.param([_att(1, None, False, error="unreadable")], 1, "failed", id="scoring-error"),
        pytest.param([], None, "failed", id="empty"),
    ],
)
def test_best_attempt_and_status(attempts, best, status):
    chosen = best_of(attempts)
    assert (chosen.number if chosen else None) == best
    assert final_status(attempts, chosen, validated=True) == status


def test_unvalidated_run_keeps_its_only_attempt():
    only = _att(1, None, None)
    assert best_of([only]) is only
    assert final_status([only], only, validated=False) == "unvalidated"


def test_attempt_reads_scores_passed_and_reason_from_its_verdicts():
    attempt = _att(1, None, None)
    assert (attempt.scores, attempt.passed, attempt.reason) == (None, None, None)
    attempt.verdicts = [Verdict("clip", True, {"positive_score": 30.0}, "Image passed validation"),
                        Verdict("extra", False, {"positive_score": 1.0, "sharpness": 0.2}, "too soft")]
    # Both validators must pass; the first failure explains; the first validator's keys win.
    assert attempt.passed is False and attempt.reason == "too soft"
    assert attempt.scores == {"positive_score": 30.0, "sharpness": 0.2}


def test_attempt_to_dict_is_json_safe():
    import json

    data = json.loads(json.dumps(_att(2, 27.5, True).to_dict()))
    assert data["params"]["seed"] == 2
    assert data["scores"] == {"positive_score": 27.5} and data["passed"] is True
    assert data["verdicts"] == [{"validator": "clip", "passed": True, "scores": {"positive_score": 27.5},
                                 "reason": "ok"}]
