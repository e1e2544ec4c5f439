"""Pass rules, thresholds table, best-of-N selection and the validator registry."""

from __future__ import annotations

from typing import Any

import pytest

from comfy_gen.errors import UsageError
from comfy_gen.validation import (
    DEFAULT_POSITIVE_THRESHOLDS,
    FALLBACK_POSITIVE_THRESHOLD,
    ImageValidator,
    Thresholds,
    ValidationResult,
    Validator,
    default_positive_threshold,
    evaluate_scores,
    get_validator_class,
    list_validators,
    register_validator,
    select_best,
)
from comfy_gen.validation import base


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("openai/clip-vit-base-patch32", 22.0, id="hub-b32"),
        pytest.param("openai/clip-vit-large-patch14", 20.0, id="hub-l14"),
        pytest.param("/models/clip-vit-base-patch32/", 22.0, id="local-folder-named-like-hub"),
        pytest.param("/models/CLIP-ViT-Large-Patch14", 20.0, id="case-insensitive"),
        pytest.param("/models/my-own-clip", FALLBACK_POSITIVE_THRESHOLD, id="unknown"),
    ],
)
def test_default_positive_threshold(name, expected):
    assert default_positive_threshold(name) == expected


def test_thresholds_table_is_on_the_clipscore_scale():
    # 100 * max(cos, 0): anything <= 1 would be the seed's 0-1 scale by mistake.
    assert all(10 < value < 40 for value in DEFAULT_POSITIVE_THRESHOLDS.values())


def test_thresholds_coerce():
    assert Thresholds.coerce(None) == Thresholds()
    assert Thresholds.coerce({"positive_threshold": 25, "delta_threshold": 2}) == Thresholds(25.0, 2.0)
    assert Thresholds.coerce({"positive": 21.5}) == Thresholds(21.5, None)
    t = Thresholds(1.0, 2.0)
    assert Thresholds.coerce(t) is t


@pytest.mark.parametrize(
    ("score", "threshold", "delta", "passed", "reason"),
    [
        pytest.param({"positive_score": 30.0}, 25.0, None, True, "Image passed validation", id="pass"),
        pytest.param({"positive_score": 25.0}, 25.0, None, True, "Image passed validation", id="equal-passes"),
        pytest.param({"positive_score": 21.456}, 25.0, None, False, "Low positive CLIP score: 21.46 < 25.00",
                     id="low"),
        pytest.param({"positive_score": 30.0, "negative_score": 29.0, "score_delta": 1.0}, 25.0, 2.0, False,
                     "Low CLIP score delta: 1.00 < 2.00", id="low-delta"),
        pytest.param({"positive_score": 30.0, "negative_score": 20.0, "score_delta": 10.0}, 25.0, 2.0, True,
                     "Image passed validation", id="delta-ok"),
        pytest.param({"positive_score": 30.0}, 25.0, 2.0, True, "Image passed validation", id="no-negative-no-delta"),
        pytest.param({"error": "boom"}, 0.0, None, False, "CLIP scoring failed: boom", id="error-never-passes"),
        pytest.param({}, 0.0, None, False, "CLIP scoring failed: no positive score", id="empty"),
    ],
)
def test_evaluate_scores(score, threshold, delta, passed, reason):
    result = evaluate_scores(score, positive_threshold=threshold, delta_threshold=delta)
    assert (result.passed, result.reason) == (passed, reason)
    data = result.to_dict()
    assert data["passed"] is passed and data["reason"] == reason
    assert data["positive_threshold"] == threshold and data["delta_threshold"] == delta
    assert data["validator"] == "clip"


def test_validation_result_to_dict_keys():
    result = ValidationResult(True, "Image passed validation", {"positive_score": 31.0, "negative_score": 12.0,
                                                                 "score_delta": 19.0})
    assert result.positive_score == 31.0
    assert result.to_dict() == {
        "passed": True, "reason": "Image passed validation", "positive_score": 31.0, "negative_score": 12.0,
        "score_delta": 19.0, "error": None, "validator": "clip", "positive_threshold": None,
        "delta_threshold": None,
    }


@pytest.mark.parametrize(
    ("results", "best"),
    [
        pytest.param([{"positive_score": 20.0}, {"positive_score": 31.0}, {"positive_score": 25.0}], 1, id="highest"),
        pytest.param([{"positive_score": 30.0, "score_delta": 1.0}, {"positive_score": 30.0, "score_delta": 5.0}], 1,
                     id="tie-by-delta"),
        pytest.param([{"positive_score": 30.0, "score_delta": 5.0}, {"positive_score": 30.0, "score_delta": 5.0}], 0,
                     id="full-tie-first"),
        pytest.param([{"error": "unreadable"}, {"positive_score": 0.0}], 1, id="error-ranks-last"),
        pytest.param([{"positive_score": 30.0}, {"positive_score": 30.0, "score_delta": -3.0}], 1,
                     id="missing-delta-below-any-delta"),
    ],
)
def test_select_best(results, best):
    assert select_best(results) == best


def test_select_best_accepts_results_and_rejects_empty():
    results = [ValidationResult(False, "x", {"positive_score": 10.0}), ValidationResult(True, "y", {"positive_score": 12.0})]
    assert select_best(results) == 1
    with pytest.raises(ValueError):
        select_best([])


def test_clip_is_registered():
    assert get_validator_class("clip") is ImageValidator
    assert "clip" in list_validators()


def test_unknown_validator_lists_known_names():
    with pytest.raises(UsageError, match="Unknown validator 'nope'.*clip"):
        get_validator_class("nope")


class ConstantValidator:
    """A user validator: every image gets the same score."""

    name = "constant"

    def __init__(self, value: float = 42.0) -> None:
        self.value = value

    def score_many(self, images, prompts, negatives=None) -> list[dict[str, Any]]:
        return [{"positive_score": self.value} for _ in images]

    def evaluate(self, score, thresholds=None) -> ValidationResult:
        th = Thresholds.coerce(thresholds)
        return evaluate_scores(score, positive_threshold=th.positive or 50.0, validator=self.name, label="constant")


def test_register_a_custom_validator(monkeypatch):
    monkeypatch.setattr(base, "_VALIDATORS", dict(base._VALIDATORS))  # undo the registration afterwards
    register_validator("constant")(ConstantValidator)
    cls = get_validator_class("constant")
    v = cls(10.0)
    assert isinstance(v, Validator)
    [score] = v.score_many(["x.png"], "a red car")
    result = v.evaluate(score)
    assert result.to_dict()["validator"] == "constant"
    assert result.reason == "Low positive constant score: 10.00 < 50.00"
    assert "constant" in list_validators()
