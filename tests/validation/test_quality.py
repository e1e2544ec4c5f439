"""The quality validator: the original's formulas, missing metrics, loading on local
tiny weights (tiny CLIP + aesthetic head; pyiqa through its stand-in), unavailability."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from comfy_gen.config import Settings, get_settings
from comfy_gen.errors import UsageError, ValidatorUnavailable
from comfy_gen.validation import Thresholds, ValidationPlan
from comfy_gen.validation.quality import QualityValidator
from comfy_gen.validation.quality_score import compose, grade, normalise_adherence, normalise_aesthetic, \
    normalise_detail, normalise_lower_better, quality_block, to_scores


def _original(b: float, n: float, laion: float, topiq: float, cos: float | None) -> float:
    """utils/quality.py of the original, written out: every metric present."""
    clamp = lambda x, lo, hi: max(lo, min(hi, x))  # noqa: E731
    tech = 0.7 * 10 * (1 - clamp(b, 0, 100) / 100) + 0.3 * 10 * (1 - clamp(n, 0, 100) / 100)
    aes, det = clamp(laion, 0, 10), 10 * clamp(topiq, 0, 1)
    if cos is None:
        return round(0.40 * tech + 0.35 * aes + 0.25 * det, 2)
    adh = 10 * clamp((cos - 0.15) / 0.25, 0, 1)
    return round(0.30 * tech + 0.25 * aes + 0.25 * adh + 0.20 * det, 2)


@pytest.mark.parametrize("fn, raw, expected", [
    (normalise_lower_better, 0, 10.0), (normalise_lower_better, 25, 7.5), (normalise_lower_better, 100, 0.0),
    (normalise_lower_better, 150, 0.0), (normalise_lower_better, -3, 10.0),
    (normalise_aesthetic, 6.3, 6.3), (normalise_aesthetic, 11, 10.0), (normalise_aesthetic, -1, 0.0),
    (normalise_detail, 0.42, 4.2), (normalise_detail, 1.3, 10.0),
    (normalise_adherence, 0.15, 0.0), (normalise_adherence, 0.275, 5.0), (normalise_adherence, 0.40, 10.0),
    (normalise_adherence, 0.05, 0.0), (normalise_adherence, 0.9, 10.0),
])
def test_normalisation_matches_the_original(fn, raw, expected):
    assert fn(raw) == pytest.approx(expected)


@pytest.mark.parametrize("composite, letter", [
    (10, "A"), (8.0, "A"), (7.99, "B"), (6.5, "B"), (6.49, "C"), (5.0, "C"), (4.99, "D"), (3.0, "D"),
    (2.99, "F"), (0, "F"),
])
def test_grades(composite, letter):
    assert grade(composite) == letter


@pytest.mark.parametrize("b, n, laion, topiq, cos", [
    (20, 30, 6.5, 0.7, 0.31), (80, 10, 4.0, 0.2, 0.12), (0, 0, 10, 1, 0.5), (150, 120, 11, 1.4, None),
    (35.5, 44.1, 5.2, 0.55, None), (10, 90, 7.7, 0.05, 0.22),
])
def test_composite_matches_the_original_when_every_metric_is_present(b, n, laion, topiq, cos):
    raw = {"brisque": b, "niqe": n, "laion_aes": laion, "topiq_nr": topiq, "clip": cos}
    score = compose(raw, with_prompt=cos is not None)
    assert score.composite == _original(b, n, laion, topiq, cos)
    assert score.grade == grade(score.composite) and score.missing == ()


def test_missing_metrics_are_reported_and_the_composite_is_reweighted():
    score = compose({"brisque": 20, "niqe": None, "topiq_nr": 0.5, "clip": 0.275}, with_prompt=True)
    assert score.missing == ("niqe", "laion_aes")
    # technical is BRISQUE alone (8.0); weights 0.30/0.25/0.20 over technical, adherence, detail.
    assert score.technical == 8.0 and score.aesthetic is None
    assert score.composite == round((0.30 * 8.0 + 0.25 * 5.0 + 0.20 * 5.0) / 0.75, 2)
    assert score.weights() == {"technical": 0.4, "prompt_adherence": 0.3333, "detail": 0.2667}
    scores = to_scores(score)
    assert scores["quality_missing"] == ["niqe", "laion_aes"] and scores["quality_niqe"] is None
    nothing = compose({}, with_prompt=False)
    assert nothing.composite is None and nothing.grade is None
    assert nothing.missing == ("brisque", "niqe", "laion_aes", "topiq_nr")


def test_pass_rule_rank_key_and_reasons():
    good = to_scores(compose({"brisque": 5, "niqe": 5, "laion_aes": 8, "topiq_nr": 0.9}, with_prompt=False))
    judged = QualityValidator.judge_scores(good, Thresholds(7.0))
    assert judged.passed and judged.reason.startswith(f"Quality {good['quality_composite']:.2f} (grade A)")
    low = QualityValidator.judge_scores(good, Thresholds(9.9))
    assert not low.passed and "Low quality score" in low.reason and "< 9.90" in low.reason
    assert QualityValidator.judge_scores(good, Thresholds(None)).thresholds.positive == 7.0
    assert not QualityValidator.judge_scores({"error": "Cannot read image"}, Thresholds(1.0)).passed
    assert not QualityValidator.judge_scores({"quality_composite": None}, Thresholds(0.0)).passed
    assert QualityValidator.rank_key(good) > QualityValidator.rank_key({"quality_composite": 1.0})
    assert QualityValidator.rank_key({"error": "x"}) < QualityValidator.rank_key({"quality_composite": 0.0})


@pytest.mark.parametrize("options, message", [
    ({"metrics": ["brisque", "sharpness"]}, "metrics: expected a non-empty list"),
    ({"metrics": []}, "metrics: expected a non-empty list"),
    ({"prompt_adherence": "yes"}, "prompt_adherence: expected true or false"),
    ({"colour": 1}, "unknown option(s) colour"),
])
def test_bad_options_name_the_option(options, message):
    with pytest.raises(UsageError) as err:
        QualityValidator.parse_options(options)
    assert message in err.value.message


def test_loads_every_metric_from_local_weights_once_and_batches(quality_env, pyiqa_standin, images):
    settings = get_settings()
    validator = QualityValidator.load(settings)
    assert sorted(validator.metrics) == ["brisque", "laion_aes", "niqe", "topiq_nr"] and not validator.missing
    # The adapter handed pyiqa the local files (and no backbone download for TOPIQ), on the CPU.
    calls = {name: (device, kwargs) for name, device, kwargs in pyiqa_standin.CALLS}
    weights = quality_env["pyiqa"]
    assert calls["brisque"] == ("cpu", {"pretrained_model_path": str(weights / "brisque_svm_weights.pth")})
    assert calls["topiq_nr"][1]["backbone_pretrain"] is False
    again = QualityValidator.load(settings)  # cached per process: nothing is created twice
    assert len(pyiqa_standin.CALLS) == 3 and again.metrics["brisque"] is validator.metrics["brisque"]

    same_size = [images[0], images[0].copy(), images[1]]  # two 64x48 images, one 40x40
    results = validator.score_many(same_size, "a red car")
    assert validator.metrics["brisque"].metric.batches == [2, 1]
    for r in results:
        assert r["quality_missing"] == [] and 0 <= r["quality_composite"] <= 10
        assert r["quality_grade"] == grade(r["quality_composite"])
        assert r["quality_composite"] == _original(r["quality_brisque"], r["quality_niqe"], r["quality_laion_aes"],
                                                   r["quality_topiq_nr"], r["quality_clip_cosine"])
    assert results[0] == results[1]
    no_prompt = validator.score_many([images[2]], "")[0]
    assert "quality_clip_cosine" not in no_prompt and no_prompt["quality_prompt_adherence"] is None
    assert set(no_prompt["quality_weights"]) == {"technical", "aesthetic", "detail"}
    bad = validator.score_many([Path("/nonexistent.png")], "x")[0]
    assert "Cannot read image" in bad["error"]


def test_aesthetic_head_matches_the_clip_embedding(quality_env, images):
    from comfy_gen.validation.quality_metrics import load_metric

    metric = load_metric("laion_aes", get_settings())
    values = metric(images[:3])
    assert len(values) == 3 and all(math.isfinite(v) for v in values) and len(set(values)) == 3


def _settings(**overrides) -> Settings:
    return get_settings().model_copy(update=overrides)


def test_unloadable_metrics_are_missing_with_reasons(quality_env, monkeypatch, tmp_path, images):
    from tests.fixtures.quality import build_aesthetic_head, build_pyiqa_weights

    partial = build_pyiqa_weights(tmp_path / "partial", names=("brisque", "topiq_nr"))
    wrong_head = build_aesthetic_head(tmp_path / "head8.pth", 8)
    validator = QualityValidator.load(_settings(quality_weights_dir=str(partial),
                                                quality_aesthetic_head=str(wrong_head)))
    assert sorted(validator.missing) == ["laion_aes", "niqe"]
    assert "niqe_modelparameters.mat not found" in validator.missing["niqe"]
    assert "expects 8-d CLIP embeddings" in validator.missing["laion_aes"]
    assert any(w.startswith("quality metric niqe is missing") for w in validator.load_warnings)
    result = validator.score_many([images[3]], "a dog")[0]
    assert result["quality_missing"] == ["niqe", "laion_aes"] and result["quality_laion_aes"] is None
    assert set(result["quality_missing_reasons"]) == {"niqe", "laion_aes"}
    assert set(result["quality_weights"]) == {"technical", "prompt_adherence", "detail"}
    judged = QualityValidator.judge_scores(result, Thresholds(0.0))
    assert judged.passed and "(missing: niqe, laion_aes)" in judged.reason

    # pyiqa not importable at all (not installed): its three metrics are missing, CLIP and LAION remain.
    monkeypatch.setitem(sys.modules, "pyiqa", None)
    validator = QualityValidator.load(_settings(quality_weights_dir=str(tmp_path / "elsewhere")))
    assert sorted(validator.metrics) == ["laion_aes"] and validator.clip is not None
    validator = QualityValidator.load(_settings(quality_weights_dir=None))
    assert "pyiqa is not usable" in validator.missing["brisque"]
    result = validator.score_many([images[3]], "a dog")[0]
    assert result["quality_missing"] == ["brisque", "niqe", "topiq_nr"] and result["quality_composite"] is not None


def test_nothing_loads_means_unavailable_before_rendering_unless_skipping(quality_env, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pyiqa", None)
    monkeypatch.setenv("COMFY_GEN_CLIP_MODEL", str(tmp_path / "no-clip"))
    monkeypatch.setenv("COMFY_GEN_QUALITY_AESTHETIC_HEAD", str(tmp_path / "no-head.pth"))
    from comfy_gen.config import reset_settings_cache

    reset_settings_cache()
    plan = ValidationPlan.from_options(validate=True, checks=[{"name": "quality", "threshold": 6.5}])
    with pytest.raises(ValidatorUnavailable) as err:
        plan.prepare(get_settings())
    text = err.value.message
    assert "No quality metric could be loaded" in text and "aesthetic head file not found" in text
    assert "CLIP model folder not found" in text
    skipping = ValidationPlan.from_options(validate=True, allow_skip=True, checks=["quality"])
    with skipping.prepare(get_settings()) as prepared:
        assert prepared.skipped and "VALIDATION SKIPPED" in prepared.warnings[0]


def test_a_check_with_options_through_the_plan_and_the_sidecar_block(quality_env, images, tmp_path):
    from comfy_gen.metadata import build_metadata, validate_metadata
    from comfy_gen.params import GenerationParams

    path = tmp_path / "img.png"
    images[4].save(path)
    plan = ValidationPlan.from_options(validate=True, checks=[
        {"name": "quality", "threshold": 0.5, "metrics": "brisque,niqe", "prompt_adherence": False}, "clip"])
    with plan.prepare(get_settings()) as prepared:
        assert prepared.thresholds["quality"].positive == 0.5
        verdicts = prepared.judge(path, "a red car")
    quality = verdicts[0]
    assert quality.validator == "quality" and quality.passed
    assert quality.scores["quality_missing"] == [] and quality.scores["quality_laion_aes"] is None
    assert set(quality.scores["quality_weights"]) == {"technical"}
    meta = build_metadata(params=GenerationParams(prompt="a red car", seed=1), verdicts=verdicts)
    block = meta["quality"]
    assert block["composite_score"] == quality.scores["quality_composite"] and block["grade"]
    assert block["metrics"]["brisque"] == quality.scores["quality_brisque"] and block["missing"] == []
    assert meta["validation"]["positive_score"] is not None  # CLIP's keys are still merged in
    validate_metadata(meta)


def test_a_recipe_names_a_bad_quality_option(tmp_path):
    from comfy_gen.errors import RecipeError
    from comfy_gen.recipes import load_recipe

    body = ("name: graded\nworkflow: tiny-sd15.json\nprompts: [a red car]\nvalidation:\n  enabled: true\n"
            "  checks: [{name: quality, threshold: 6.5, metrics: [%s]}]\n")
    good = tmp_path / "good.yaml"
    good.write_text(body % "brisque, laion_aes")
    plan = ValidationPlan.from_config(load_recipe(good).validation)
    # The technical checks join every validating recipe (docs/validation.md), last.
    assert [(c.validator, c.thresholds.positive, c.opts) for c in plan.checks[:-1]] == [
        ("quality", 6.5, {"metrics": ["brisque", "laion_aes"]})]
    assert plan.checks[-1].validator == "technical"
    bad = tmp_path / "bad.yaml"
    bad.write_text(body % "sharpness")
    with pytest.raises(RecipeError) as err:
        load_recipe(bad)
    assert "validation.checks[0]" in str(err.value) and "metrics: expected a non-empty list" in str(err.value)
