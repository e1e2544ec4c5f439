"""The ``content`` check: does a captioning / question-answering model see what the prompt asks for?

BLIP through ``transformers``: a caption (``content_caption_model``,
``BlipForConditionalGeneration``) and answers (``content_vqa_model``,
``BlipForQuestionAnswering``) to questions built from the prompt
(``extract_content``): "How many people are in the picture?", "Is there anything
<colour> in the picture?" for up to 3 colours it names, "Is the <subject> <attribute>?"
for up to 3 attributes. Each question is asked of a whole batch at once.

Only a subject-count mismatch fails (the prompt's count from
``expected_person_count`` against the parsed answer); colours and attributes are
reported. A model that cannot load fails preflight like any validator (it never
passes silently), and an image that cannot be read fails its check.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from comfy_gen.validation.base import BaseValidator, ImageInput, Thresholds, ValidationResult, register_validator
from comfy_gen.validation.hfload import device_for, load_cached
from comfy_gen.validation.people import (
    NUMBER_WORDS,
    PERSON_TERMS,
    broadcast_prompts,
    check_options,
    expected_person_count,
    fail_all,
    open_all,
    parse_expected,
)

if TYPE_CHECKING:
    from PIL.Image import Image

    from comfy_gen.config import Settings

COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "gray", "grey",
           "gold", "silver")
ATTRIBUTES = ("smiling", "laughing", "standing", "sitting", "walking", "running", "dancing", "jumping", "lying",
              "kneeling", "young", "old", "elderly", "happy", "sad", "angry")
MAX_COLOUR_QUESTIONS = 3
MAX_ATTRIBUTE_QUESTIONS = 3
COUNT_QUESTION = "How many people are in the picture?"
_WORD = re.compile(r"[a-z]+|\d+")
_ZERO = {"none", "no", "zero", "nobody", "nothing"}
#: Generation budget: BLIP's answers are a word or two, captions a short sentence.
ANSWER_TOKENS = 8
CAPTION_TOKENS = 30


@dataclass(frozen=True)
class ContentSpec:
    """What the prompt says about content: subject count and type, colours, attributes."""

    count: int | None = None
    subject: str = "subject"
    colours: tuple[str, ...] = ()
    attributes: tuple[str, ...] = ()
    questions: tuple[str, ...] = field(default=())


def extract_content(prompt: str | None) -> ContentSpec:
    """The count (``expected_person_count``), the first person term as subject, and the
    colours and attributes the prompt names (in prompt order), with their questions."""
    words = _WORD.findall((prompt or "").lower())
    subject = next((w for w in words if w in PERSON_TERMS), "subject")
    colours = tuple(dict.fromkeys(w for w in words if w in COLOURS))[:MAX_COLOUR_QUESTIONS]
    attributes = tuple(dict.fromkeys(w for w in words if w in ATTRIBUTES))[:MAX_ATTRIBUTE_QUESTIONS]
    questions = (COUNT_QUESTION,
                 *(f"Is there anything {c} in the picture?" for c in colours),
                 *(f"Is the {subject} {a}?" for a in attributes))
    return ContentSpec(expected_person_count(prompt), subject, colours, attributes, questions)


def parse_count_answer(answer: str | None) -> int | None:
    """A count from a short answer ("2", "two", "none" -> 0); None when it gives none."""
    for word in _WORD.findall((answer or "").lower()):
        if word.isdigit():
            return int(word)
        if word in NUMBER_WORDS:
            return NUMBER_WORDS[word]
        if word in _ZERO:
            return 0
    return None


def parse_yes_no(answer: str | None) -> bool | None:
    words = _WORD.findall((answer or "").lower())
    if not words:
        return None
    return True if words[0] in ("yes", "yeah", "yep") else False if words[0] in ("no", "nope") else None


class Blip:
    """A loaded BLIP captioner or question answerer with its processor."""

    def __init__(self, model: Any, processor: Any, device: str, model_name: str) -> None:
        self.model, self.processor, self.device, self.model_name = model, processor, device, model_name
        self._lock = threading.Lock()

    @classmethod
    def load(cls, settings: "Settings", setting: str) -> "Blip":
        name = str(getattr(settings, setting))
        device = device_for(settings)

        def build(source: str, local_only: bool, revision: str | None) -> Blip:
            from transformers import AutoProcessor, BlipForConditionalGeneration, BlipForQuestionAnswering

            model_class: Any = (BlipForQuestionAnswering if setting == "content_vqa_model"
                                else BlipForConditionalGeneration)
            model = model_class.from_pretrained(source, local_files_only=local_only)
            load_processor: Any = AutoProcessor.from_pretrained  # untyped upstream
            return cls(model.to(device).eval(), load_processor(source, local_files_only=local_only), device, name)

        return load_cached(setting, "content", name, device, build)

    def generate(self, images: Sequence["Image"], texts: Sequence[str] | None, max_new_tokens: int) -> list[str]:
        """One decoded string per image (a caption, or the answer to its question)."""
        import torch

        kwargs: dict[str, Any] = {"images": list(images), "return_tensors": "pt"}
        if texts is not None:
            kwargs.update(text=list(texts), padding=True)
        with self._lock, torch.inference_mode():
            inputs = self.processor(**kwargs).to(self.device)
            output = self.model.generate(**inputs, max_new_tokens=max_new_tokens)
        return [str(t).strip() for t in self.processor.batch_decode(output, skip_special_tokens=True)]


@register_validator("content")
class ContentValidator(BaseValidator):
    """The content check; option ``expected`` (a person count; else from the prompt)."""

    name = "content"
    label = "content"
    OPTIONS = ("expected",)

    def __init__(self, captioner: Blip, vqa: Blip, options: Mapping[str, Any] | None = None) -> None:
        self.captioner, self.vqa = captioner, vqa
        self.options = dict(options or {})

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        check_options(cls.name, options, cls.OPTIONS)
        return {"expected": parse_expected(options)} if options.get("expected") is not None else {}

    @classmethod
    def load(cls, settings: "Settings", options: Mapping[str, Any] | None = None) -> "ContentValidator":
        return cls(Blip.load(settings, "content_caption_model"), Blip.load(settings, "content_vqa_model"), options)

    def score_many(self, images: Sequence[ImageInput], prompts: Sequence[str] | str,
                   negatives: Sequence[str | None] | str | None = None) -> list[dict[str, Any]]:
        """``content_caption``, ``content_answers`` ({question: answer}), the parsed
        ``content_count``, ``content_expected``, and colours/attributes confirmed or not."""
        texts = broadcast_prompts(prompts, len(images))
        results: list[dict[str, Any]] = [{} for _ in images]
        opened = open_all(images, results, self.name)
        if not opened:
            return results
        specs = [extract_content(texts[i]) for i, _ in opened]
        pil = [img for _, img in opened]
        answers: list[dict[str, str]] = [{} for _ in opened]
        try:
            captions = self.captioner.generate(pil, None, CAPTION_TOKENS)
            # Ask question k of every image that has one: one batched generate per question slot.
            for k in range(max(len(s.questions) for s in specs)):
                rows = [j for j, s in enumerate(specs) if k < len(s.questions)]
                replies = self.vqa.generate([pil[j] for j in rows], [specs[j].questions[k] for j in rows],
                                            ANSWER_TOKENS)
                for j, reply in zip(rows, replies):
                    answers[j][specs[j].questions[k]] = reply
        except RuntimeError as exc:  # e.g. CUDA out of memory: fail these images, never pass them
            return fail_all(results, opened, self.name, f"content check failed: {exc}")
        for (i, _), spec, caption, said in zip(opened, specs, captions, answers):
            count_answer = said.get(COUNT_QUESTION)
            results[i] = {
                "content_caption": caption, "content_answers": said, "content_subject": spec.subject,
                "content_expected": spec.count, "content_count": parse_count_answer(count_answer),
                "content_colours": {c: parse_yes_no(said.get(f"Is there anything {c} in the picture?"))
                                    for c in spec.colours},
                "content_attributes": {a: parse_yes_no(said.get(f"Is the {spec.subject} {a}?"))
                                       for a in spec.attributes},
            }
        return results

    @classmethod
    def judge_scores(cls, score: Mapping[str, Any], thresholds: Thresholds,
                     options: Mapping[str, Any] | None = None) -> ValidationResult:
        """Fails on an error or a subject-count mismatch only."""
        options = options or {}
        scores = dict(score)
        if scores.get("error"):
            return ValidationResult(False, f"Content check failed: {scores['error']}", scores, cls.name, thresholds)
        expected = options.get("expected", scores.get("content_expected"))
        seen = scores.get("content_count")
        missing = [c for c, ok in (scores.get("content_colours") or {}).items() if ok is False]
        missing += [a for a, ok in (scores.get("content_attributes") or {}).items() if ok is False]
        note = f" (not seen: {', '.join(missing)})" if missing else ""
        if expected is not None and seen is not None and int(seen) != int(expected):
            scores["content_match"] = False
            return ValidationResult(False, f"Content mismatch: the prompt asks for {expected} {scores.get('content_subject', 'subject')}(s), "
                                           f"the image shows {seen}{note}", scores, cls.name, thresholds)
        scores["content_match"] = True
        if expected is not None and seen is None:
            reason = f"Content: no count in the answer {scores.get('content_answers', {}).get(COUNT_QUESTION)!r}{note}"
        else:
            reason = f"Content matches the prompt{note}"
        return ValidationResult(True, reason, scores, cls.name, thresholds)

    @classmethod
    def rank_key(cls, scores: Mapping[str, Any]) -> tuple[float, ...]:
        """Matching count first, then more colours and attributes confirmed."""
        if scores.get("error"):
            return (0, float("-inf"), float("-inf"))
        expected, seen = scores.get("content_expected"), scores.get("content_count")
        match = 0.0 if expected is None or seen is None else -abs(int(seen) - int(expected))
        confirmed = sum(1 for ok in {**(scores.get("content_colours") or {}),
                                     **(scores.get("content_attributes") or {})}.values() if ok)
        return (1, match, float(confirmed))
