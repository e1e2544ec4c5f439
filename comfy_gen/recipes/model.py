"""Frozen value objects: a loaded Recipe, its sections, and the expanded RecipeItem."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from comfy_gen.enhance.options import EnhanceOptions
from comfy_gen.params import GenerationParams

#: Axis names a matrix may vary, in the order the docs list them.
AXES: tuple[str, ...] = (
    "prompt", "negative_prompt", "seed", "steps", "cfg", "sampler", "scheduler",
    "width", "height", "size", "denoise", "checkpoint", "loras", "categories",
)

@dataclass(frozen=True)
class RecipeProblem:
    """One problem in a recipe file; ``str()`` is ``file:line: json.path: message``."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "path": self.path, "message": self.message}


@dataclass(frozen=True)
class PromptSpec:
    """One prompt template from ``prompts`` or ``matrix.axes.prompt``."""

    text: str
    label: str | None = None
    negative_prompt: str | None = None


@dataclass(frozen=True)
class ValidationConfig:
    """The ``validation`` section; ``validator`` is a registry name (comfy_gen.validation),
    thresholds are on its scale (CLIP: 100*max(cos,0)). ``ValidationPlan.from_config`` uses it."""

    enabled: bool = False
    validator: str = "clip"
    positive_threshold: float = 25.0
    delta_threshold: float | None = None
    allow_skip: bool = False
    #: Several validators (``validation.checks``): names or ``{name, threshold, ...options}``
    #: mappings as ``comfy_gen.validation.plan.build_checks`` takes them; empty = ``validator`` alone.
    checks: tuple[Any, ...] = ()
    #: The technical checks (``validation.technical``): None = on when ``enabled``,
    #: True = on even without CLIP, False = off (comfy_gen.validation.plan.with_technical).
    technical: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"enabled": self.enabled, "validator": self.validator,
                                "positive_threshold": self.positive_threshold,
                                "delta_threshold": self.delta_threshold, "allow_skip": self.allow_skip}
        if self.checks:  # absent when unused, so older item hashes stay the same
            data["checks"] = [dict(c) if isinstance(c, Mapping) else c for c in self.checks]
        if self.technical is not None:
            data["technical"] = self.technical
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "ValidationConfig":
        """The inverse of ``to_dict`` (missing keys take the defaults)."""
        data = data or {}
        delta = data.get("delta_threshold")
        return cls(enabled=bool(data.get("enabled", cls.enabled)),
                   validator=str(data.get("validator") or cls.validator),
                   positive_threshold=float(data.get("positive_threshold", cls.positive_threshold)),
                   delta_threshold=None if delta is None else float(delta),
                   allow_skip=bool(data.get("allow_skip", cls.allow_skip)),
                   checks=tuple(data.get("checks") or ()),
                   technical=None if data.get("technical") is None else bool(data["technical"]))


@dataclass(frozen=True)
class RefinementConfig:
    """The ``refinement`` section: strategy and attempts per item (1 = no retries)."""

    strategy: str = "progressive"
    max_attempts: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "max_attempts": self.max_attempts}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "RefinementConfig":
        data = data or {}
        return cls(strategy=str(data.get("strategy", "progressive")),
                   max_attempts=int(data.get("max_attempts", 1)))


@dataclass(frozen=True)
class OutputConfig:
    """The ``output`` section; ``dir`` and ``prefix`` default to the recipe name."""

    dir: str
    prefix: str
    upload: bool = False
    contact_sheet: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"dir": self.dir, "prefix": self.prefix, "upload": self.upload,
                "contact_sheet": self.contact_sheet}


@dataclass(frozen=True)
class Axis:
    """One matrix dimension: a name and its values (already parsed, not yet expanded)."""

    name: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Recipe:
    """A validated recipe file. ``raw`` is the parsed YAML; the rest are typed sections.

    ``axes`` holds every varying dimension: ``prompts`` and ``seeds`` become the
    ``prompt`` and ``seed`` axes, followed by ``matrix.axes`` in file order.
    """

    name: str
    description: str
    path: Path
    sha256: str
    raw: dict[str, Any]
    workflow: str
    backends: tuple[str, ...]
    defaults: GenerationParams
    axes: tuple[Axis, ...]
    zip_groups: tuple[tuple[str, ...], ...]
    rows_axis: str | None
    cols_axis: str | None
    categories: tuple[str, ...]
    validation: ValidationConfig
    refinement: RefinementConfig
    output: OutputConfig
    nightly: bool = False
    policy_tier: str | None = None
    stage_tasks: str = "auto"   # auto | on | off: nested stage task runs under each item (flows/)
    enhance: EnhanceOptions = field(default_factory=EnhanceOptions)   # the prompt enhancer (comfy_gen.enhance)
    # JSON path -> line, for errors found while expanding (categories, policy).
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (no expansion): for listings, run records and the API."""
        return {
            "name": self.name, "description": self.description, "path": str(self.path),
            "sha256": self.sha256, "workflow": self.workflow, "backends": list(self.backends),
            "axes": {a.name: len(a.values) for a in self.axes}, "categories": list(self.categories),
            "validation": self.validation.to_dict(), "refinement": self.refinement.to_dict(),
            "output": self.output.to_dict(), "nightly": self.nightly, "policy_tier": self.policy_tier,
            "stage_tasks": self.stage_tasks,
            **({"enhance": self.enhance.to_dict()} if self.enhance.enabled else {}),
        }

    @property
    def wildcards_dir(self) -> Path:
        """``wildcards/`` next to the recipe file."""
        return self.path.parent / "wildcards"


@dataclass(frozen=True)
class RecipeItem:
    """One fully resolved render. ``id`` hashes workflow + params (what is
    rendered). ``backends`` are where it may render (the run dispatches it to
    whichever has a free slot); ``backend`` is the placement the v1 scheme
    chose by a params hash, kept only to find items stored under v1 ids."""

    id: str
    index: int
    params: GenerationParams
    workflow: str
    backend: str
    labels: dict[str, str] = field(default_factory=dict)
    grid: tuple[int, int] | None = None
    categories: list[str] = field(default_factory=list)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    refinement: RefinementConfig = field(default_factory=RefinementConfig)
    #: The prompt enhancer: ``params.prompt`` stays the original; it is enhanced when the item renders.
    enhance: EnhanceOptions = field(default_factory=EnhanceOptions)
    backends: tuple[str, ...] = ()

    @property
    def candidates(self) -> tuple[str, ...]:
        """The backends this item may render on (its placement when none are listed)."""
        return self.backends or (self.backend,)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "id": self.id, "index": self.index, "params": self.params.to_dict(),
            "workflow": self.workflow, "backend": self.backend, "backends": list(self.backends),
            "labels": dict(self.labels),
            "grid": list(self.grid) if self.grid is not None else None,
            "categories": list(self.categories), "validation": self.validation.to_dict(),
            "refinement": self.refinement.to_dict(),
        }
        if self.enhance.enabled:  # absent when unused: payloads of other items stay as they were
            data["enhance"] = self.enhance.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RecipeItem":
        grid = data.get("grid")
        return cls(
            id=data["id"], index=int(data["index"]),
            params=GenerationParams.from_dict(data["params"]),
            workflow=data["workflow"], backend=data["backend"],
            labels=dict(data.get("labels") or {}),
            grid=(int(grid[0]), int(grid[1])) if grid is not None else None,
            categories=list(data.get("categories") or []),
            validation=ValidationConfig.from_dict(data.get("validation")),
            refinement=RefinementConfig.from_dict(data.get("refinement")),
            enhance=EnhanceOptions.from_dict(data.get("enhance")),
            backends=tuple(data.get("backends") or ()),
        )
