"""Several validators in one plan (``validation.checks``), with per-check options.

A model-free validator with an option (a brightness floor) is registered the way
a plugin would; the plan loads it with its options, judges with them, re-judges
stored scores by today's options, and a recipe's bad check names its field.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Mapping, Sequence

import pytest

from comfy_gen.config import Settings
from comfy_gen.errors import RecipeError, UsageError
from comfy_gen.recipes import ValidationConfig, load_recipe
from comfy_gen.validation import BaseValidator, Thresholds, ValidationPlan, register_validator, unregister_validator
from comfy_gen.validation.base import ValidationResult
from comfy_gen.validation.plan import build_checks


class FloorValidator(BaseValidator):
    """Passes when the image's mean grey level is at least the ``floor`` option."""

    name = "floor"
    label = "floor"
    loaded_with: list[dict[str, Any]] = []

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(options) - {"floor"}
        if unknown:
            raise UsageError(f"unknown option(s) {', '.join(sorted(unknown))} (floor takes: floor)")
        floor = options.get("floor", 10)
        if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0 <= floor <= 255:
            raise UsageError(f"floor: expected a number 0-255, got {floor!r}")
        return {"floor": float(floor)}

    @classmethod
    def load(cls, settings: Settings, options: Mapping[str, Any] | None = None) -> "FloorValidator":
        cls.loaded_with.append(dict(options or {}))
        return cls()

    @classmethod
    def judge_scores(cls, score: Mapping[str, Any], thresholds: Thresholds,
                     options: Mapping[str, Any] | None = None) -> ValidationResult:
        floor = float((options or {}).get("floor", 10))
        mean = float(score["mean"])
        passed = mean >= floor
        return ValidationResult(passed, "bright enough" if passed else f"too dark: {mean:.1f} < {floor:.1f}",
                                dict(score), cls.name, thresholds)

    def score_many(self, images: Sequence[Any], prompts: Sequence[str] | str,
                   negatives: Sequence[str | None] | str | None = None) -> list[dict[str, Any]]:
        from PIL import Image, ImageStat

        out = []
        for image in images:
            with Image.open(image) as img:
                out.append({"mean": float(ImageStat.Stat(img.convert("L")).mean[0])})
        return out


class ConstValidator(BaseValidator):
    """Scores every image 50 on positive_score (the default CLIP-like pass rule)."""

    name = "const"
    label = "const"

    def score_many(self, images: Sequence[Any], prompts: Sequence[str] | str,
                   negatives: Sequence[str | None] | str | None = None) -> list[dict[str, Any]]:
        return [{"positive_score": 50.0} for _ in images]


@pytest.fixture
def validators():
    FloorValidator.loaded_with = []
    register_validator("floor")(FloorValidator)
    register_validator("const")(ConstValidator)
    yield
    unregister_validator("floor")
    unregister_validator("const")


def _grey(tmp_path: Path, level: int) -> Path:
    from PIL import Image

    path = tmp_path / f"grey{level}.png"
    Image.new("L", (16, 16), level).save(path)
    return path


def test_checks_load_with_their_options_and_every_one_must_pass(validators, tmp_path):
    plan = ValidationPlan.from_options(validate=True, checks=["const", {"name": "floor", "floor": 100}])
    assert [c.validator for c in plan.checks] == ["const", "floor"]
    with plan.prepare(Settings()) as prepared:
        assert FloorValidator.loaded_with == [{"floor": 100.0}]
        dark = prepared.judge(_grey(tmp_path, 40), "a grey square")
        light = prepared.judge(_grey(tmp_path, 200), "a grey square")
    assert [v.passed for v in dark] == [True, False]
    assert dark[1].reason == "too dark: 40.0 < 100.0"
    assert all(v.passed for v in light)


def test_rejudging_uses_todays_options_without_loading(validators, tmp_path):
    with ValidationPlan.from_options(validate=True, checks=[{"name": "floor", "floor": 10}]).prepare(Settings()) as p:
        stored = [v.to_dict() for v in p.judge(_grey(tmp_path, 40), "x")]
    assert stored[0]["passed"]
    FloorValidator.loaded_with = []
    stricter = ValidationPlan.from_options(validate=True, checks=[{"name": "floor", "floor": 50}])
    again = stricter.rejudger(Settings()).rejudge(stored)
    assert not again[0].passed and "40.0 < 50.0" in again[0].reason
    assert FloorValidator.loaded_with == []


def test_plans_with_options_are_hashable_and_compare_by_value(validators):
    a = ValidationPlan.from_options(validate=True, checks=[{"name": "floor", "floor": 3}])
    b = ValidationPlan.from_options(validate=True, checks=[{"name": "floor", "floor": 3.0}])
    assert a == b and len({a, b}) == 1
    assert a.to_dict()["checks"][0]["options"] == {"floor": 3.0}


def test_section_thresholds_apply_to_the_named_validator_only(validators):
    checks = build_checks(["const", "floor"], default=Thresholds(30.0, 2.0), default_validator="const")
    assert checks[0].thresholds == Thresholds(30.0, 2.0)
    assert checks[1].thresholds == Thresholds()
    own = build_checks([{"name": "const", "threshold": 40}], default=Thresholds(30.0), default_validator="const")
    assert own[0].thresholds.positive == 40.0


@pytest.mark.parametrize("specs, message", [
    ([{"name": "floor", "floor": "dark"}], "checks[0]: floor: expected a number 0-255, got 'dark'"),
    ([{"name": "floor", "glow": 1}], "checks[0]: unknown option(s) glow"),
    (["const", "const"], "checks[1]: validator 'const' is listed twice"),
    ([{"floor": 1}], "checks[0]: missing 'name'"),
    (["nope"], "checks[0]: Unknown validator 'nope'"),
    ([{"name": "const", "threshold": "high"}], "checks[0].positive_threshold: expected a number"),
    ([{"name": "const", "extra": 1}], "checks[0]: validator 'const' takes no options (got: extra)"),
])
def test_bad_specs_name_the_check_and_the_problem(validators, specs, message):
    with pytest.raises(UsageError) as err:
        build_checks(specs)
    assert message in err.value.message


def test_a_recipe_lists_checks_and_a_bad_one_names_its_field(validators, tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(textwrap.dedent("""\
        name: good
        workflow: tiny-sd15.json
        prompts: [a red car]
        validation:
          enabled: true
          validator: const
          positive_threshold: 40
          checks: [const, {name: floor, floor: 20}]
        """))
    recipe = load_recipe(good)
    plan = ValidationPlan.from_config(recipe.validation)
    assert [(c.validator, c.thresholds.positive, c.opts) for c in plan.checks][:2] == [
        ("const", 40.0, {}), ("floor", None, {"floor": 20.0})]
    assert plan.checks[2].validator == "technical"  # on by default (validation.technical)
    # The serialised section (what a RecipeItem carries) builds the same plan.
    assert ValidationPlan.from_dict(recipe.validation.to_dict()) == plan
    assert "checks" not in ValidationConfig().to_dict()

    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("floor: 20", "floor: 999"))
    with pytest.raises(RecipeError) as err:
        load_recipe(bad)
    text = str(err.value)
    assert "bad.yaml" in text and "validation.checks[1]" in text and "expected a number 0-255, got 999" in text
