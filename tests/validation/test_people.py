"""The person, pose and content checks: their pure rules table-driven, their model
path end to end on tiny models built and saved by the tests (tests/fixtures/people.py).

The tiny detector sees exactly 3 people (at ~0.99) in any image and the tiny pose
model scores every keypoint ~1; BLIP's answers from random weights mean nothing,
so the content check is only asked to return well-formed scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from comfy_gen.config import Settings
from comfy_gen.errors import UsageError, ValidatorUnavailable
from comfy_gen.validation import Thresholds, ValidationPlan, list_validators
from comfy_gen.validation.content import ContentValidator, extract_content, parse_count_answer, parse_yes_no
from comfy_gen.validation.hfload import clear_cache
from comfy_gen.validation.people import PersonValidator, count_detections, expected_person_count
from comfy_gen.validation.plan import build_checks
from comfy_gen.validation.pose import KEY_LANDMARKS, PoseValidator, is_coherent, judge_pose

# --- prompt parsing -------------------------------------------------------------------


@pytest.mark.parametrize("prompt, expected", [
    ("a solo portrait of a knight", 1),
    ("single woman reading", 1),
    ("two women walking on a beach", 2),
    ("Three young men playing chess", 3),
    ("4 people at a table", 4),
    ("12 individuals in a queue", 12),
    ("a group of 5 friends", 5),
    ("a group of seven hikers", 7),
    ("two women and three men dancing", 5),
    ("one subject, studio light", 1),
    ("two dogs and a man", None),           # "and" breaks the phrase: not two men
    ("a woman with two cats", None),
    ("someone in a red coat", None),
    ("a red car at night", None),
    ("", None),
    ("a woman", None),                      # no count word: no expectation
    ("ten people, a group of 3 children", 10),  # counted terms win over "group of"
    ("a superman poster", None),
], ids=lambda v: str(v))
def test_expected_person_count_follows_the_prompt_rules(prompt, expected):
    assert expected_person_count(prompt) == expected


def test_extract_content_builds_the_questions_from_the_prompt():
    spec = extract_content("two smiling women in red and blue dresses, green park, yellow kite, standing, happy, old")
    assert spec.count == 2 and spec.subject == "women"
    assert spec.colours == ("red", "blue", "green")                 # at most 3, in prompt order
    assert spec.attributes == ("smiling", "standing", "happy")
    assert spec.questions == ("How many people are in the picture?", "Is there anything red in the picture?",
                              "Is there anything blue in the picture?", "Is there anything green in the picture?",
                              "Is the women smiling?", "Is the women standing?", "Is the women happy?")
    assert extract_content("a lighthouse").questions == ("How many people are in the picture?",)
    assert extract_content("a lighthouse").subject == "subject"


@pytest.mark.parametrize("answer, count", [
    ("2", 2), ("two", 2), ("there are 3", 3), ("none", 0), ("no", 0), ("0", 0), ("many", None), ("", None),
    (None, None),
])
def test_parse_count_answer(answer, count):
    assert parse_count_answer(answer) == count


@pytest.mark.parametrize("answer, value", [("yes", True), ("Yes.", True), ("no", False), ("maybe", None), ("", None)])
def test_parse_yes_no(answer, value):
    assert parse_yes_no(answer) is value


# --- detections and poses -------------------------------------------------------------


def test_count_detections_counts_scores_at_or_above_the_confidence():
    dets = [[0.95, 0, 0, 1, 1], [0.5, 0, 0, 1, 1], [0.49, 0, 0, 1, 1], [0.3, 0, 0, 1, 1]]
    assert [count_detections(dets, c) for c in (0.3, 0.5, 0.9, 0.99)] == [4, 2, 1, 0]


def _person(score: float = 0.9, low: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"score": score, "keypoints": {k: (0.2 if k in low else 0.8) for k in KEY_LANDMARKS}}


@pytest.mark.parametrize("low, coherent", [
    ((), True),
    (("left_wrist", "right_wrist", "left_knee", "right_knee"), True),        # 6/10 = 60 %
    (("left_wrist", "right_wrist", "left_knee", "right_knee", "left_elbow"), False),  # 5/10
    (("left_hip",), False),                                                  # a hip is required
    (("right_shoulder",), False),
    (("left_knee", "right_elbow"), True),
], ids=lambda v: str(v))
def test_coherence_rule(low, coherent):
    ok, missing = is_coherent(_person(low=low)["keypoints"])
    assert ok is coherent and missing == [k for k in KEY_LANDMARKS if k in low]


@pytest.mark.parametrize("persons, expected, valid, reason", [
    ([_person(), _person()], 2, True, "Coherent pose: 2 person(s)"),
    ([_person(), _person()], None, True, "Coherent pose: 2 person(s)"),
    ([_person()], 2, False, "Pose: person count mismatch: expected 2, detected 1"),
    ([_person(), _person(low=("left_hip",))], 2, False, "Incoherent pose: person 2 of 2 has 9/10"),
    ([], None, True, "No person to check"),
    ([], 0, True, "No person, as the prompt expects"),
    ([], 1, False, "expected 1, detected 0"),
    ([_person(), _person(score=0.3, low=("left_hip",))], 1, True, "Coherent pose: 1 person(s)"),  # below confidence
], ids=["two-coherent", "no-expectation", "count", "incoherent", "none", "none-expected", "missing",
        "low-confidence-ignored"])
def test_pose_image_rule(persons, expected, valid, reason):
    ok, text, derived = judge_pose(persons, expected, confidence=0.5, threshold=0.5, min_visible=0.6)
    assert ok is valid and reason in text
    assert derived["pose_person_count"] == sum(1 for p in persons if p["score"] >= 0.5)


# --- judging stored scores (no model) ---------------------------------------------------


def test_person_judge_mismatch_names_both_counts_and_rejudges_by_todays_confidence():
    scores = {"person_expected": 2, "person_detections": [[0.9, 0, 0, 5, 5], [0.6, 1, 1, 4, 4], [0.4, 2, 2, 3, 3]]}
    result = PersonValidator.judge_scores(scores, Thresholds(), {})
    assert result.passed and result.scores["person_count"] == 2 and result.reason == "Person count matches: 2"
    stricter = PersonValidator.judge_scores(scores, Thresholds(), {"confidence": 0.7})
    assert not stricter.passed and stricter.reason == "Person count mismatch: expected 2, detected 1"
    told = PersonValidator.judge_scores(scores, Thresholds(), {"confidence": 0.3, "expected": 3})
    assert told.passed
    assert PersonValidator.judge_scores({"person_expected": None, "person_detections": []}, Thresholds()).passed
    assert not PersonValidator.judge_scores({"error": "Cannot read image x"}, Thresholds()).passed


def test_content_fails_only_on_a_subject_count_mismatch():
    base = {"content_expected": 2, "content_subject": "women", "content_caption": "two women",
            "content_answers": {"How many people are in the picture?": "2"}, "content_count": 2,
            "content_colours": {"red": False}, "content_attributes": {"smiling": True}}
    ok = ContentValidator.judge_scores(base, Thresholds())
    assert ok.passed and ok.reason == "Content matches the prompt (not seen: red)"
    wrong = ContentValidator.judge_scores({**base, "content_count": 3}, Thresholds())
    assert not wrong.passed and "asks for 2 women(s), the image shows 3" in wrong.reason
    assert ContentValidator.judge_scores({**base, "content_count": None}, Thresholds()).passed
    assert ContentValidator.judge_scores({**base, "content_expected": None, "content_count": 5}, Thresholds()).passed
    assert not ContentValidator.judge_scores({"error": "boom"}, Thresholds()).passed


def test_plan_rejudges_people_scores_with_new_options_without_loading(monkeypatch):
    stored = [{"validator": "person", "passed": True, "reason": "",
               "scores": {"person_expected": 1, "person_detections": [[0.8, 0, 0, 1, 1], [0.55, 0, 0, 1, 1]]}}]
    # No model folders exist: rejudging must not try to load anything.
    settings = Settings(person_detector_model="/nonexistent/detector")
    plan = ValidationPlan.from_options(validate=True, checks=[{"name": "person", "confidence": 0.6}])
    (verdict,) = plan.rejudger(settings).rejudge(stored)
    assert verdict.passed and verdict.scores["person_count"] == 1


@pytest.mark.parametrize("spec, message", [
    ({"name": "person", "confidence": 2}, "confidence: expected a number in (0, 1], got 2"),
    ({"name": "person", "expected": -1}, "expected: a person count >= 0, got -1"),
    ({"name": "pose", "min_visible": "most"}, "min_visible: expected a number 0-1, got 'most'"),
    ({"name": "pose", "glow": 1}, "unknown option(s) glow (pose takes: confidence, keypoint_threshold"),
    ({"name": "content", "confidence": 0.5}, "unknown option(s) confidence (content takes: expected)"),
])
def test_bad_options_name_the_check_and_option(spec, message):
    with pytest.raises(UsageError) as err:
        build_checks([spec])
    assert message in err.value.message


def test_the_checks_are_registered():
    assert {"person", "pose", "content"} <= set(list_validators())


# --- the model path on tiny models -----------------------------------------------------


@pytest.fixture
def people_settings(tiny_people_models: dict[str, Path]) -> Settings:
    clear_cache()
    yield Settings(**{k: str(v) for k, v in tiny_people_models.items()}, validator_device="cpu")
    clear_cache()


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> list[Path]:
    from PIL import Image

    folder = tmp_path_factory.mktemp("people-images")
    paths = [folder / "a.png", folder / "b.png"]
    Image.new("RGB", (96, 64), (200, 40, 40)).save(paths[0])
    Image.new("RGB", (64, 80), (20, 60, 200)).save(paths[1])
    return paths


def test_person_and_pose_run_through_the_plan_on_tiny_models(people_settings, pictures):
    plan = ValidationPlan.from_options(validate=True, checks=["person", "pose"])
    with plan.prepare(people_settings) as prepared:
        three = prepared.judge(pictures[0], "three people on a bench")
        two = prepared.judge(pictures[1], "two women in a park")
    assert [(v.validator, v.passed) for v in three] == [("person", True), ("pose", True)]
    person, pose = three
    assert person.scores["person_count"] == 3 and person.scores["person_expected"] == 3
    for det in person.scores["person_detections"]:
        score, x0, y0, x1, y1 = det
        assert 0.5 <= score <= 1 and 0 <= x0 <= x1 <= 96 and 0 <= y0 <= y1 <= 64
    assert pose.scores["pose_person_count"] == 3 and len(pose.scores["pose_persons"]) == 3
    assert set(pose.scores["pose_persons"][0]["keypoints"]) == set(KEY_LANDMARKS)
    assert [v.passed for v in two] == [False, False]
    assert two[0].reason == "Person count mismatch: expected 2, detected 3"


def test_batches_and_unreadable_images(people_settings, pictures, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    validator = PersonValidator.load(people_settings)
    scores = validator.score_many([pictures[0], bad, pictures[1]], "a solo portrait")
    assert [len(s.get("person_detections", [])) for s in scores] == [3, 0, 3]
    assert "Cannot read image" in scores[1]["error"]
    assert not PersonValidator.judge_scores(scores[1], Thresholds()).passed
    # The model is loaded once per process: the pose check shares the detector.
    assert PoseValidator.load(people_settings).detector is validator.detector


def test_content_returns_well_formed_scores_on_tiny_blip(people_settings, pictures):
    validator = ContentValidator.load(people_settings)
    (score,) = validator.score_many([pictures[0]], "two women in red")
    assert isinstance(score["content_caption"], str)
    assert set(score["content_answers"]) == {"How many people are in the picture?",
                                             "Is there anything red in the picture?"}
    assert score["content_expected"] == 2 and set(score["content_colours"]) == {"red"}
    assert isinstance(ContentValidator.judge_scores(score, Thresholds()).passed, bool)


@pytest.mark.parametrize("setting, check", [
    ("person_detector_model", "person"), ("pose_model", "pose"),
    ("content_caption_model", "content"), ("content_vqa_model", "content"),
])
def test_a_missing_model_folder_names_its_setting(setting, check, tiny_people_models, tmp_path):
    clear_cache()
    values = {k: str(v) for k, v in tiny_people_models.items()}
    values[setting] = str(tmp_path / "nowhere")
    settings = Settings(**values, validator_device="cpu")
    plan = ValidationPlan.from_options(validate=True, checks=[check])
    with pytest.raises(ValidatorUnavailable) as err:
        plan.prepare(settings)
    assert setting in err.value.message and "model folder not found" in err.value.message
    assert f"COMFY_GEN_{setting.upper()}" in (err.value.hint or "")
    skipped = ValidationPlan.from_options(validate=True, checks=[check], allow_skip=True).prepare(settings)
    assert skipped.skipped and "VALIDATION SKIPPED" in skipped.warnings[0] and setting in skipped.warnings[0]


def test_an_uncached_hub_id_fails_fast_when_offline(tmp_path):
    clear_cache()
    settings = Settings(person_detector_model="example-org/no-such-detector", validator_device="cpu")
    with pytest.raises(ValidatorUnavailable) as err:
        PersonValidator.load(settings)
    assert "person_detector_model" in err.value.message and "HF_HUB_OFFLINE" in err.value.message


def test_a_detector_without_a_person_label_is_refused(tmp_path):
    from tests.fixtures.people import build_detr_folder

    folder = build_detr_folder(tmp_path / "cars")
    import json

    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {k: ("car" if v == "person" else v) for k, v in config["id2label"].items()}
    config["label2id"] = {v: int(k) for k, v in config["id2label"].items()}
    (folder / "config.json").write_text(json.dumps(config))
    clear_cache()
    with pytest.raises(ValidatorUnavailable) as err:
        PersonValidator.load(Settings(person_detector_model=str(folder), validator_device="cpu"))
    assert "has no 'person' label" in err.value.message
    clear_cache()


def test_the_default_detector_loads_its_no_timm_branch_from_the_hub_cache(tiny_people_models, tmp_path):
    """The default id (facebook/detr-resnet-50) is read at revision no_timm from a hub
    cache laid out as huggingface_hub writes it (refs/<branch> -> snapshots/<commit>)."""
    import os
    import shutil
    import subprocess
    import sys

    repo = tmp_path / "hub" / "models--facebook--detr-resnet-50"
    commit = "0" * 39 + "1"
    shutil.copytree(tiny_people_models["person_detector_model"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "no_timm").write_text(commit)
    script = ("from comfy_gen.config import Settings\n"
              "from comfy_gen.validation.people import PersonValidator\n"
              "v = PersonValidator.load(Settings(validator_device='cpu'))\n"
              "print(sorted(v.detector.person_ids))\n")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("COMFY_GEN_PERSON_DETECTOR_MODEL", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[1]"


def test_a_model_failure_fails_its_images_never_passes_them(people_settings, pictures, monkeypatch):
    validator = PersonValidator.load(people_settings)

    def out_of_memory(*args, **kwargs):  # what a CUDA OOM looks like; it cannot happen on this CPU
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(validator.detector, "detect", out_of_memory)
    scores = validator.score_many(pictures, "a solo portrait")
    assert all(s["error"] == "person detection failed: CUDA out of memory" for s in scores)
    assert not any(PersonValidator.judge_scores(s, Thresholds()).passed for s in scores)
