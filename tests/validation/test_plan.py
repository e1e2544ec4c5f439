"""The validation plan: built from a recipe or options, prepared once, judging and re-judging.

A tiny deterministic validator (mean brightness, no model) is registered here the
way a plugin would register one, and goes through the plan end to end against
the emulator: a new validator is one class and a registry entry.
"""

from __future__ import annotations

import random
import textwrap
from pathlib import Path
from typing import Any, Sequence

import pytest

from comfy_gen.config import Settings
from comfy_gen.errors import RecipeError, UsageError, ValidatorUnavailable
from comfy_gen.recipes import ValidationConfig, load_recipe
from comfy_gen.validation import (
    BaseValidator,
    BatchingScorer,
    Check,
    ImageValidator,
    Thresholds,
    ValidationPlan,
    Validator,
    Verdict,
    get_validator_class,
    list_validators,
    register_validator,
    unregister_validator,
)

REPO = Path(__file__).resolve().parents[2]


class BrightnessValidator(BaseValidator):
    """Mean grey level on a 0-100 scale: deterministic and model-free."""

    name = "brightness"
    label = "brightness"
    loads = 0

    @classmethod
    def load(cls, settings: Settings) -> "BrightnessValidator":
        cls.loads += 1
        return cls()

    def score_many(self, images: Sequence[Any], prompts: Sequence[str] | str,
                   negatives: Sequence[str | None] | str | None = None) -> list[dict[str, Any]]:
        return [{"positive_score": brightness_of(image)} for image in images]


def brightness_of(image: Any) -> float:
    from PIL import Image, ImageStat

    with Image.open(image) as img:
        return float(ImageStat.Stat(img.convert("L")).mean[0]) / 2.55


@pytest.fixture
def brightness():
    """Register the brightness validator for one test, then forget it."""
    BrightnessValidator.loads = 0
    register_validator("brightness")(BrightnessValidator)
    yield BrightnessValidator
    unregister_validator("brightness")


def _brightness_plan(positive: float | None, *, delta: float | None = None) -> ValidationPlan:
    return ValidationPlan.from_options(validate=True, validator="brightness", positive_threshold=positive,
                                       delta_threshold=delta)


# --- building plans ----------------------------------------------------------------


def test_from_config_follows_the_recipe_section():
    assert not ValidationPlan.from_config(ValidationConfig()).enabled
    config = ValidationConfig(enabled=True, positive_threshold=30.0, delta_threshold=2.0, allow_skip=True)
    plan = ValidationPlan.from_config(config)
    assert plan.enabled and plan.allow_skip
    assert plan.checks == (Check("clip", Thresholds(30.0, 2.0)),)
    # A serialised section (what RecipeItem carries) gives the same plan.
    assert ValidationPlan.from_dict(config.to_dict()) == plan
    assert plan.to_dict() == {"checks": [{"validator": "clip", "positive_threshold": 30.0, "delta_threshold": 2.0}],
                              "allow_skip": True}


def test_from_options_for_a_single_request():
    assert not ValidationPlan.from_options(validate=False, positive_threshold=30).enabled
    plan = ValidationPlan.from_options(validate=True)
    assert plan.checks == (Check("clip", Thresholds(None, None)),) and not plan.allow_skip


@pytest.mark.parametrize("build", [
    pytest.param(lambda: ValidationPlan.from_config(ValidationConfig(enabled=True, validator="nope")), id="config"),
    pytest.param(lambda: ValidationPlan.from_options(validate=True, validator="nope"), id="options"),
])
def test_unknown_validator_is_a_usage_error_listing_known_ones(build):
    with pytest.raises(UsageError, match=r"Unknown validator 'nope'; known validators: .*clip"):
        build()


def test_validators_are_looked_up_in_the_registry(brightness):
    assert get_validator_class("clip") is ImageValidator
    assert get_validator_class("brightness") is brightness
    assert {"brightness", "clip"} <= set(list_validators())
    unregister_validator("brightness")
    with pytest.raises(UsageError):
        _brightness_plan(10)


def _write_recipe(tmp_path: Path, validator: str) -> Path:
    path = tmp_path / "recipes" / "v.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(f"""\
        name: v
        workflow: tiny-sd15.json
        prompts: [a red car]
        validation:
          enabled: true
          validator: {validator}
    """))
    return path


def test_recipe_with_unknown_validator_fails_at_load_with_file_and_line(tmp_path):
    path = _write_recipe(tmp_path, "nope")
    with pytest.raises(RecipeError) as info:
        load_recipe(path, settings=Settings(workflows_dir=REPO / "workflows"))
    (problem,) = [str(p) for p in info.value.problems]
    # Every registered validator is listed (more land over time): check the shape and clip.
    assert problem.startswith(f"{path}:6: $.validation.validator: unknown validator 'nope' (available: ")
    assert "clip" in problem


def test_recipe_names_a_registered_validator(tmp_path, brightness):
    recipe = load_recipe(_write_recipe(tmp_path, "brightness"), settings=Settings(workflows_dir=REPO / "workflows"))
    assert ValidationPlan.from_config(recipe.validation).checks[0].validator == "brightness"


# --- a registered validator end to end -----------------------------------------------


def _render(emu: Any, tmp_path: Path, plan: Any, **kwargs: Any) -> Any:
    from comfy_gen.comfyui import ComfyUIClient
    from comfy_gen.generation import run_attempts
    from comfy_gen.params import GenerationParams
    from comfy_gen.workflow import load_workflow

    workflow = load_workflow("tiny-sd15", workflows_dir=REPO / "workflows")
    with ComfyUIClient(emu.url) as client:
        return run_attempts(client, workflow, GenerationParams(prompt="a red sunset over the sea", seed=5),
                            dest_dir=tmp_path / "work", name="item", validation=plan,
                            rng=random.Random(0), **kwargs)


def test_registered_validator_judges_renders_through_the_plan(emu, brightness, tmp_path):
    from comfy_gen.metadata import build_metadata, validate_metadata

    settings = Settings()
    with _brightness_plan(101).prepare(settings, batching=True) as strict:  # nothing is brighter than 100
        outcome = _render(emu, tmp_path, strict, strategy="seed_search", max_attempts=3)
    assert brightness.loads == 1, "prepare loads each validator once"
    assert outcome.status == "best_effort" and len(outcome.attempts) == 3
    for attempt in outcome.attempts:
        [verdict] = attempt.verdicts
        assert verdict.validator == "brightness" and not verdict.passed
        assert verdict.reason.startswith("Low positive brightness score: ")
    scores = [a.verdicts[0].scores["positive_score"] for a in outcome.attempts]
    best = outcome.best
    assert best.scores == {"positive_score": max(scores)}
    assert brightness_of(best.files[0]) == pytest.approx(max(scores))

    meta = build_metadata(params=best.params, verdicts=best.verdicts, final_status=outcome.status)
    validate_metadata(meta)
    assert meta["validation"]["passed"] is False and meta["validation"]["positive_score"] == max(scores)
    assert meta["validation"]["verdicts"] == [v.to_dict() for v in best.verdicts]
    assert meta["quality"]["prompt_adherence"] == {"brightness": max(scores)}

    # A lower threshold re-judges the stored verdicts: no rendering, no scoring.
    jobs = emu.stats()["jobs_completed"]
    lenient = _brightness_plan(0).prepare(settings)
    assert [v.passed for v in lenient.rejudge([v.to_dict() for v in best.verdicts])] == [True]
    assert emu.stats()["jobs_completed"] == jobs

    passing = _render(emu, tmp_path, lenient, strategy="seed_search", max_attempts=3)
    assert passing.status == "passed" and len(passing.attempts) == 1
    assert passing.best.reason == "Image passed validation"


def test_unloadable_model_fails_unless_skipping_is_allowed(emu, tmp_path):
    settings = Settings(clip_model=str(tmp_path / "no-model-here"))
    with pytest.raises(ValidatorUnavailable, match="CLIP model folder not found"):
        ValidationPlan.from_options(validate=True).prepare(settings)

    prepared = ValidationPlan.from_options(validate=True, allow_skip=True).prepare(settings, batching=True)
    assert prepared.skipped and not prepared.active
    assert prepared.warnings == [
        f"VALIDATION SKIPPED: CLIP model folder not found: {tmp_path / 'no-model-here'} (the recipe allows "
        "skipping validation; images are kept unvalidated)"]
    assert prepared.judge("any.png", "a red car") == []
    outcome = _render(emu, tmp_path, prepared, max_attempts=3)
    assert outcome.status == "unvalidated" and len(outcome.attempts) == 1 and outcome.validation_skipped
    assert outcome.best.verdicts == [] and outcome.best.passed is None
    # Stored scores are still re-judged: the default threshold comes from the configured
    # model name (an unknown folder: the fallback, 20), not from a loaded model.
    assert prepared.thresholds == {"clip": Thresholds(20.0, None)}
    assert [v.passed for v in prepared.rejudge({"positive_score": 21.0})] == [True]
    prepared.close()


# --- judging and re-judging -----------------------------------------------------------


def test_clip_through_the_plan_matches_the_validator(tiny_clip_dir, validator, images, tmp_path):
    image = tmp_path / "img.png"
    images[0].save(image)
    settings = Settings(clip_model=str(tiny_clip_dir))
    with ValidationPlan.from_options(validate=True, delta_threshold=0.0).prepare(settings, batching=True) as plan:
        [verdict] = plan.judge(image, "a red car", "blurry")
    expected = validator.score_many([image], ["a red car"], ["blurry"])[0]
    assert verdict.validator == "clip"
    assert verdict.scores["positive_score"] == pytest.approx(expected["positive_score"], abs=1e-3)
    assert verdict.scores["score_delta"] == pytest.approx(expected["score_delta"], abs=1e-3)
    assert verdict == plan.rejudge([verdict])[0]


def test_rejudge_applies_new_thresholds_to_stored_results(brightness, tmp_path):
    stored = [Verdict("brightness", False, {"positive_score": 30.0}, "Low positive brightness score: 30.00 < 40.00")]
    settings = Settings()
    assert [v.passed for v in _brightness_plan(25).prepare(settings).rejudge(stored)] == [True]
    [strict] = _brightness_plan(35).prepare(settings).rejudge(stored)
    assert strict == Verdict("brightness", False, {"positive_score": 30.0},
                             "Low positive brightness score: 30.00 < 35.00")
    # A result written before verdicts were kept: its flat scores.
    assert [v.passed for v in _brightness_plan(25).prepare(settings).rejudge({"positive_score": 30.0})] == [True]
    # A scoring error never passes, whatever the threshold.
    assert not _brightness_plan(0).prepare(settings).rejudge({"error": "unreadable"})[0].passed


def test_rejudge_with_a_validator_that_never_saw_the_image_fails_it(brightness, tmp_path):
    plan = ValidationPlan(checks=(Check("brightness", Thresholds(10.0)), Check("clip", Thresholds(20.0))),
                          allow_skip=True)
    prepared = plan.prepare(Settings(clip_model=str(tmp_path / "missing")))
    assert prepared.skipped  # CLIP cannot load; re-judging needs no model
    verdicts = prepared.rejudge([{"validator": "brightness", "passed": True, "scores": {"positive_score": 50.0},
                                  "reason": "Image passed validation"}])
    assert [(v.validator, v.passed) for v in verdicts] == [("brightness", True), ("clip", False)]
    assert verdicts[1].reason == "No stored clip scores for this image"


def test_batching_scorer_is_a_validator(brightness, tmp_path):
    from PIL import Image

    paths = []
    for i, grey in enumerate((0, 255)):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (8, 8), (grey, grey, grey)).save(paths[-1])
    with BatchingScorer(BrightnessValidator(), max_batch=4, max_wait=0.01) as scorer:
        assert isinstance(scorer, Validator) and scorer.name == "brightness"
        assert scorer.score_many(paths, "p") == [{"positive_score": 0.0}, {"positive_score": 100.0}]
        assert scorer.evaluate({"positive_score": 100.0}, {"positive": 50}).passed
