"""The validation plan: which validators judge an image, by which thresholds, and
what happens when one of them cannot be loaded.

A plan is built once, from a recipe's ``validation`` section (``from_config``) or
from the generate options (``from_options``), and prepared once per run
(``prepare`` loads each validator). Preflight, the generate path, the flow,
metadata and reporting all read the same objects::

    plan = ValidationPlan.from_config(recipe.validation)
    with plan.prepare(settings, batching=True) as prepared:  # ValidatorUnavailable unless allow_skip
        verdicts = prepared.judge("out.png", "a red car", "blurry")
        stored = prepared.rejudge(old_verdicts)              # new thresholds, no rendering
    plan.rejudger(settings).rejudge(old_verdicts)            # the same, nothing loaded

Each validator gives one ``Verdict``. An attempt keeps the list; ``merge_scores``
and ``overall`` give the flat ``scores`` / ``passed`` / ``reason`` that sidecars
and results have always carried (the first validator's keys win on a clash).
Validators are looked up in the registry (``register_validator``); the class
hooks of ``BaseValidator`` are all the plan calls, so a new validator is one
module and a registry entry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from comfy_gen.errors import UsageError, ValidatorUnavailable
from comfy_gen.validation.base import (
    BaseValidator,
    ImageInput,
    Thresholds,
    Validator,
    get_validator_class,
    list_validators,
)

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.config import Settings
    from comfy_gen.recipes.model import ValidationConfig
    from comfy_gen.validation.batching import BatchingScorer

log = logging.getLogger(__name__)

#: The validator a recipe or request gets when it names none.
DEFAULT_VALIDATOR = "clip"
#: The model-free checks every validating recipe and request gets (comfy_gen.validation.technical).
TECHNICAL = "technical"


def _spec_name(spec: Any) -> Any:
    return spec.get("name", spec.get("validator")) if isinstance(spec, Mapping) else spec


def with_technical(specs: Sequence[Any], technical: bool) -> list[Any]:
    """``specs`` with the technical check appended when ``technical`` and not already
    listed (a listed one keeps its options). The one rule for "on by default"."""
    specs = list(specs)
    if technical and not any(_spec_name(s) == TECHNICAL for s in specs):
        specs.append(TECHNICAL)
    return specs


@dataclass(frozen=True)
class Verdict:
    """One validator's judgement of one image; ``scores`` as the validator gave them."""

    validator: str
    passed: bool
    scores: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"validator": self.validator, "passed": self.passed, "scores": dict(self.scores),
                "reason": self.reason}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Verdict":
        return cls(validator=str(data.get("validator") or DEFAULT_VALIDATOR), passed=bool(data.get("passed")),
                   scores=dict(data.get("scores") or {}), reason=str(data.get("reason") or ""))


def merge_scores(verdicts: Sequence[Verdict]) -> dict[str, Any]:
    """Every verdict's scores in one dict; the first validator's keys win on a clash,
    so the primary validator's ``positive_score`` is the one sidecars show."""
    merged: dict[str, Any] = {}
    for verdict in reversed(verdicts):
        merged.update(verdict.scores)
    return merged


def overall(verdicts: Sequence[Verdict]) -> tuple[bool, str]:
    """Passed when every verdict passed; the reason is the first failure's (or the first verdict's)."""
    if not verdicts:
        raise ValueError("overall() needs at least one verdict")
    failed = next((v for v in verdicts if not v.passed), None)
    return failed is None, (failed or verdicts[0]).reason


def validation_block(verdicts: Sequence[Verdict]) -> dict[str, Any] | None:
    """The metadata's ``validation`` section: passed, reason, the merged scores
    (``positive_score`` ... for CLIP) and the verdicts; None when nothing judged."""
    if not verdicts:
        return None
    passed, reason = overall(verdicts)
    return {"passed": passed, "reason": reason, **merge_scores(verdicts),
            "verdicts": [v.to_dict() for v in verdicts]}


def _validator_class(name: str) -> type[BaseValidator]:
    try:
        return get_validator_class(name)
    except UsageError:
        # A verdict stored by a validator that is no longer registered still ranks.
        return BaseValidator


def rank_key(verdicts: Sequence[Verdict]) -> tuple[float, ...]:
    """Orders attempts with the same pass/fail outcome: each validator's own
    ``rank_key`` in plan order (CLIP: positive score, then delta; errors last)."""
    return tuple(x for v in verdicts for x in _validator_class(v.validator).rank_key(v.scores))


@dataclass(frozen=True)
class Check:
    """One validator of a plan, its thresholds (positive None = the validator's
    default) and its options (frozen, so plans stay hashable; ``opts`` as a dict)."""

    validator: str = DEFAULT_VALIDATOR
    thresholds: Thresholds = Thresholds()
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def opts(self) -> dict[str, Any]:
        return {key: _thaw(value) for key, value in self.options}

    @classmethod
    def make(cls, validator: str, thresholds: Thresholds = Thresholds(),
             options: Mapping[str, Any] | None = None) -> "Check":
        """A check with its options checked by the validator (UsageError when bad)."""
        kind = get_validator_class(validator)
        parsed = kind.parse_options(dict(options or {}))
        return cls(validator, thresholds, tuple(sorted((k, _freeze(v)) for k, v in parsed.items())))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"validator": self.validator, "positive_threshold": self.thresholds.positive,
                                "delta_threshold": self.thresholds.delta}
        if self.options:
            data["options"] = self.opts
        return data


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return ("__map__", tuple(sorted((str(k), _freeze(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        if len(value) == 2 and value[0] == "__map__":
            return {k: _thaw(v) for k, v in value[1]}
        return [_thaw(v) for v in value]
    return value


#: Keys of a check spec that are not validator options.
_SPEC_KEYS = frozenset({"name", "validator", "positive_threshold", "delta_threshold", "threshold"})


def build_checks(specs: Sequence[str | Mapping[str, Any]], *, default: Thresholds = Thresholds(),
                 default_validator: str = DEFAULT_VALIDATOR) -> tuple[Check, ...]:
    """Checks from specs: a validator name, or a mapping with ``name`` (or
    ``validator``), optional ``threshold``/``positive_threshold`` and
    ``delta_threshold``, and the validator's own options. ``default`` thresholds
    (a recipe section's, the generate flags') apply to ``default_validator``'s
    check when it gives none. UsageError names the check (``checks[i]``)."""
    checks: list[Check] = []
    seen: set[str] = set()
    for i, spec in enumerate(specs):
        where = f"checks[{i}]"
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, Mapping):
            raise UsageError(f"{where}: expected a validator name or a mapping with 'name'")
        name = spec.get("name", spec.get("validator"))
        if not isinstance(name, str) or not name:
            raise UsageError(f"{where}: missing 'name' (a validator: {', '.join(list_validators())})")
        if name in seen:
            raise UsageError(f"{where}: validator {name!r} is listed twice")
        seen.add(name)
        positive = spec.get("positive_threshold", spec.get("threshold"))
        delta = spec.get("delta_threshold")
        for key, value in (("positive_threshold", positive), ("delta_threshold", delta)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise UsageError(f"{where}.{key}: expected a number, got {value!r}")
        thresholds = Thresholds(None if positive is None else float(positive), None if delta is None else float(delta))
        if name == default_validator and positive is None and delta is None:
            thresholds = default
        options = {k: v for k, v in spec.items() if k not in _SPEC_KEYS}
        try:
            checks.append(Check.make(name, thresholds, options))
        except UsageError as exc:
            raise UsageError(f"{where}: {exc.message}") from None
    return tuple(checks)


def checked_specs(specs: Sequence[Any] | None, *, field: str) -> tuple[Any, ...]:
    """Check specs that arrived in a request (API body, MCP argument) now, before
    any job exists: UsageError naming ``field`` (``validation.checks[1]: ...``)."""
    if not specs:
        return ()
    if not isinstance(specs, (list, tuple)):
        raise UsageError(f"{field}: expected a list of validator names or {{name, ...}} objects")
    try:
        build_checks(list(specs))
    except UsageError as exc:
        message = exc.message[len("checks"):] if exc.message.startswith("checks") else f": {exc.message}"
        raise UsageError(f"{field}{message}") from None
    return tuple(dict(s) if isinstance(s, Mapping) else s for s in specs)


@dataclass(frozen=True)
class ValidationPlan:
    """Which validators judge each image, and whether a validator that cannot be
    loaded skips validation (``allow_skip``) instead of failing the run."""

    checks: tuple[Check, ...] = ()
    allow_skip: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.checks)

    @classmethod
    def from_config(cls, config: "ValidationConfig") -> "ValidationPlan":
        """The plan of a recipe's ``validation`` section (UsageError for an unknown validator)."""
        if not config.enabled:
            # ``technical: true`` validates without CLIP: the technical checks alone.
            checks = build_checks([TECHNICAL]) if config.technical else ()
            return cls(checks=checks, allow_skip=config.allow_skip)
        section = Thresholds(config.positive_threshold, config.delta_threshold)
        specs = with_technical(list(config.checks) or [config.validator], config.technical is not False)
        return cls(checks=build_checks(specs, default=section, default_validator=config.validator),
                   allow_skip=config.allow_skip)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "ValidationPlan":
        """The plan of a serialised ``validation`` section (``RecipeItem.validation``)."""
        from comfy_gen.recipes.model import ValidationConfig

        return cls.from_config(ValidationConfig.from_dict(data or {}))

    @classmethod
    def from_options(cls, *, validate: bool, positive_threshold: float | None = None,
                     delta_threshold: float | None = None, validator: str = DEFAULT_VALIDATOR,
                     allow_skip: bool = False,
                     checks: Sequence[str | Mapping[str, Any]] = (),
                     technical: bool = False) -> "ValidationPlan":
        """The plan of a single generate request (positive None = the validator's
        default). ``checks`` (specs as ``build_checks`` takes them) replace the
        single ``validator``; the thresholds given apply to its check. ``technical``
        appends the technical check when not listed (the service's default)."""
        if not validate:
            return cls(allow_skip=allow_skip)
        default = Thresholds(positive_threshold, delta_threshold)
        specs = with_technical(list(checks) or [validator], technical)
        return cls(checks=build_checks(specs, default=default, default_validator=validator),
                   allow_skip=allow_skip)

    def to_dict(self) -> dict[str, Any]:
        return {"checks": [c.to_dict() for c in self.checks], "allow_skip": self.allow_skip}

    def rejudger(self, settings: "Settings") -> "PreparedPlan":
        """The plan with its thresholds resolved and nothing loaded: ``rejudge`` works
        (stored scores judged by the current thresholds), ``judge`` does not. What a
        run uses until it knows something will be rendered and validated."""
        kinds = [(check, get_validator_class(check.validator)) for check in self.checks]
        return PreparedPlan(self, [_Prepared(c, k, _resolve(c.thresholds, k, settings), None) for c, k in kinds],
                            loaded=False)

    def prepare(self, settings: "Settings", *, batching: bool = False) -> "PreparedPlan":
        """Load every validator now, before anything renders.

        ``batching`` puts each behind a ``BatchingScorer`` so concurrent items share
        batches (close the prepared plan when done). A validator that cannot load
        raises ValidatorUnavailable, or with ``allow_skip`` gives a plan marked
        skipped whose ``warnings`` say so: its images are kept unvalidated.
        """
        kinds = [(check, get_validator_class(check.validator)) for check in self.checks]
        resolved = [(check, kind, _resolve(check.thresholds, kind, settings)) for check, kind in kinds]
        try:
            # Options only when a check has some: a validator written before checks had
            # options overrides ``load(settings)`` and keeps working.
            loaded = [kind.load(settings, check.opts) if check.options else kind.load(settings)
                      for check, kind, _ in resolved]
        except ValidatorUnavailable as exc:
            if not self.allow_skip:
                raise
            warning = (f"VALIDATION SKIPPED: {exc.message} (the recipe allows skipping validation; "
                       "images are kept unvalidated)")
            return PreparedPlan(self, [_Prepared(c, k, t, None) for c, k, t in resolved],
                                skipped=True, warnings=[warning])
        checks: list[_Prepared] = []
        # A validator that loaded only in part (the quality score's missing metrics)
        # says so in ``load_warnings``: the faces print them with the plan's own.
        warnings = [str(w) for v in loaded for w in getattr(v, "load_warnings", ())]
        for (check, kind, thresholds), validator in zip(resolved, loaded):
            if batching:
                validator = _batcher(validator, settings)
            checks.append(_Prepared(check, kind, thresholds, validator))
        return PreparedPlan(self, checks, warnings=warnings)


def _resolve(thresholds: Thresholds, kind: type[BaseValidator], settings: "Settings") -> Thresholds:
    # The default depends on the configured model, never on a loaded one, so stored
    # scores can be re-judged without loading anything.
    positive = kind.default_positive_threshold(settings) if thresholds.positive is None else thresholds.positive
    return Thresholds(positive=positive, delta=thresholds.delta)


def _batcher(validator: Validator, settings: "Settings") -> "BatchingScorer":
    from comfy_gen.validation.batching import BatchingScorer

    return BatchingScorer(validator, max_batch=settings.clip_batch_size)


@dataclass(frozen=True)
class _Prepared:
    check: Check
    kind: type[BaseValidator]
    thresholds: Thresholds      # positive resolved
    validator: Validator | None  # None when the plan was skipped


class PreparedPlan:
    """A plan with its validators loaded: judges new images and re-judges stored scores.

    ``active`` is False when the plan is disabled or was skipped; ``judge`` then
    returns no verdicts. ``rejudge`` never needs a loaded validator: a plan from
    ``ValidationPlan.rejudger`` (``loaded`` False) only re-judges.
    """

    def __init__(self, plan: ValidationPlan, checks: Sequence[_Prepared], *, skipped: bool = False,
                 warnings: Sequence[str] = (), loaded: bool = True) -> None:
        self.plan = plan
        self.skipped = skipped
        self.loaded = loaded   # False: made by ValidationPlan.rejudger, judges nothing new
        self.warnings = list(warnings)
        self._checks = list(checks)

    def __repr__(self) -> str:
        return f"PreparedPlan({self.plan!r}, skipped={self.skipped})"

    @classmethod
    def for_validator(cls, validator: Validator, thresholds: Thresholds = Thresholds()) -> "PreparedPlan":
        """A one-check plan around an already loaded validator (registered under
        ``validator.name``); positive None = the validator class's fallback."""
        kind = get_validator_class(validator.name)
        check = Check(validator.name, thresholds)
        return cls(ValidationPlan(checks=(check,)), [_Prepared(check, kind, thresholds, validator)])

    @property
    def active(self) -> bool:
        return self.plan.enabled and not self.skipped

    @property
    def thresholds(self) -> dict[str, Thresholds]:
        """The thresholds each validator applies, defaults resolved."""
        return {p.check.validator: p.thresholds for p in self._checks}

    def judge(self, image: ImageInput, prompt: str, negative: str | None = None) -> list[Verdict]:
        """Score ``image`` with every validator and judge it (one verdict each)."""
        if not self.loaded:
            raise RuntimeError("This plan only re-judges stored scores; prepare() it to judge new images")
        verdicts: list[Verdict] = []
        for p in self._checks:
            if p.validator is None:
                return []
            score = dict(p.validator.score_many([image], [prompt], [negative])[0])
            verdicts.append(self._verdict(p, score))
        return verdicts

    def judge_many(self, images: Sequence[ImageInput], prompts: Sequence[str | None],
                   negatives: Sequence[str | None] | None = None, *, batch: int = 32) -> list[list[Verdict]]:
        """``judge`` for many images, each validator scoring them in batches (what
        ``comfy-gen validate`` uses). An image whose prompt is None fails the checks
        that need one (``needs_prompt``) with that reason; the others still run."""
        if not self.loaded:
            raise RuntimeError("This plan only re-judges stored scores; prepare() it to judge new images")
        negs = list(negatives) if negatives is not None else [None] * len(images)
        out: list[list[Verdict]] = [[] for _ in images]
        for p in self._checks:
            if p.validator is None:
                return [[] for _ in images]
            wanted = [i for i in range(len(images)) if prompts[i] is not None or not p.kind.needs_prompt]
            scores: dict[int, dict[str, Any]] = {}
            for start in range(0, len(wanted), batch):
                chunk = wanted[start:start + batch]
                got = p.validator.score_many([images[i] for i in chunk], [prompts[i] or "" for i in chunk],
                                             [negs[i] for i in chunk])
                scores.update(zip(chunk, (dict(s) for s in got)))
            for i in range(len(images)):
                if i in scores:
                    out[i].append(self._verdict(p, scores[i]))
                else:
                    out[i].append(Verdict(p.check.validator, False, {"error": "no prompt"},
                                          f"{p.check.validator} needs a prompt and this image has none"))
        return out

    def rejudge(self, stored: Sequence[Mapping[str, Any] | Verdict] | Mapping[str, Any]) -> list[Verdict]:
        """Judge stored results by this plan's thresholds, without rendering or scoring.

        ``stored`` is a list of verdicts (or their dicts), or the flat scores dict of a
        result written before verdicts were recorded (used for every validator). A
        validator of the plan with no stored scores fails: it never saw the image.
        """
        if not self.plan.enabled:
            return []
        by_name: dict[str, dict[str, Any]] = {}
        flat: dict[str, Any] | None = None
        if isinstance(stored, Mapping):
            flat = dict(stored)
        else:
            for entry in stored:
                verdict = entry if isinstance(entry, Verdict) else Verdict.from_dict(entry)
                by_name.setdefault(verdict.validator, verdict.scores)
        verdicts = []
        for p in self._checks:
            scores = flat if flat is not None else by_name.get(p.check.validator)
            if scores is None and p.kind.missing_scores_pass:
                verdicts.append(Verdict(p.check.validator, True, {},
                                        f"Not checked: stored before {p.check.validator} checks"))
            elif scores is None:
                verdicts.append(Verdict(p.check.validator, False, {},
                                        f"No stored {p.check.validator} scores for this image"))
            else:
                verdicts.append(self._verdict(p, scores))
        return verdicts

    @staticmethod
    def _verdict(p: _Prepared, scores: Mapping[str, Any]) -> Verdict:
        result = p.kind.judge_scores(scores, p.thresholds, p.check.opts)
        return Verdict(p.check.validator, result.passed, dict(result.scores), result.reason)

    def close(self) -> None:
        """Stop the batching threads (idempotent); plain validators stay cached."""
        from comfy_gen.validation.batching import BatchingScorer

        for p in self._checks:
            if isinstance(p.validator, BatchingScorer):
                p.validator.close()

    def __enter__(self) -> "PreparedPlan":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
