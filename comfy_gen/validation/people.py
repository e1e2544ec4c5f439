"""The ``person`` check: how many people the prompt asks for, how many a detector sees.

Expected count, from the positive prompt (``expected_person_count``): every
"<number> [up to two words] <person term>" (number words one..ten or digits; terms
person/people/woman/women/man/men/individual(s)/subject(s)) adds its number, so
"two women and three men" expects 5; else "group of N"; else "solo"/"single" -> 1;
else no expectation (the check passes and reports what it saw).

Detection: a ``transformers`` object detector (``person_detector_model``, COCO
DETR by default) through ``AutoModelForObjectDetection``; boxes of the label
"person" at ``confidence`` (0.5) count. Scores keep every person box down to a
lower floor, so a stored result re-judges under a changed confidence without
running the model again. The detector is shared with the ``pose`` check (one
model per process, and one detection per image file while it is unchanged).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from comfy_gen.errors import UsageError, ValidatorUnavailable
from comfy_gen.validation.base import (
    BaseValidator,
    ImageInput,
    Thresholds,
    ValidationResult,
    register_validator,
)
from comfy_gen.validation.hfload import device_for, load_cached, unavailable_hint

if TYPE_CHECKING:
    from PIL.Image import Image

    from comfy_gen.config import Settings

NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                "nine": 9, "ten": 10}
PERSON_TERMS = ("person", "persons", "people", "woman", "women", "man", "men", "individual", "individuals",
                "subject", "subjects")
#: Words that end a "<number> ... <term>" phrase: "two dogs and a man" is not two men.
_BREAKS = {"and", "or", "with", "of", "plus", "beside", "near", "next", "behind", "in", "on", "at", "to", "a",
           "an", "the", "by", "from", "for"}
_NUMBER = r"(\d+|" + "|".join(NUMBER_WORDS) + r")"
_COUNTED = re.compile(_NUMBER + r"((?:\s+[a-z\-]+){0,2}?)\s+(" + "|".join(PERSON_TERMS) + r")\b")
_GROUP = re.compile(r"\bgroup\s+of\s+" + _NUMBER + r"\b")
_SOLO = re.compile(r"\b(solo|single)\b")

#: Default detector confidence (the original's YOLO conf >= 0.5).
DEFAULT_CONFIDENCE = 0.5
#: Person boxes kept in the scores down to this score (or the confidence, when lower).
DETECTION_FLOOR = 0.3
#: Hub branches used when ``person_detector_revision`` is unset: the main branch of
#: facebook/detr-resnet-50 wants a timm backbone (timm needs torchvision); its
#: no_timm branch is the same weights on transformers' own ResNet.
DEFAULT_REVISIONS = {"facebook/detr-resnet-50": "no_timm"}


def _number(token: str) -> int:
    return int(token) if token.isdigit() else NUMBER_WORDS[token]


def expected_person_count(prompt: str | None) -> int | None:
    """People the prompt asks for (module docstring), or None when it does not say."""
    text = (prompt or "").lower()
    total, found = 0, False
    for match in _COUNTED.finditer(text):
        start = match.start()
        if start > 0 and (text[start - 1].isalnum()):
            continue  # "someone", "2023"
        between = match.group(2).split()
        if any(word in _BREAKS for word in between):
            continue
        total += _number(match.group(1))
        found = True
    if found:
        return total
    group = _GROUP.search(text)
    if group:
        return _number(group.group(1))
    return 1 if _SOLO.search(text) else None


def count_detections(detections: Sequence[Sequence[float]], confidence: float) -> int:
    """Detections ``[score, x0, y0, x1, y1]`` at or above ``confidence``."""
    return sum(1 for d in detections if float(d[0]) >= confidence)


def parse_confidence(options: Mapping[str, Any], name: str = "confidence") -> float:
    value = options.get(name, DEFAULT_CONFIDENCE)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise UsageError(f"{name}: expected a number in (0, 1], got {value!r}")
    return float(value)


def parse_expected(options: Mapping[str, Any]) -> int | None:
    value = options.get("expected")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(f"expected: a person count >= 0, got {value!r}")
    return value


def check_options(check: str, options: Mapping[str, Any], allowed: Sequence[str]) -> None:
    unknown = set(options) - set(allowed)
    if unknown:
        raise UsageError(f"unknown option(s) {', '.join(sorted(unknown))} ({check} takes: {', '.join(allowed)})")


def open_rgb(image: ImageInput) -> "Image":
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    with Image.open(Path(image)) as img:
        return img.convert("RGB")


def image_key(image: ImageInput) -> tuple[str, int, int] | None:
    """Identity of an image file while unchanged (path, mtime, size); None for an in-memory image."""
    if not isinstance(image, (str, Path)):
        return None
    try:
        stat = Path(image).stat()
    except OSError:
        return None
    return str(Path(image).resolve()), stat.st_mtime_ns, stat.st_size


class Detector:
    """A loaded object detector: person boxes per image, batched; a small memo so
    the person and pose checks of one image run the model once."""

    MEMO_SIZE = 64

    def __init__(self, model: Any, processor: Any, device: str, model_name: str) -> None:
        self.model, self.processor, self.device, self.model_name = model, processor, device, model_name
        labels = {int(k): str(v).lower() for k, v in (model.config.id2label or {}).items()}
        self.person_ids = {k for k, v in labels.items() if v == "person"}
        if not self.person_ids:
            raise ValidatorUnavailable(
                f"person_detector_model ({model_name!r}) has no 'person' label; use a COCO-trained detector",
                hint=unavailable_hint("person_detector_model", "person"))
        self._lock = threading.Lock()
        self._memo: OrderedDict[tuple[Any, ...], list[list[float]]] = OrderedDict()

    @classmethod
    def load(cls, settings: "Settings") -> "Detector":
        name = settings.person_detector_model
        revision = settings.person_detector_revision or DEFAULT_REVISIONS.get(name)
        device = device_for(settings)

        def build(source: str, local_only: bool, rev: str | None) -> Detector:
            from transformers import AutoImageProcessor, AutoModelForObjectDetection

            kwargs: dict[str, Any] = {"local_files_only": local_only}
            if rev:
                kwargs["revision"] = rev
            model: Any = AutoModelForObjectDetection.from_pretrained(source, **kwargs)
            load_processor: Any = AutoImageProcessor.from_pretrained  # untyped upstream
            return cls(model.to(device).eval(), load_processor(source, **kwargs), device, name)

        return load_cached("person_detector_model", "person", name, device, build, revision=revision)

    def detect(self, images: Sequence["Image"], keys: Sequence[tuple[Any, ...] | None],
               floor: float) -> list[list[list[float]]]:
        """Per image, person detections ``[score, x0, y0, x1, y1]`` (pixels) with score
        >= ``floor``, best first. One forward pass for the images not memoised."""
        import torch

        out: list[list[list[float]] | None] = [None] * len(images)
        todo: list[int] = []
        with self._lock:
            for i, key in enumerate(keys):
                hit = self._memo.get((*key, floor)) if key is not None else None
                if hit is not None:
                    out[i] = hit
                else:
                    todo.append(i)
            if todo:
                batch = [images[i] for i in todo]
                inputs = self.processor(images=batch, return_tensors="pt").to(self.device)
                with torch.inference_mode():
                    outputs = self.model(**inputs)
                sizes = [(img.height, img.width) for img in batch]
                results = self.processor.post_process_object_detection(outputs, threshold=floor, target_sizes=sizes)
                for i, result in zip(todo, results):
                    found = [[round(float(s), 4), *(round(float(c), 1) for c in box)]
                             for s, label, box in zip(result["scores"], result["labels"], result["boxes"])
                             if int(label) in self.person_ids]
                    found.sort(key=lambda d: -d[0])
                    out[i] = found
                    key = keys[i]
                    if key is not None:
                        self._memo[(*key, floor)] = found
                        while len(self._memo) > self.MEMO_SIZE:
                            self._memo.popitem(last=False)
        return [o or [] for o in out]


def broadcast_prompts(prompts: Sequence[str] | str, n: int) -> list[str]:
    if isinstance(prompts, str):
        return [prompts] * n
    values = list(prompts)
    if len(values) != n:
        raise ValueError(f"prompts: expected {n} values (one per image), got {len(values)}")
    return [p or "" for p in values]


def open_all(images: Sequence[ImageInput], results: list[dict[str, Any]],
             label: str) -> list[tuple[int, "Image"]]:
    """Open every image; unreadable ones get an ``error`` score (never a silent pass)."""
    opened = []
    for i, image in enumerate(images):
        try:
            opened.append((i, open_rgb(image)))
        except (OSError, ValueError) as exc:
            message = f"Cannot read image {image}: {exc}"
            # "error" is the validator contract; the prefixed copy survives merge_scores' flat dict.
            results[i] = {"error": message, f"{label}_error": message}
    return opened


def fail_all(results: list[dict[str, Any]], opened: Sequence[tuple[int, Any]], label: str,
             message: str) -> list[dict[str, Any]]:
    """Mark every opened image as not scored (the model failed on their batch)."""
    for i, _ in opened:
        results[i] = {"error": message, f"{label}_error": message}
    return results


@register_validator("person")
class PersonValidator(BaseValidator):
    """The person-count check; options ``confidence`` (0.5) and ``expected`` (else from the prompt)."""

    name = "person"
    label = "person count"
    OPTIONS = ("confidence", "expected")

    def __init__(self, detector: Detector, options: Mapping[str, Any] | None = None) -> None:
        self.detector = detector
        self.options = dict(options or {})

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        check_options(cls.name, options, cls.OPTIONS)
        parsed: dict[str, Any] = {}
        if "confidence" in options:
            parsed["confidence"] = parse_confidence(options)
        if options.get("expected") is not None:
            parsed["expected"] = parse_expected(options)
        return parsed

    @classmethod
    def load(cls, settings: "Settings", options: Mapping[str, Any] | None = None) -> "PersonValidator":
        return cls(Detector.load(settings), options)

    def score_many(self, images: Sequence[ImageInput], prompts: Sequence[str] | str,
                   negatives: Sequence[str | None] | str | None = None) -> list[dict[str, Any]]:
        """``person_detections`` (score and box, best first), ``person_expected`` (from the prompt)."""
        texts = broadcast_prompts(prompts, len(images))
        results: list[dict[str, Any]] = [{} for _ in images]
        opened = open_all(images, results, self.name)
        floor = min(DETECTION_FLOOR, float(self.options.get("confidence", DEFAULT_CONFIDENCE)))
        if opened:
            try:
                found = self.detector.detect([img for _, img in opened], [image_key(images[i]) for i, _ in opened],
                                             floor)
            except RuntimeError as exc:  # e.g. CUDA out of memory: fail these images, never pass them
                return fail_all(results, opened, self.name, f"person detection failed: {exc}")
            for (i, _), detections in zip(opened, found):
                results[i] = {"person_expected": expected_person_count(texts[i]), "person_detections": detections}
        return results

    @classmethod
    def judge_scores(cls, score: Mapping[str, Any], thresholds: Thresholds,
                     options: Mapping[str, Any] | None = None) -> ValidationResult:
        """Mismatch fails: "Person count mismatch: expected X, detected Y"."""
        options = options or {}
        scores = dict(score)
        if scores.get("error"):
            return ValidationResult(False, f"Person detection failed: {scores['error']}", scores, cls.name, thresholds)
        confidence = float(options.get("confidence", DEFAULT_CONFIDENCE))
        expected = options.get("expected", scores.get("person_expected"))
        detected = count_detections(scores.get("person_detections") or [], confidence)
        scores.update(person_count=detected, person_confidence=confidence)
        if expected is None:
            return ValidationResult(True, f"No person count in the prompt (detected {detected})", scores,
                                    cls.name, thresholds)
        if detected != int(expected):
            return ValidationResult(False, f"Person count mismatch: expected {expected}, detected {detected}",
                                    scores, cls.name, thresholds)
        return ValidationResult(True, f"Person count matches: {detected}", scores, cls.name, thresholds)

    @classmethod
    def rank_key(cls, scores: Mapping[str, Any]) -> tuple[float, ...]:
        """Closer to the expected count is better; unscored last."""
        if scores.get("error"):
            return (0, float("-inf"))
        expected = scores.get("person_expected")
        detected = scores.get("person_count", len(scores.get("person_detections") or []))
        return (1, 0.0 if expected is None else -abs(int(detected) - int(expected)))
