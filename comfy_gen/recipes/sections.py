"""Parse a schema-checked recipe mapping into typed sections, with semantic checks.

Runs even when the schema reported problems: every step checks types itself and
skips what is malformed, so one load reports all problems at once.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from comfy_gen.config import Settings
from comfy_gen.errors import UsageError
from comfy_gen.params import GenerationParams, LoraSpec, validate_ranges
from comfy_gen.recipes.model import AXES, Axis, PromptSpec
from comfy_gen.recipes.prompts import (PromptBudget, PromptExpander, PromptLimitExceeded, resolve_seeds, seed_count,
                                       short_label)

#: Refuse recipes that would expand to more items than this (likely a mistake).
MAX_ITEMS = 50_000

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_WORKFLOW_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.json$")
_SCALAR_FIELDS = ("checkpoint", "sampler", "scheduler", "steps", "cfg", "width", "height",
                  "denoise", "negative_prompt", "frames", "fps", "transparent", "transparent_subject")
_INT_FIELDS = {"steps", "width", "height", "frames"}
_FLOAT_FIELDS = {"cfg", "denoise", "fps"}
_STR_FIELDS = {"checkpoint", "sampler", "scheduler", "negative_prompt", "transparent_subject"}
_BOOL_FIELDS = {"transparent"}


@dataclass(frozen=True)
class Sections:
    """What the loader needs to build a Recipe (only meaningful when no problems)."""

    defaults: GenerationParams
    axes: tuple[Axis, ...]
    zip_groups: tuple[tuple[str, ...], ...]
    rows: str | None
    cols: str | None
    categories: tuple[str, ...]
    backends: tuple[str, ...]


def _is_num(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def range_problem(field: str, value: Any) -> str | None:
    """The validate_ranges message for one field, or None when in range."""
    try:
        validate_ranges(GenerationParams(**{field: value}))
    except UsageError as exc:
        return exc.message.split(": ", 1)[-1]
    return None


def split_categories(value: Any) -> tuple[str, ...]:
    """Category ids/@tags from a list or a space-separated string."""
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def parse_loras(value: Any, path: list[Any], out: Any) -> tuple[LoraSpec, ...]:
    """LoRAs from NAME:STRENGTH strings or {name, strength, strength_clip} objects.

    Clip strength is always made explicit so that a RecipeItem's params survive
    a to_dict/from_dict round trip unchanged (and so keep their id).
    """
    if not isinstance(value, list):
        return ()
    loras: list[LoraSpec] = []
    for i, entry in enumerate(value):
        try:
            if isinstance(entry, str):
                spec = LoraSpec.parse(entry)
            elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
                strength = entry.get("strength", 1.0)
                if not _is_num(strength):
                    continue
                clip = entry.get("strength_clip")
                spec = LoraSpec(entry["name"], float(strength), float(clip) if _is_num(clip) else None)
            else:
                continue
        except UsageError as exc:
            out.add([*path, i], exc.message)
            continue
        loras.append(LoraSpec(spec.name, spec.strength_model, spec.clip_strength))
    return tuple(loras)


def parse_defaults(data: dict[str, Any], out: Any) -> GenerationParams:
    raw = data.get("defaults")
    if not isinstance(raw, dict):
        return GenerationParams()
    kwargs: dict[str, Any] = {}
    for name in _SCALAR_FIELDS:
        value = raw.get(name)
        if name in _INT_FIELDS and isinstance(value, int) and not isinstance(value, bool):
            kwargs[name] = value
        elif name in _FLOAT_FIELDS and _is_num(value):
            kwargs[name] = float(value)
        elif name in _STR_FIELDS and isinstance(value, str):
            kwargs[name] = value
        elif name in _BOOL_FIELDS and value is True:
            kwargs[name] = True  # false is the default: left unset so item ids stay as they were
        else:
            continue
        problem = range_problem(name, kwargs[name])
        if problem:
            out.add(["defaults", name], problem)
    loras = parse_loras(raw.get("loras"), ["defaults", "loras"], out)
    return GenerationParams(**kwargs, loras=loras)


def parse_prompt_values(entries: Any, path: list[Any], out: Any,
                        expander: PromptExpander) -> list[PromptSpec]:
    """Prompt entries -> one PromptSpec per dynamicprompts variant."""
    if not isinstance(entries, list):
        return []
    values: list[PromptSpec] = []
    # One budget for the whole axis: an axis over MAX_ITEMS makes the recipe
    # over the limit whatever the other axes are, so expansion stops there.
    budget = PromptBudget(items=MAX_ITEMS)
    if _count_over_limit(entries, path, out, expander):
        return []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            text, label, negative = entry, None, None
        elif isinstance(entry, dict) and isinstance(entry.get("text"), str):
            text = entry["text"]
            label = entry.get("label") if isinstance(entry.get("label"), str) else None
            negative = entry.get("negative_prompt") if isinstance(entry.get("negative_prompt"), str) else None
        else:
            continue
        problems = expander.check(text)
        for message in problems:
            out.add([*path, i], message)
        if problems:
            continue
        try:
            variants = expander.expand(text, budget)
        except PromptLimitExceeded as exc:
            out.add([*path, i], exc.message)
            break  # over a limit: later entries would only repeat it
        except UsageError as exc:
            out.add([*path, i], exc.message)
            continue
        for k, variant in enumerate(variants):
            if label is None:
                shown = short_label(variant)
            else:
                shown = label if len(variants) == 1 else f"{label} #{k + 1}"
            values.append(PromptSpec(variant, shown, negative))
    return values


def _count_over_limit(entries: list[Any], path: list[Any], out: Any, expander: PromptExpander) -> bool:
    """Count the prompts of an axis from the templates' parse trees, before
    generating any; True (problem added) when they exceed MAX_ITEMS."""
    total = 0
    for i, entry in enumerate(entries):
        text = entry if isinstance(entry, str) else entry.get("text") if isinstance(entry, dict) else None
        if not isinstance(text, str) or expander.check(text):
            continue  # reported by the main pass
        count = expander.count(text)
        if count is None:
            continue  # not countable: the lazy budget applies while generating
        total += count
        if total > MAX_ITEMS:
            out.add([*path, i], f"prompts expand to at least {total} prompts, more than the item limit "
                                f"({MAX_ITEMS})")
            return True
    return False


def parse_seeds(spec: Any, path: list[Any], out: Any, *, salt: str) -> list[int]:
    if isinstance(spec, list):
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in spec):
            return []
    elif isinstance(spec, dict):
        if "count" in spec:
            if not (isinstance(spec["count"], int) and 1 <= spec["count"] <= 10_000):
                return []
        elif not ("start" in spec and "stop" in spec and all(
                isinstance(spec.get(k, 1), int) and spec.get(k, 1) >= (1 if k == "step" else 0)
                for k in ("start", "stop", "step"))):
            return []
    else:
        return []
    # Counted before anything is built: {start: 0, stop: 4294967295} must not
    # allocate four billion ints to find out it is over the limit.
    count = seed_count(spec)
    if count > MAX_ITEMS:
        out.add(path, f"{count} seeds: the recipe would expand to at least {count} items (limit {MAX_ITEMS})")
        return []
    seeds = resolve_seeds(spec, salt=salt)
    if not seeds:
        out.add(path, "no seeds: the list is empty" if isinstance(spec, list)
                else "the seed range is empty (stop must be greater than start)")
    return seeds


def parse_axis(name: str, raw: Any, path: list[Any], out: Any, *, expander: PromptExpander,
               salt: str) -> tuple[Any, ...]:
    """Values of one matrix axis, parsed and range-checked (problems added to ``out``)."""
    if name == "prompt":
        return tuple(parse_prompt_values(raw, path, out, expander))
    if name == "seed":
        return tuple(parse_seeds(raw, path, out, salt=salt))
    if not isinstance(raw, list):
        return ()
    values: list[Any] = []
    for i, value in enumerate(raw):
        if name == "loras":
            values.append(parse_loras(value, [*path, i], out))
        elif name == "categories":
            values.append(split_categories(value))
        elif name == "size":
            if not (isinstance(value, str) and re.fullmatch(r"[0-9]+x[0-9]+", value)):
                continue
            width, height = (int(v) for v in value.split("x"))
            for field_name, number in (("width", width), ("height", height)):
                problem = range_problem(field_name, number)
                if problem:
                    out.add([*path, i], problem)
            values.append((width, height))
        elif name in _INT_FIELDS and isinstance(value, int) and not isinstance(value, bool):
            values.append(value)
        elif name in _FLOAT_FIELDS and _is_num(value):
            values.append(float(value))
        elif name in _STR_FIELDS and isinstance(value, str):
            values.append(value)
        else:
            continue
        if name in _INT_FIELDS | _FLOAT_FIELDS:
            problem = range_problem(name, values[-1])
            if problem:
                out.add([*path, i], problem)
    return tuple(values)


def parse_axes(data: dict[str, Any], out: Any, *, expander: PromptExpander,
               salt: str) -> list[Axis]:
    """Top-level prompts/seeds become the first axes, then matrix.axes in file order."""
    axes: list[Axis] = []
    raw_matrix = data.get("matrix")
    matrix: dict[str, Any] = raw_matrix if isinstance(raw_matrix, dict) else {}
    axes_value = matrix.get("axes")
    raw_axes: dict[str, Any] = axes_value if isinstance(axes_value, dict) else {}
    for top, axis in (("prompts", "prompt"), ("seeds", "seed")):
        if top in data and axis in raw_axes:
            out.add(["matrix", "axes", axis], f"{axis!r} is given twice: use either {top} or matrix.axes.{axis}")
    if "size" in raw_axes and ("width" in raw_axes or "height" in raw_axes):
        out.add(["matrix", "axes", "size"], "use either the size axis or width/height axes, not both")
    if data.get("prompts") == []:
        out.add(["prompts"], "prompts has no values")
    elif "prompts" in data:
        axes.append(Axis("prompt", tuple(parse_prompt_values(data["prompts"], ["prompts"], out, expander))))
    if "seeds" in data:
        axes.append(Axis("seed", tuple(parse_seeds(data["seeds"], ["seeds"], out, salt=salt))))
    for name, raw in raw_axes.items():
        if name not in AXES:
            continue  # the schema already reported it
        path = ["matrix", "axes", name]
        if isinstance(raw, list) and not raw:
            out.add(path, f"axis {name!r} has no values")
            continue
        values = parse_axis(name, raw, path, out, expander=expander, salt=salt)
        if name not in ("prompt", "seed") or values:
            axes.append(Axis(name, values))
    return axes


def parse_zip(data: dict[str, Any], axes: list[Axis], out: Any) -> list[tuple[str, ...]]:
    raw_matrix = data.get("matrix")
    matrix: dict[str, Any] = raw_matrix if isinstance(raw_matrix, dict) else {}
    groups_raw = matrix.get("zip")
    if not isinstance(groups_raw, list):
        return []
    sizes = {a.name: len(a.values) for a in axes}
    groups: list[tuple[str, ...]] = []
    used: dict[str, int] = {}
    for g, group in enumerate(groups_raw):
        if not isinstance(group, list) or not all(isinstance(n, str) for n in group):
            continue
        path = ["matrix", "zip", g]
        missing = [n for n in group if n in AXES and n not in sizes]
        for name in missing:
            out.add(path, f"zip names axis {name!r}, which the recipe does not vary")
        for name in group:
            if name in used and used[name] != g:
                out.add(path, f"axis {name!r} is in two zip groups")
            used[name] = g
        present = [n for n in group if n in sizes]
        lengths = {n: sizes[n] for n in present}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{n}={k}" for n, k in lengths.items())
            out.add(path, f"zip group has unequal lengths: {shown}")
        if not missing and all(n in AXES for n in group):
            groups.append(tuple(group))
    return groups


def parse_sheet_axes(data: dict[str, Any], axes: list[Axis], groups: list[tuple[str, ...]],
                     out: Any) -> tuple[str | None, str | None]:
    raw_matrix = data.get("matrix")
    matrix: dict[str, Any] = raw_matrix if isinstance(raw_matrix, dict) else {}
    names = {a.name for a in axes}
    chosen: dict[str, str | None] = {}
    for key in ("rows", "cols"):
        value = matrix.get(key)
        chosen[key] = None
        if isinstance(value, str) and value in AXES:
            if value not in names:
                out.add(["matrix", key], f"{key} names axis {value!r}, which the recipe does not vary")
            else:
                chosen[key] = value
    rows, cols = chosen["rows"], chosen["cols"]
    if rows and cols:
        same = rows == cols or any(rows in g and cols in g for g in groups)
        if same:
            out.add(["matrix", "cols"], "rows and cols must be different (and not zipped together)")
    return rows, cols


def check_refs(data: dict[str, Any], out: Any, *, settings: Settings) -> tuple[str, ...]:
    """Workflow file, backend names, strategy and validator exist. Returns the backend names."""
    workflow = data.get("workflow")
    if isinstance(workflow, str) and _WORKFLOW_RE.fullmatch(workflow):
        folder = Path(settings.workflows_dir)
        if not (folder / workflow).is_file():
            names = sorted(p.name for p in folder.glob("*.json")) if folder.is_dir() else []
            shown = f"available: {', '.join(names)}" if names else f"no workflows in {folder}"
            out.add(["workflow"], f"unknown workflow {workflow!r} ({shown})")
    if "backend" in data and "backends" in data:
        out.add(["backends"], "use either backend or backends, not both")
    raw = data.get("backends", data.get("backend", "default"))
    known = settings.backend_urls()
    backends: list[str] = []
    if isinstance(raw, dict):
        tags = raw.get("tags")
        if isinstance(tags, list) and tags and all(isinstance(t, str) and _NAME_RE.fullmatch(t) for t in tags):
            backends = settings.backends_tagged(tags)
            if not backends:
                carried = sorted({t for spec in settings.backends.values() for t in spec.tags})
                out.add(["backends", "tags"],
                        f"no backend in settings carries tag(s) {', '.join(map(repr, tags))} "
                        f"(tags in settings: {', '.join(carried) or 'none'}); add tags to COMFY_GEN_BACKENDS")
        raw = []  # the schema reported any other shape
    entries: list[tuple[list[Any], Any]] = (
        [(["backends", i], n) for i, n in enumerate(raw)] if isinstance(raw, list) else [(["backend"], raw)])
    for path, name in entries:
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            continue  # the schema reported it without echoing a possible URL/credential
        if name not in known:
            out.add(path, f"unknown backend {name!r} (known: {', '.join(sorted(known))}); "
                          "define backends in settings (COMFY_GEN_BACKENDS)")
        backends.append(name)
    refinement = data.get("refinement")
    if isinstance(refinement, dict) and isinstance(refinement.get("strategy"), str):
        strategy = refinement["strategy"]
        available = known_strategies()
        if strategy not in available:
            out.add(["refinement", "strategy"],
                    f"unknown strategy {strategy!r} (available: {', '.join(available)})")
    validation = data.get("validation")
    if isinstance(validation, dict) and isinstance(validation.get("validator"), str):
        validator = validation["validator"]
        registered = known_validators()
        if validator not in registered:
            out.add(["validation", "validator"],
                    f"unknown validator {validator!r} (available: {', '.join(registered)})")
    if isinstance(validation, dict) and isinstance(validation.get("checks"), list):
        check_validation_checks(validation["checks"], out)
    return tuple(backends) or ("default",)


def known_strategies() -> list[str]:
    """The refinement strategies registered in comfy_gen.strategies (the one list)."""
    from comfy_gen.strategies import list_strategies

    return list_strategies()


def check_validation_checks(specs: list[Any], out: Any) -> None:
    """Each ``validation.checks`` entry names a registered validator with options it accepts."""
    from comfy_gen.errors import UsageError
    from comfy_gen.validation.plan import build_checks

    for i, spec in enumerate(specs):
        try:
            build_checks([spec])
        except UsageError as exc:
            out.add(["validation", "checks", i], exc.message.removeprefix("checks[0]: "))
    names = [s if isinstance(s, str) else s.get("name") for s in specs if isinstance(s, (str, dict))]
    for name in {n for n in names if isinstance(n, str) and names.count(n) > 1}:
        out.add(["validation", "checks"], f"validator {name!r} is listed twice")


def known_validators() -> list[str]:
    """The validators registered in comfy_gen.validation (imports no model code)."""
    from comfy_gen.validation.base import list_validators

    return list_validators()


def item_count(axes: list[Axis], groups: list[tuple[str, ...]]) -> int:
    zipped = {n for g in groups for n in g}
    sizes = [len(a.values) for a in axes if a.name not in zipped]
    sizes += [min((len(a.values) for a in axes if a.name in g), default=1) for g in groups]
    return math.prod(sizes) if sizes else 1


def parse_sections(data: Any, out: Any, *, settings: Settings, recipe_path: Path,
                   registry: Any = None) -> Sections:
    """Every semantic check after the schema; returns the typed sections."""
    if not isinstance(data, dict):
        data = {}
    name = data.get("name") if isinstance(data.get("name"), str) else "recipe"
    expander = PromptExpander(recipe_path.parent / "wildcards")
    defaults = parse_defaults(data, out)
    backends = check_refs(data, out, settings=settings)
    axes = parse_axes(data, out, expander=expander, salt=name)
    groups = parse_zip(data, axes, out)
    rows, cols = parse_sheet_axes(data, axes, groups, out)
    categories = split_categories(data.get("categories"))
    category_axis = next((a for a in axes if a.name == "categories"), None)
    if not any(a.name == "prompt" for a in axes) and not categories and category_axis is None:
        out.add([], "nothing to render: add prompts, matrix.axes.prompt or categories")
    count = item_count(axes, groups)
    # Sizes only: each axis holds at most MAX_ITEMS values (checked while
    # parsing), so the product is arithmetic, never a list.
    if count > MAX_ITEMS:
        out.add(["matrix"] if "matrix" in data else [], f"expands to {count} items (limit {MAX_ITEMS})")
    if categories or category_axis is not None:
        from comfy_gen.recipes.categories import check_categories

        sets: list[tuple[list[Any], tuple[str, ...]]] = []
        if categories:
            sets.append((["categories"], categories))
        for i, value in enumerate(category_axis.values if category_axis else ()):
            sets.append((["matrix", "axes", "categories", i], categories + value))
        check_categories(sets, out, settings=settings, registry=registry,
                         requested_tier=data.get("policy_tier") if isinstance(data.get("policy_tier"), str) else None)
    return Sections(defaults=defaults, axes=tuple(axes), zip_groups=tuple(groups), rows=rows,
                    cols=cols, categories=categories, backends=backends)


