"""The ``pose`` check: is every detected person's body coherent?

Person boxes come from the ``person`` check's detector; a keypoint model
(``pose_model``, ViTPose by default, through ``VitPoseForPoseEstimation``) gives
the 17 COCO keypoints of each box, all boxes of a batch in one forward pass.

Coherence (``is_coherent``): of the 10 key landmarks (shoulders, elbows, wrists,
hips, knees), at least ``min_visible`` (60 %) have a score >= ``keypoint_threshold``
(0.5), and both shoulders and both hips are among them. The image is valid when
the person count matches the prompt's (when it gives one) and every person is
coherent; no person at all is valid only when the prompt expects none or says
nothing. Scores keep the 10 landmark scores of every box down to the detection
floor, so a stored result re-judges under changed options without the models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from comfy_gen.errors import UsageError
from comfy_gen.validation.base import BaseValidator, ImageInput, Thresholds, ValidationResult, register_validator
from comfy_gen.validation.hfload import device_for, load_cached
from comfy_gen.validation.people import (
    DEFAULT_CONFIDENCE,
    DETECTION_FLOOR,
    Detector,
    broadcast_prompts,
    check_options,
    count_detections,
    fail_all,
    expected_person_count,
    image_key,
    open_all,
    parse_confidence,
    parse_expected,
)

if TYPE_CHECKING:
    from PIL.Image import Image

    from comfy_gen.config import Settings

#: COCO keypoint order (ViTPose's 17 outputs).
COCO_KEYPOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                  "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
                  "left_knee", "right_knee", "left_ankle", "right_ankle")
#: The 10 landmarks the rule counts, and the four that must all be visible.
KEY_LANDMARKS = ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                 "left_hip", "right_hip", "left_knee", "right_knee")
REQUIRED = ("left_shoulder", "right_shoulder", "left_hip", "right_hip")
DEFAULT_KEYPOINT_THRESHOLD = 0.5
DEFAULT_MIN_VISIBLE = 0.6


def is_coherent(keypoints: Mapping[str, float], *, threshold: float = DEFAULT_KEYPOINT_THRESHOLD,
                min_visible: float = DEFAULT_MIN_VISIBLE) -> tuple[bool, list[str]]:
    """(coherent, the key landmarks below ``threshold``) for one person's landmark scores."""
    missing = [name for name in KEY_LANDMARKS if float(keypoints.get(name, 0.0)) < threshold]
    visible = len(KEY_LANDMARKS) - len(missing)
    coherent = visible >= min_visible * len(KEY_LANDMARKS) and not any(name in missing for name in REQUIRED)
    return coherent, missing


def judge_pose(persons: Sequence[Mapping[str, Any]], expected: int | None, *, confidence: float,
               threshold: float, min_visible: float) -> tuple[bool, str, dict[str, Any]]:
    """The image rule on stored persons (``score``, ``keypoints``): (valid, reason, derived scores)."""
    kept = [p for p in persons if float(p.get("score", 0.0)) >= confidence]
    verdicts = [is_coherent(p.get("keypoints") or {}, threshold=threshold, min_visible=min_visible) for p in kept]
    incoherent = [(i, missing) for i, (ok, missing) in enumerate(verdicts) if not ok]
    derived = {"pose_person_count": len(kept), "pose_coherent_count": len(kept) - len(incoherent),
               "pose_incoherent": [{"person": i, "missing": missing} for i, missing in incoherent]}
    if expected is not None and len(kept) != expected:
        return False, f"Pose: person count mismatch: expected {expected}, detected {len(kept)}", derived
    if incoherent:
        i, missing = incoherent[0]
        shown = len(KEY_LANDMARKS) - len(missing)
        return (False, f"Incoherent pose: person {i + 1} of {len(kept)} has {shown}/{len(KEY_LANDMARKS)} key "
                       f"landmarks (missing {', '.join(missing)})", derived)
    if not kept:
        return True, "No person to check" if expected is None else "No person, as the prompt expects", derived
    return True, f"Coherent pose: {len(kept)} person(s)", derived


def _fraction(options: Mapping[str, Any], name: str, default: float) -> float:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise UsageError(f"{name}: expected a number 0-1, got {value!r}")
    return float(value)


class PoseModel:
    """A loaded keypoint model and its processor."""

    def __init__(self, model: Any, processor: Any, device: str, model_name: str) -> None:
        self.model, self.processor, self.device, self.model_name = model, processor, device, model_name

    @classmethod
    def load(cls, settings: "Settings") -> "PoseModel":
        name = settings.pose_model
        device = device_for(settings)

        def build(source: str, local_only: bool, revision: str | None) -> PoseModel:
            from transformers import AutoImageProcessor, VitPoseForPoseEstimation

            model: Any = VitPoseForPoseEstimation.from_pretrained(source, local_files_only=local_only)
            load_processor: Any = AutoImageProcessor.from_pretrained  # untyped upstream
            return cls(model.to(device).eval(), load_processor(source, local_files_only=local_only), device, name)

        return load_cached("pose_model", "pose", name, device, build)

    def keypoints(self, images: Sequence["Image"], boxes: Sequence[Sequence[Sequence[float]]]) -> list[list[list[float]]]:
        """Per image, per box (COCO x, y, w, h), the 17 keypoint scores; one forward pass."""
        import torch

        todo = [i for i, b in enumerate(boxes) if b]
        out: list[list[list[float]]] = [[] for _ in images]
        if not todo:
            return out
        sub_images = [images[i] for i in todo]
        sub_boxes = [[list(map(float, box)) for box in boxes[i]] for i in todo]
        inputs = self.processor(sub_images, boxes=sub_boxes, return_tensors="pt").to(self.device)
        kwargs: dict[str, Any] = {}
        if getattr(self.model.config.backbone_config, "num_experts", 1) > 1:
            # ViTPose++ picks a dataset head per box; 0 is COCO.
            kwargs["dataset_index"] = torch.zeros(inputs["pixel_values"].shape[0], dtype=torch.long,
                                                  device=self.device)
        with torch.inference_mode():
            outputs = self.model(**inputs, **kwargs)
        results = self.processor.post_process_pose_estimation(outputs, boxes=sub_boxes)
        for i, persons in zip(todo, results):
            out[i] = [[float(s) for s in person["scores"].reshape(-1).tolist()] for person in persons]
        return out


@register_validator("pose")
class PoseValidator(BaseValidator):
    """The pose-coherence check; options ``confidence`` (0.5), ``keypoint_threshold``
    (0.5), ``min_visible`` (0.6) and ``expected`` (else from the prompt)."""

    name = "pose"
    label = "pose"
    OPTIONS = ("confidence", "keypoint_threshold", "min_visible", "expected")

    def __init__(self, detector: Detector, pose: PoseModel, options: Mapping[str, Any] | None = None) -> None:
        self.detector, self.pose = detector, pose
        self.options = dict(options or {})

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        check_options(cls.name, options, cls.OPTIONS)
        parsed: dict[str, Any] = {}
        if "confidence" in options:
            parsed["confidence"] = parse_confidence(options)
        for name, default in (("keypoint_threshold", DEFAULT_KEYPOINT_THRESHOLD), ("min_visible", DEFAULT_MIN_VISIBLE)):
            if name in options:
                parsed[name] = _fraction(options, name, default)
        if options.get("expected") is not None:
            parsed["expected"] = parse_expected(options)
        return parsed

    @classmethod
    def load(cls, settings: "Settings", options: Mapping[str, Any] | None = None) -> "PoseValidator":
        return cls(Detector.load(settings), PoseModel.load(settings), options)

    def score_many(self, images: Sequence[ImageInput], prompts: Sequence[str] | str,
                   negatives: Sequence[str | None] | str | None = None) -> list[dict[str, Any]]:
        """``pose_persons``: per detected person its detection score, box and the 10 key landmark scores."""
        texts = broadcast_prompts(prompts, len(images))
        results: list[dict[str, Any]] = [{} for _ in images]
        opened = open_all(images, results, self.name)
        if not opened:
            return results
        floor = min(DETECTION_FLOOR, float(self.options.get("confidence", DEFAULT_CONFIDENCE)))
        pil = [img for _, img in opened]
        # COCO boxes (x, y, w, h); a degenerate box gets 1 px so the crop's warp stays invertible.
        try:
            found = self.detector.detect(pil, [image_key(images[i]) for i, _ in opened], floor)
            coco_boxes = [[[d[1], d[2], max(1.0, d[3] - d[1]), max(1.0, d[4] - d[2])] for d in dets]
                          for dets in found]
            scores = self.pose.keypoints(pil, coco_boxes)
        except RuntimeError as exc:  # e.g. CUDA out of memory: fail these images, never pass them
            return fail_all(results, opened, self.name, f"pose estimation failed: {exc}")
        for (i, _), dets, per_person in zip(opened, found, scores):
            persons = []
            for det, kp in zip(dets, per_person):
                named = dict(zip(COCO_KEYPOINTS, kp))
                persons.append({"score": det[0], "box": det[1:],
                                "keypoints": {k: round(named.get(k, 0.0), 4) for k in KEY_LANDMARKS}})
            results[i] = {"pose_expected": expected_person_count(texts[i]), "pose_persons": persons}
        return results

    @classmethod
    def judge_scores(cls, score: Mapping[str, Any], thresholds: Thresholds,
                     options: Mapping[str, Any] | None = None) -> ValidationResult:
        options = options or {}
        scores = dict(score)
        if scores.get("error"):
            return ValidationResult(False, f"Pose estimation failed: {scores['error']}", scores, cls.name, thresholds)
        expected = options.get("expected", scores.get("pose_expected"))
        valid, reason, derived = judge_pose(
            scores.get("pose_persons") or [], None if expected is None else int(expected),
            confidence=float(options.get("confidence", DEFAULT_CONFIDENCE)),
            threshold=float(options.get("keypoint_threshold", DEFAULT_KEYPOINT_THRESHOLD)),
            min_visible=float(options.get("min_visible", DEFAULT_MIN_VISIBLE)))
        scores.update(derived, pose_valid=valid)
        return ValidationResult(valid, reason, scores, cls.name, thresholds)

    @classmethod
    def rank_key(cls, scores: Mapping[str, Any]) -> tuple[float, ...]:
        """More coherent people, then fewer incoherent ones; unscored last."""
        if scores.get("error"):
            return (0, float("-inf"), float("-inf"))
        persons = scores.get("pose_persons") or []
        coherent = sum(1 for p in persons if is_coherent(p.get("keypoints") or {})[0]
                       and float(p.get("score", 0)) >= DEFAULT_CONFIDENCE)
        return (1, float(coherent), -float(count_detections([[p.get("score", 0)] for p in persons],
                                                            DEFAULT_CONFIDENCE) - coherent))
