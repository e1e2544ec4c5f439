"""The technical checks: real broken images built here, judged with readable reasons.

Black, NaN, noise-like, blank, blurred, clipped and duplicate images are made with
numpy/PIL; the emulator's own pictures must pass (every recipe validates with
these checks by default); a black render is refined like a low CLIP score.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from comfy_gen.config import Settings
from comfy_gen.emulator.render import Picture, render
from comfy_gen.errors import UsageError
from comfy_gen.recipes import ValidationConfig
from comfy_gen.validation import ValidationPlan, Verdict
from comfy_gen.validation.plan import build_checks
from comfy_gen.validation.technical import TechnicalValidator, default_options, hamming, measure

REPO = Path(__file__).resolve().parents[2]


def _scene(seed: int = 1, size: int = 512) -> Image.Image:
    """Something image-like: a gradient and crisp shapes (an emulator picture)."""
    return render(Picture(size, size, seed, "a red car on a blue road"))


def _save(img: Image.Image, path: Path) -> Path:
    img.save(path)
    return path


def _judge(*images: Any, options: dict[str, Any] | None = None) -> list[Verdict]:
    plan = ValidationPlan.from_options(validate=True, checks=[{"name": "technical", **(options or {})}])
    with plan.prepare(Settings()) as prepared:
        return [prepared.judge(image, "a prompt")[0] for image in images]


def test_a_good_picture_passes_and_reports_every_score(tmp_path):
    [verdict] = _judge(_save(_scene(), tmp_path / "good.png"))
    assert verdict.passed and verdict.reason == "Technical checks passed"
    assert set(verdict.scores) == {"technical_mean", "technical_std", "technical_sharpness", "technical_clipped",
                                   "technical_noise", "technical_nonfinite", "technical_phash", "technical_size"}
    assert verdict.scores["technical_size"] == "512x512" and len(verdict.scores["technical_phash"]) == 16


def test_broken_images_fail_with_a_reason_naming_the_number_and_threshold(tmp_path):
    rng = np.random.default_rng(0)
    dark = np.asarray(_scene()).astype(np.float32) * 0.02            # a VAE overflow: (almost) black
    black = _save(Image.fromarray(dark.astype(np.uint8)), tmp_path / "black.png")
    noise = _save(Image.fromarray(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)), tmp_path / "noise.png")
    grey = _save(Image.new("RGB", (512, 512), (128, 130, 126)), tmp_path / "grey.png")
    blurred = _save(_scene().filter(ImageFilter.GaussianBlur(6)), tmp_path / "blurred.png")
    blown = _scene()
    ImageDraw.Draw(blown).rectangle([0, 0, 511, 400], fill=(255, 255, 255))   # 78 % pure white
    blown_path = _save(blown, tmp_path / "blown.png")
    nan = np.asarray(_scene().convert("L"), dtype=np.float32) / 255.0
    nan[:64] = np.nan
    nan_path = _save(Image.fromarray(nan, "F"), tmp_path / "nan.tiff")

    verdicts = dict(zip(["black", "noise", "grey", "blurred", "blown", "nan"],
                        _judge(black, noise, grey, blurred, blown_path, nan_path)))
    assert not any(v.passed for v in verdicts.values())
    assert verdicts["black"].reason.startswith("Image is almost black: mean ")
    assert verdicts["black"].reason.split("; ")[0].endswith("/255 (threshold 8)")
    assert verdicts["noise"].reason.startswith("Image looks like noise (garbage): noise ratio ")
    assert verdicts["grey"].reason == "Image is blank or near-uniform: std 0.00 (threshold 5)"
    assert verdicts["blurred"].reason.startswith("Image is heavily blurred: sharpness ")
    assert verdicts["blown"].reason == "Exposure is clipped: 78% of pixels at 0 or 255 (threshold 50%)"
    assert verdicts["nan"].reason.startswith("Image has invalid pixels: 12.5% NaN or infinite")


def test_unreadable_files_fail_with_the_problem_not_a_traceback(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    [verdict] = _judge(junk)
    assert not verdict.passed
    assert verdict.reason == "Technical check failed: not a readable image (unknown or damaged format)"


def test_emulator_pictures_pass_for_many_prompts_and_seeds():
    # Every validating recipe runs these checks on the emulator: none may fail by chance.
    prompts = ["a black cat at night", "white snow field", "grey fog", "x", "a watercolor landscape"]
    validator = TechnicalValidator()
    for prompt in prompts:
        for seed in range(12):
            [scores] = validator.score_many([render(Picture(512, 384, seed, prompt))], [prompt])
            verdict = TechnicalValidator.judge_scores(scores, build_checks(["technical"])[0].thresholds)
            assert verdict.passed, (prompt, seed, verdict.reason)


def test_options_turn_sub_checks_off_and_bad_ones_name_the_option():
    parsed = TechnicalValidator.parse_options({"min_sharpness": None, "max_clipped": 0.9})
    assert parsed["min_sharpness"] is None and parsed["max_clipped"] == 0.9 and parsed["duplicates"] is False
    assert TechnicalValidator.parse_options({"duplicate_distance": 3})["duplicates"] is True
    for options, message in [
        ({"min_mean": "dark"}, "technical option 'min_mean': expected a number 0-255 (or null to turn it off)"),
        ({"max_clipped": 2}, "technical option 'max_clipped': expected a number 0-1"),
        ({"duplicate_distance": 65}, "technical option 'duplicate_distance': expected a whole number 0-64"),
        ({"duplicates": "yes"}, "technical option 'duplicates': expected true or false"),
        ({"blur": 1}, "technical: unknown option(s) blur (options: min_mean, min_std"),
    ]:
        with pytest.raises(UsageError) as err:
            build_checks([{"name": "technical", **options}])
        assert message in err.value.message


def test_stored_scores_are_rejudged_by_todays_options(tmp_path):
    dim = Image.fromarray((np.asarray(_scene()).astype(np.float32) * 0.05).astype(np.uint8))  # mean ~6
    [verdict] = _judge(_save(dim, tmp_path / "dim.png"), options={"min_std": 1, "min_sharpness": None})
    assert not verdict.passed and "almost black" in verdict.reason
    lenient = ValidationPlan.from_options(validate=True, checks=[{"name": "technical", "min_mean": 2,
                                                                  "min_std": 1, "min_sharpness": None}])
    [again] = lenient.rejudger(Settings()).rejudge([verdict.to_dict()])
    assert again.passed, again.reason
    # A result stored before technical checks existed is not failed for them.
    [old] = lenient.rejudger(Settings()).rejudge([{"validator": "clip", "passed": True,
                                                   "scores": {"positive_score": 30.0}}])
    assert old.passed and old.reason == "Not checked: stored before technical checks"


def test_near_duplicates_fail_against_images_passed_earlier_in_the_run(tmp_path):
    first = _save(_scene(1), tmp_path / "item_a.png")
    again = tmp_path / "item_b.jpg"
    _scene(1).resize((384, 384)).save(again, quality=80)    # the same picture, resized and re-encoded
    other = _save(_scene(2), tmp_path / "item_c.png")
    a, b, c = _judge(first, again, other, options={"duplicates": True})
    assert a.passed and c.passed and "technical_duplicate_distance" not in a.scores
    assert not b.passed and b.reason.startswith("Near-duplicate of item_a.png: hash distance ")
    assert b.scores["technical_duplicate_distance"] <= 5 and c.scores["technical_duplicate_distance"] > 5
    assert hamming(a.scores["technical_phash"], b.scores["technical_phash"]) == b.scores["technical_duplicate_distance"]
    # Off by default: a matrix sweep over steps or cfg with one seed renders alike on purpose.
    assert all(v.passed for v in _judge(first, again))


def test_concurrent_duplicates_exactly_one_passes(tmp_path):
    path = _save(_scene(3), tmp_path / "same.png")
    plan = ValidationPlan.from_options(validate=True, checks=[{"name": "technical", "duplicates": True}])
    results: list[bool] = []
    lock = threading.Lock()
    with plan.prepare(Settings(), batching=True) as prepared:
        def judge() -> None:
            [verdict] = prepared.judge(path, "p")
            with lock:
                results.append(verdict.passed)
        threads = [threading.Thread(target=judge) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(results) == [False] * 5 + [True]


def test_validation_sections_turn_technical_checks_on_by_default():
    assert [c.validator for c in ValidationPlan.from_config(ValidationConfig(enabled=True)).checks] == [
        "clip", "technical"]
    assert [c.validator for c in ValidationPlan.from_config(ValidationConfig(technical=True)).checks] == [
        "technical"]
    assert not ValidationPlan.from_config(ValidationConfig()).enabled
    assert [c.validator for c in ValidationPlan.from_config(
        ValidationConfig(enabled=True, technical=False)).checks] == ["clip"]
    listed = ValidationConfig(enabled=True, checks=({"name": "technical", "min_mean": 20}, "clip"))
    checks = ValidationPlan.from_config(listed).checks
    assert [c.validator for c in checks] == ["technical", "clip"] and checks[0].opts["min_mean"] == 20.0
    assert ValidationConfig.from_dict(ValidationConfig(technical=False).to_dict()).technical is False
    assert "technical" not in ValidationConfig().to_dict()   # item hashes of older recipes are unchanged


def test_a_black_render_is_refined_like_a_low_clip_score(emu, tmp_path):
    from comfy_gen.comfyui import ComfyUIClient
    from comfy_gen.generation import run_attempts
    from comfy_gen.params import GenerationParams
    from comfy_gen.workflow import load_workflow

    emu.faults.update({"black_images_next": 1})
    plan = ValidationPlan.from_options(validate=True, checks=["technical"])
    workflow = load_workflow("tiny-sd15", workflows_dir=REPO / "workflows")
    with plan.prepare(Settings()) as prepared, ComfyUIClient(emu.url) as client:
        outcome = run_attempts(client, workflow, GenerationParams(prompt="a red car", seed=5),
                               dest_dir=tmp_path / "work", name="item", validation=prepared,
                               strategy="seed_search", max_attempts=3, rng=random.Random(0))
    assert outcome.status == "passed" and len(outcome.attempts) == 2
    first, second = outcome.attempts
    assert not first.passed and first.reason.startswith("Image is almost black: mean 0.0/255 (threshold 8)")
    assert second.passed and outcome.best is second
    assert measure(second.files[0])["technical_mean"] > 8
