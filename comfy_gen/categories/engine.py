"""The composition engine: checks a selection, then merges prompts, LoRAs and settings.

Rules (see docs/categories.md):
- categories are processed by priority, highest first; ties keep selection order;
- positive prompt = user text, LoRA trigger words, required fragments, optional
  fragments; negative = required then optional; case-insensitive dedupe, first wins;
- a LoRA asked for twice keeps the highest strength (after @tag weights) and the
  union of trigger words; a LoRA any selected category avoids is dropped;
- each setting comes from the highest-priority category that sets it; steps/cfg
  are clamped into the intersection of every category's [min, max].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from comfy_gen.categories.inference import MAX_WEIGHT, normalize, phrase_pattern
from comfy_gen.categories.model import Category, Range
from comfy_gen.errors import CompositionError

#: Size derived from an aspect ratio alone keeps about this many pixels (SDXL/Flux native).
TARGET_PIXELS = 1024 * 1024
SIZE_MULTIPLE = 64


@dataclass(frozen=True)
class Entry:
    """A selected category with its @tag weight and how it was selected."""

    category: Category
    weight: float = 1.0
    origin: str = "explicit"   # explicit | inferred | recipe


@dataclass
class Trace:
    """Provenance collected while composing: steps and warnings."""

    steps: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def step(self, phase: str, action: str, detail: str, source: str = "") -> None:
        self.steps.append({"phase": phase, "action": action, "detail": detail, "source": source})

    def warn(self, phase: str, message: str, source: str = "") -> None:
        self.warnings.append(message)
        self.step(phase, "warning", message, source)


def by_priority(entries: Sequence[Entry]) -> list[Entry]:
    """Highest priority first; sorted() is stable, so ties keep selection order."""
    return sorted(entries, key=lambda e: -e.category.priority)


def selection_problems(categories: Sequence[Category]) -> list[str]:
    """Every conflict, missing requirement and max_per_type breach, as readable reasons."""
    ids = [c.id for c in categories]
    reasons: list[str] = []
    for i, a in enumerate(categories):
        for b in categories[i + 1:]:
            if b.id in a.conflicts_with or a.id in b.conflicts_with:
                reasons.append(f'"{a.id}" conflicts with "{b.id}"')
    for cat in categories:
        missing = [r for r in cat.requires if r not in ids]
        if missing:
            reasons.append(f'"{cat.id}" requires {", ".join(repr(m) for m in missing)}')
    for cat in categories:
        same = [c.id for c in categories if c.type == cat.type]
        if cat.max_per_type is not None and len(same) > cat.max_per_type:
            reasons.append(f'"{cat.id}" allows at most {cat.max_per_type} {cat.type} '
                           f'categor{"y" if cat.max_per_type == 1 else "ies"}, got {len(same)} ({", ".join(same)})')
    return reasons


def check_selection(categories: Sequence[Category]) -> None:
    """Raise CompositionError listing every problem of the selection."""
    reasons = selection_problems(categories)
    if reasons:
        raise CompositionError("Cannot compose these categories: " + "; ".join(reasons),
                               hint="Remove one of the conflicting categories or add the required ones.")


def compatible(candidate: Category, selected: Sequence[Category]) -> str | None:
    """Why ``candidate`` cannot join ``selected`` (None if it can); used to skip inferred ones.

    Only problems the candidate adds count: a clash among the explicit tags is
    reported once, by check_selection, not blamed on every candidate.
    """
    before = set(selection_problems(selected))
    added = [r for r in selection_problems([*selected, candidate]) if r not in before]
    return "; ".join(added) or None


def condition_holds(condition: str | None, *, selected: set[str], workflow: str, text: str) -> tuple[bool, str]:
    """Evaluate a LoRA ``condition`` (all clauses must hold); returns (ok, failing clause)."""
    if not condition:
        return True, ""
    norm = normalize(text)
    for clause in condition.split(","):
        kind, _, value = clause.strip().partition(":")
        value = value.strip()
        ok = {"with": lambda: value in selected, "without": lambda: value not in selected,
              "workflow": lambda: value == workflow,
              "text": lambda: bool(phrase_pattern(value).search(norm))}[kind]()
        if not ok:
            return False, clause.strip()
    return True, ""


def merge_loras(order: Sequence[Entry], *, workflow: str, user_text: str, trace: Trace) -> list[dict[str, Any]]:
    """Required then recommended LoRAs of each category, weighted, merged and filtered."""
    selected = {e.category.id for e in order}
    avoided: dict[str, list[str]] = {}
    for e in order:
        for name in e.category.loras_avoid:
            avoided.setdefault(name, []).append(e.category.id)
    merged: dict[str, dict[str, Any]] = {}
    sources: dict[str, list[str]] = {}
    for e in order:
        cat = e.category
        for kind, refs in (("required", cat.loras_required), ("recommended", cat.loras_recommended)):
            for ref in refs:
                ok, clause = condition_holds(ref.condition, selected=selected, workflow=workflow, text=user_text)
                if not ok:
                    trace.step("loras", "skip_lora", f"{ref.filename}: condition {clause!r} not met", cat.id)
                    continue
                if ref.filename in avoided:
                    trace.warn("loras", f"LoRA {ref.filename!r} from {cat.id!r} dropped: avoided by "
                                        f"{', '.join(avoided[ref.filename])}", cat.id)
                    continue
                strength = round(min(MAX_WEIGHT, ref.strength * e.weight), 3)
                if ref.filename not in merged:
                    merged[ref.filename] = {"filename": ref.filename, "strength": strength,
                                            "trigger_words": list(ref.trigger_words)}
                    sources[ref.filename] = [cat.id]
                    trace.step("loras", "add_lora", f"{ref.filename} ({kind}) @ {strength}", cat.id)
                    continue
                item = merged[ref.filename]
                item["strength"] = max(item["strength"], strength)
                item["trigger_words"] += [w for w in ref.trigger_words if w not in item["trigger_words"]]
                sources[ref.filename].append(cat.id)
    for name, ids in sources.items():
        if len(ids) > 1:
            trace.warn("loras", f"LoRA {name!r} requested by {', '.join(ids)}; using the highest strength "
                                f"{merged[name]['strength']}", ",".join(ids))
    return list(merged.values())


def merge_prompts(order: Sequence[Entry], *, user_text: str, trigger_words: Sequence[str],
                  trace: Trace) -> tuple[str, str]:
    """Positive and negative prompts (see module docstring for the order)."""
    positive: list[str] = []
    seen: set[str] = set()
    if user_text:
        positive.append(user_text)
        seen.update(p.strip().lower() for p in user_text.split(",") if p.strip())
        trace.step("prompts", "keep_user_text", user_text, "user")

    def add(target: list[str], seen_set: set[str], fragment: str, source: str) -> None:
        key = fragment.strip().lower()
        if key in seen_set:
            trace.step("prompts", "dedupe", fragment, source)
            return
        seen_set.add(key)
        target.append(fragment.strip())

    for word in trigger_words:
        add(positive, seen, word, "lora")
    for attr in ("positive_required", "positive_optional"):
        for e in order:
            for frag in getattr(e.category, attr):
                add(positive, seen, frag, e.category.id)
    negative: list[str] = []
    neg_seen: set[str] = set()
    for attr in ("negative_required", "negative_optional"):
        for e in order:
            for frag in getattr(e.category, attr):
                if frag.strip().lower() in seen:
                    trace.warn("prompts", f"negative fragment {frag!r} dropped: it is also in the positive prompt",
                               e.category.id)
                    continue
                add(negative, neg_seen, frag, e.category.id)
    trace.step("prompts", "merge_prompts", f"{len(positive)} positive, {len(negative)} negative parts")
    return ", ".join(positive), ", ".join(negative)


def resolve_settings(order: Sequence[Entry], trace: Trace) -> dict[str, Any]:
    """steps, cfg, width, height, aspect_ratio, sampler, scheduler, denoise (None = keep the workflow's)."""
    out: dict[str, Any] = {"steps": _resolve_range(order, "steps", trace),
                           "cfg": _resolve_range(order, "cfg", trace)}
    out.update(_resolve_size(order, trace))
    for name in ("sampler", "scheduler", "denoise"):
        out[name] = None
        for e in order:
            value = getattr(e.category.settings, name)
            if value is not None:
                out[name] = value
                trace.step("settings", "apply_setting", f"{name}={value}", e.category.id)
                break
    return out


def _resolve_range(order: Sequence[Entry], name: str, trace: Trace) -> int | float | None:
    ranges: list[tuple[str, Range]] = [(e.category.id, r) for e in order
                                       if (r := getattr(e.category.settings, name)) is not None]
    if not ranges:
        return None
    source, value = next(((cid, r.default) for cid, r in ranges if r.default is not None), (ranges[0][0], None))
    if value is None:
        first = ranges[0][1]
        if first.min is not None and first.max is not None:
            value = (first.min + first.max) / 2
        else:  # the schema's minProperties guarantees at least one bound here
            value = first.min if first.min is not None else first.max
    assert value is not None
    lows = [r.min for _, r in ranges if r.min is not None]
    highs = [r.max for _, r in ranges if r.max is not None]
    lo, hi = (max(lows) if lows else None), (min(highs) if highs else None)
    value = _as(name, value)
    trace.step("settings", "apply_setting", f"{name}={value}", source)
    if lo is not None and hi is not None and lo > hi:
        spans = ", ".join(f"{cid}: {r.min}-{r.max}" for cid, r in ranges if r.min is not None or r.max is not None)
        trace.warn("settings", f"{name} ranges do not intersect ({spans}); keeping {value} from {source!r}", source)
        return value
    clamped = _as(name, min(max(value, lo if lo is not None else value), hi if hi is not None else value))
    if clamped != value:
        trace.step("settings", "clamp", f"{name} {value} -> {clamped} (allowed {lo}-{hi} by all categories)", source)
    return clamped


def _as(name: str, value: float) -> int | float:
    return int(math.floor(value)) if name == "steps" else round(float(value), 2)


def _resolve_size(order: Sequence[Entry], trace: Trace) -> dict[str, Any]:
    for e in order:
        st = e.category.settings
        if not st.has_size:
            continue
        if st.width is not None and st.height is not None:
            width, height = st.width, st.height
            ratio = st.aspect_ratio or _reduced(width, height)
        else:
            ratio = str(st.aspect_ratio)
            width, height = size_for_ratio(ratio)
        trace.step("settings", "apply_size", f"{width}x{height} ({ratio})", e.category.id)
        return {"width": width, "height": height, "aspect_ratio": ratio}
    return {"width": None, "height": None, "aspect_ratio": None}


def size_for_ratio(ratio: str, pixels: int = TARGET_PIXELS) -> tuple[int, int]:
    """A size with this W:H ratio, about ``pixels`` in area, sides multiples of 64."""
    a, b = (int(x) for x in ratio.split(":"))
    width = math.sqrt(pixels * a / b)
    height = width * b / a

    def snap(x: float) -> int:
        return max(SIZE_MULTIPLE, int(round(x / SIZE_MULTIPLE)) * SIZE_MULTIPLE)

    return snap(width), snap(height)


def _reduced(width: int, height: int) -> str:
    g = math.gcd(width, height)
    return f"{width // g}:{height // g}"
