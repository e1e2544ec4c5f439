"""The attempt loop's pure parts: choosing the kept attempt and the final status."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfy_gen.generation import Attempt, best_of, final_status, judge
from comfy_gen.params import GenerationParams
from comfy_gen.validation import Thresholds


def _att(number: int, score: float | None, passed: bool | None, error: str | None = None) -> Attempt:
    scores = None if score is None and error is None else {"positive_score": score}
    if error:
        scores = {**(scores or {}), "error": error}
    return Attempt(number=number, params=GenerationParams(seed=number), prompt_id=f"p{number}",
                   files=[Path(f"a{number}.png")], elapsed=0.1, scores=scores, passed=passed)


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


@pytest.mark.parametrize(("scores", "thresholds", "passed"), [
    ({"positive_score": 25.0}, Thresholds(positive=20), True),
    ({"positive_score": 19.9}, Thresholds(positive=20), False),
    ({"positive_score": 30.0, "score_delta": 1.0}, Thresholds(positive=20, delta=2.0), False),
    ({"positive_score": 30.0, "error": "bad image"}, Thresholds(positive=0), False),
])
def test_judge_applies_thresholds_and_never_passes_errors(scores, thresholds, passed):
    assert judge(scores, thresholds)[0] is passed


def test_attempt_to_dict_is_json_safe():
    import json

    data = _att(2, 27.5, True).to_dict()
    assert json.loads(json.dumps(data))["params"]["seed"] == 2
