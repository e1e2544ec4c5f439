"""Typed results of a batch: one ``ItemResult`` per item, one ``RunSummary`` per run.

These cross every boundary of a run (the per-item task, the flow, the run
record, the CLI, later the API and MCP), so they are frozen dataclasses with
one ``to_dict`` for the places that must serialise (Prefect artifacts,
``results.jsonl``, the sidecar's cache record) and one ``from_dict`` that also
reads what earlier versions wrote.

An item's *verdict* (how it was judged) and its *source* (rendered now, or
found stored by an earlier run) are separate fields: a cached item that passed
is ``verdict="passed", source="cached"``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence, cast

from comfy_gen.errors import ComfyGenError, is_transient
from comfy_gen.validation.plan import Verdict

if TYPE_CHECKING:  # pragma: no cover
    from comfy_gen.recipes import RecipeItem

ItemVerdict = Literal["passed", "best_effort", "unvalidated", "failed", "error"]
Source = Literal["rendered", "cached", "none"]
VERDICTS: tuple[str, ...] = ("passed", "best_effort", "unvalidated", "failed", "error")

#: How a verdict reads to a person (Prefect state names, tables, the CLI).
VERDICT_LABELS: dict[str, str] = {
    "passed": "Passed", "best_effort": "Best effort", "unvalidated": "Unvalidated",
    "failed": "Failed", "error": "Error",
}

Span = tuple[float, float]


@dataclass(frozen=True)
class ItemResult:
    """What became of one recipe item."""

    item_id: str
    index: int
    verdict: ItemVerdict
    source: Source = "rendered"
    prompt: str | None = None
    seed: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    grid: tuple[int, int] | None = None
    backend: str | None = None
    attempts: int = 0
    best_attempt: int | None = None
    scores: Mapping[str, Any] | None = None      # the kept attempt's scores, every validator merged
    reason: str | None = None
    verdicts: tuple[Verdict, ...] = ()          # the kept attempt's verdict from each validator
    prompt_id: str | None = None
    file: str | None = None
    sidecar: str | None = None
    key: str | None = None
    url: str | None = None
    upload: str | None = None
    upload_error: str | None = None
    error: str | None = None
    error_detail: Mapping[str, Any] | None = None
    jobs: int = 0                       # ComfyUI jobs this run sent for the item (failed ones too)
    gpu_spans: tuple[Span, ...] = ()    # server-clock execution spans of those jobs
    elapsed_seconds: float = 0.0
    validation_skipped: bool = False

    @property
    def cached(self) -> bool:
        return self.source == "cached"

    @property
    def ok(self) -> bool:
        return self.verdict in ("passed", "best_effort", "unvalidated")

    def replace(self, **changes: Any) -> "ItemResult":
        return dataclasses.replace(self, **changes)

    def headline(self) -> str:
        """One line for a person: verdict, score and attempts (a Prefect state message)."""
        label = VERDICT_LABELS[self.verdict]
        if self.verdict == "error":
            return f"{label}: {self.error or 'failed'}"
        parts = [label]
        score = (self.scores or {}).get("positive_score")
        if self.verdict == "best_effort" and self.reason:
            parts.append(f"{self.reason}")
        elif score is not None:
            parts.append(f"CLIP {float(score):.1f}")
        quality = (self.scores or {}).get("quality_composite")
        if quality is not None and self.verdict != "best_effort":
            parts.append(f"quality {float(quality):.2f} {(self.scores or {}).get('quality_grade') or ''}".rstrip())
        if self.attempts > 1:
            parts.append(f"after {self.attempts} attempts")
        if self.cached:
            parts.append("(stored earlier)")
        return ": ".join(parts[:2]) + ("" if len(parts) <= 2 else " " + " ".join(parts[2:]))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["labels"] = dict(self.labels)
        data["grid"] = list(self.grid) if self.grid is not None else None
        data["gpu_spans"] = [list(s) for s in self.gpu_spans]
        data["scores"] = dict(self.scores) if self.scores is not None else None
        data["error_detail"] = dict(self.error_detail) if self.error_detail is not None else None
        data["verdicts"] = [v.to_dict() for v in self.verdicts]
        return data

    def to_record(self) -> dict[str, Any]:
        """What the item's sidecar keeps as its cache record (no per-run spans)."""
        data = self.to_dict()
        data.pop("gpu_spans", None)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ItemResult":
        """Read a result written by ``to_dict``, or by v1 (``status`` mixing verdict and source)."""
        values = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
        if "verdict" not in data:
            status = str(data.get("status") or "error")
            if status == "cached":
                values["source"] = "cached"
                status = str(data.get("outcome") or data.get("previous_status") or "unvalidated")
            values["verdict"] = status if status in VERDICTS else "error"
            values.setdefault("jobs", int(data.get("attempts") or 0) if not data.get("cached") else 0)
        grid = values.get("grid")
        values["grid"] = (int(grid[0]), int(grid[1])) if grid else None
        values["gpu_spans"] = tuple((float(a), float(b)) for a, b in values.get("gpu_spans") or ())
        values["labels"] = dict(values.get("labels") or {})
        values["verdicts"] = tuple(Verdict.from_dict(v) for v in values.get("verdicts") or ())
        values.setdefault("item_id", str(data.get("item_id", "")))
        values.setdefault("index", int(data.get("index", 0)))
        return cls(**values)


def error_result(item: "RecipeItem", exc: BaseException) -> ItemResult:
    """The result of an item whose task raised: what it was, and why it failed."""
    detail = describe_error(exc)
    prompt_id = detail.get("prompt_id")
    return ItemResult(
        item_id=str(item.id), index=int(item.index), verdict="error", source="none",
        prompt=item.params.prompt, seed=item.params.seed, labels=dict(item.labels),
        # Where it failed is only known when it could go to one backend.
        grid=item.grid, backend=item.candidates[0] if len(item.candidates) == 1 else None,
        error=str(exc), error_detail=detail,
        prompt_id=str(prompt_id) if prompt_id else None,
        # A job that ComfyUI ran and failed still used the GPU: count it.
        jobs=1 if prompt_id else 0,
    )


def describe_error(exc: BaseException) -> dict[str, Any]:
    """A JSON-safe error record for an item that failed."""
    if isinstance(exc, ComfyGenError):
        data = exc.to_dict()
    else:
        data = {"error": type(exc).__name__, "message": str(exc)}
    data["transient"] = is_transient(exc)
    return data


@dataclass(frozen=True)
class ItemError:
    """One failed item, as the summary lists it: which item, what it was, why."""

    item_id: str
    prompt: str | None
    seed: int | None
    labels: Mapping[str, str]
    error: str

    def describe(self) -> str:
        what = ", ".join(f"{k}={v}" for k, v in self.labels.items()) or (self.prompt or "")[:60]
        return f"{what} (seed {self.seed}, item {self.item_id[:12]}): {self.error}"

    def to_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "prompt": self.prompt, "seed": self.seed,
                "labels": dict(self.labels), "error": self.error}


@dataclass(frozen=True)
class RunSummary:
    """Counts, pass rate, GPU busy fraction and where the run's record lives."""

    items: int
    counts: Mapping[str, int]           # by verdict, cached items included
    rendered: int                       # items rendered by this run
    cached: int                         # items found stored by an earlier run
    jobs: int                           # ComfyUI jobs sent by this run (all attempts, failed ones too)
    pass_rate: float | None             # passed / validated among rendered items
    gpu_busy_fraction: float | None     # server clocks: busy time / span of this run's jobs (gpu_busy)
    wall_seconds: float
    errors: tuple[ItemError, ...] = ()
    recipe: str = ""
    run_id: str = ""
    run_dir: str = ""
    items_dir: str = ""
    flow_run_id: str | None = None
    validation_skipped: bool = False
    contact_sheet: str | None = None        # local path
    contact_sheet_url: str | None = None    # where a browser can open it (uploaded)

    @property
    def failed(self) -> int:
        return self.counts.get("error", 0)

    def replace(self, **changes: Any) -> "RunSummary":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["counts"] = dict(self.counts)
        data["errors"] = [e.to_dict() for e in self.errors]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunSummary":
        values = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
        values["errors"] = tuple(ItemError(str(e.get("item_id")), e.get("prompt"), e.get("seed"),
                                           dict(e.get("labels") or {}), str(e.get("error")))
                                 for e in data.get("errors") or ())
        values["counts"] = dict(values.get("counts") or {})
        return cls(**values)


def gpu_busy(results: Sequence[ItemResult]) -> float | None:
    """Busy time / span of this run's jobs, per backend and then pooled (busy
    seconds over span seconds of all backends): each backend's spans are on its
    own server's clock, and two busy GPUs are 100 % busy, not 200 %."""
    by_backend: dict[str, list[tuple[float, float]]] = {}
    for r in results:
        by_backend.setdefault(r.backend or "", []).extend(r.gpu_spans)
    busy = window = 0.0
    for spans in by_backend.values():
        if spans:
            busy += sum(end - start for start, end in spans)
            window += max(end for _, end in spans) - min(start for start, _ in spans)
    if busy == 0 and window == 0:
        return None if not any(by_backend.values()) else 1.0
    return round(busy / window, 4) if window > 0 else 1.0


def summarize(results: Sequence[ItemResult], *, wall_seconds: float) -> RunSummary:
    """Counts, pass rate and GPU busy fraction of a run's results."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    rendered = [r for r in results if r.source == "rendered"]
    validated = [r for r in rendered if r.verdict in ("passed", "best_effort")]
    passed = sum(1 for r in validated if r.verdict == "passed")
    busy = gpu_busy(results)
    errors = tuple(ItemError(r.item_id, r.prompt, r.seed, r.labels, r.error or "failed")
                   for r in results if r.verdict == "error")
    return RunSummary(
        items=len(results), counts=counts, rendered=len(rendered),
        cached=sum(1 for r in results if r.cached), jobs=sum(r.jobs for r in results),
        pass_rate=round(passed / len(validated), 4) if validated else None,
        gpu_busy_fraction=busy, wall_seconds=round(wall_seconds, 3), errors=errors,
    )


def as_verdict(status: str) -> ItemVerdict:
    """A generation outcome's status as an item verdict."""
    return cast(ItemVerdict, status if status in VERDICTS else "error")
