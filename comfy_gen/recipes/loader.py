"""Load a recipe file: YAML (with lines) -> JSON Schema -> semantic checks -> Recipe.

Every problem is collected and raised once, as a RecipeError whose problems read
``file:line: json.path: message``, before anything is queued.
"""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path
from typing import Any, Iterable, Sequence

from comfy_gen.config import Settings, get_settings
from comfy_gen import jsonschemas
from comfy_gen.enhance.options import EnhanceOptions
from comfy_gen.errors import RecipeError
from comfy_gen.inputfile import InputFileError, decode_utf8, read_bounded
from comfy_gen.params import bad_text_paths
from comfy_gen.paths import confine
from comfy_gen.safeyaml import PathElem, YamlDoc, YamlSyntaxError, load_yaml
from comfy_gen.recipes.model import OutputConfig, Recipe, RecipeProblem, RefinementConfig, ValidationConfig
from comfy_gen.recipes.sections import Sections, parse_sections

SCHEMA_PATH = Path(__file__).with_name("recipe.schema.json")
RECIPE_SUFFIXES = (".yaml", ".yml")

# Patterns are unreadable in messages; say what the value must look like instead.
# Backend values are never echoed: a pasted URL may carry credentials.
_PATTERN_MESSAGES: dict[str, str] = {
    "name": "must be a slug: lowercase letters, digits, '-' and '_', starting with a letter or digit",
    "workflow": "must be a workflow file name ending in .json (no folders), e.g. tiny-sd15.json",
    "backend": "must be a backend name from settings (COMFY_GEN_BACKENDS or 'default'), "
               "not a URL or credentials",
    "dir": "must be a relative folder inside the output folder (no leading '/', no '..')",
    "prefix": "may only contain letters, digits, '.', '_' and '-' (and is not '.' or '..')",
    "strategy": "must be a strategy name (lowercase letters, digits, '_')",
    "validator": "must be a validator name (lowercase letters, digits, '_')",
    "size": "must be WIDTHxHEIGHT, e.g. 512x768",
}


def format_path(path: Iterable[PathElem]) -> str:
    """JSON path as ``$.a.b[2]`` (``$`` is the document root)."""
    out = "$"
    for elem in path:
        out += f"[{elem}]" if isinstance(elem, int) else f".{elem}"
    return out


class ProblemCollector:
    """Gathers problems with their line numbers, for one file."""

    def __init__(self, file: str, doc: YamlDoc | None) -> None:
        self.file = file
        self.doc = doc
        self.problems: list[RecipeProblem] = []

    def add(self, path: Sequence[PathElem], message: str, *, line: int | None = None) -> None:
        if line is None:
            line = self.doc.line_of(path) if self.doc is not None else 1
        self.problems.append(RecipeProblem(self.file, line, format_path(path), message))

    def error(self) -> RecipeError:
        """One RecipeError with every problem, sorted by line."""
        problems = sorted(dict.fromkeys(self.problems), key=lambda p: (p.line, p.path, p.message))
        count = len(problems)
        return RecipeError(f"{self.file}: {count} problem{'s' if count != 1 else ''} in recipe", problems,
                           hint="Fix every listed problem; nothing was queued.")

    def raise_if_any(self) -> None:
        if self.problems:
            raise self.error()


def schema() -> dict[str, Any]:
    """The recipe JSON Schema (2020-12) shipped in the package."""
    return jsonschemas.load(SCHEMA_PATH)


def _validator() -> Any:
    return jsonschemas.validator(SCHEMA_PATH)


def schema_problems(data: Any, out: ProblemCollector) -> None:
    """Add one problem per JSON Schema violation (oneOf errors narrowed to the likely branch)."""
    for err in _validator().iter_errors(data):
        _add_schema_error(err, out)


def _add_schema_error(err: Any, out: ProblemCollector) -> None:
    path = list(err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        for key in sorted(set(err.instance) - set(allowed), key=str):
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
            out.add([*path, key], f"unknown property {key!r}{hint}")
        return
    if err.validator in ("oneOf", "anyOf") and err.context:
        # Branches whose type matched explain the problem best ("stop is required"
        # rather than "is not valid under any of the given schemas").
        relevant = [e for e in err.context if not (e.validator == "type" and not e.relative_path)]
        if relevant:
            import jsonschema.exceptions

            _add_schema_error(jsonschema.exceptions.best_match(relevant), out)
            return
        if path and path[-1] == "backends":
            # Never echoed: a pasted URL may carry credentials.
            out.add(path, "must be a list of backend names from settings (COMFY_GEN_BACKENDS or 'default') "
                          "or {tags: [...]}, not a URL or credentials")
            return
        description = err.schema.get("description", "a different value")
        out.add(path, f"{_short(err.instance)} is not valid here: expected {_lower_first(description)}")
        return
    if err.validator == "pattern":
        key = next((p for p in reversed(path) if isinstance(p, str)), "")
        key = "backend" if key == "backends" else key
        if key in _PATTERN_MESSAGES:
            shown = "" if key == "backend" else f" (got {_short(err.instance)})"
            out.add(path, _PATTERN_MESSAGES[key] + shown)
            return
    out.add(path, err.message)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:].rstrip(".")


def default_allowed_dirs(settings: Settings) -> list[Path]:
    """Folders the flow/API/MCP accept recipe paths from: the recipes folder, cwd
    and any extra folders in settings (``COMFY_GEN_RECIPE_DIRS``)."""
    return [Path(settings.recipes_dir), Path.cwd(), *settings.recipe_dirs]


def resolve_recipe_path(path_or_name: str | Path, *, settings: Settings | None = None,
                        allowed_dirs: Sequence[str | Path] | None = None) -> Path:
    """A recipe path, or a bare name looked up in the recipes folder (``demo`` ->
    ``recipes/demo.yaml``). With ``allowed_dirs`` the result must lie inside one
    of them (PathNotAllowed otherwise); without, any path is accepted (the CLI).
    """
    settings = settings or get_settings()
    candidate = Path(path_or_name).expanduser()
    if not candidate.suffix and len(candidate.parts) == 1:
        for suffix in RECIPE_SUFFIXES:
            named = Path(settings.recipes_dir) / f"{candidate.name}{suffix}"
            if named.is_file():
                candidate = named
                break
    if allowed_dirs is not None:
        return confine(candidate, allowed_dirs, base=Path.cwd())
    try:
        return candidate.resolve()
    except (OSError, RuntimeError):  # a symlink loop: reading the file reports it, naming the file
        return candidate.absolute()


def load_recipe(path: str | Path, *, settings: Settings | None = None,
                allowed_dirs: Sequence[str | Path] | None = None, registry: Any = None) -> Recipe:
    """Read, validate and freeze one recipe file; RecipeError lists every problem.

    ``allowed_dirs`` confines the path (flow, API, MCP); the CLI passes None.
    ``registry`` is a categories registry (loaded from settings when needed).
    """
    settings = settings or get_settings()
    display = str(path)
    resolved = resolve_recipe_path(path, settings=settings, allowed_dirs=allowed_dirs)
    try:
        content = read_bounded(resolved)
        text = decode_utf8(content)
    except InputFileError as exc:
        raise RecipeError(f"{display}: cannot read the recipe file",
                          [RecipeProblem(display, exc.line, "$", exc.message)]) from exc
    try:
        doc = load_yaml(text)
    except YamlSyntaxError as exc:
        out = ProblemCollector(display, None)
        out.add([], exc.message, line=exc.line)
        raise out.error() from exc
    out = ProblemCollector(display, doc)
    if not isinstance(doc.data, dict):
        out.add([], "a recipe must be a mapping (name:, workflow:, prompts: ...)")
        out.raise_if_any()
    for dup_path, line in doc.duplicates:
        out.add(list(dup_path), "duplicate key (the later value would silently win)", line=line)
    for bad_path, problem in bad_text_paths(doc.data):
        out.add(bad_path, problem)
    schema_problems(doc.data, out)
    # Semantic checks run even when the schema failed, on whatever is well-typed,
    # so one run reports everything.
    sections = parse_sections(doc.data, out, settings=settings, recipe_path=resolved, registry=registry)
    out.raise_if_any()
    return _build(doc.data, sections, doc, path=resolved, sha256=hashlib.sha256(content).hexdigest())


def _build(data: dict[str, Any], sections: Sections, doc: YamlDoc, *, path: Path, sha256: str) -> Recipe:
    name = str(data["name"])
    validation = data.get("validation", {})
    refinement = data.get("refinement", {})
    output = data.get("output", {})
    category_paths: list[list[PathElem]] = [["categories"]]
    category_axis = next((a for a in sections.axes if a.name == "categories"), None)
    if category_axis is not None:
        category_paths += [["matrix", "axes", "categories", i] for i in range(len(category_axis.values))]
    lines = {format_path(p): doc.line_of(p) for p in category_paths}
    return Recipe(
        name=name, description=str(data.get("description", "")), path=path, sha256=sha256, raw=data,
        workflow=str(data["workflow"]), backends=sections.backends, defaults=sections.defaults,
        axes=sections.axes, zip_groups=sections.zip_groups, rows_axis=sections.rows,
        cols_axis=sections.cols, categories=sections.categories,
        validation=ValidationConfig(
            enabled=bool(validation.get("enabled", False)),
            validator=str(validation.get("validator", "clip")),
            positive_threshold=float(validation.get("positive_threshold", ValidationConfig.positive_threshold)),
            delta_threshold=(float(validation["delta_threshold"])
                             if validation.get("delta_threshold") is not None else None),
            allow_skip=bool(validation.get("allow_skip", False)),
            checks=tuple(validation.get("checks") or ()),
            technical=None if validation.get("technical") is None else bool(validation["technical"])),
        refinement=RefinementConfig(
            strategy=str(refinement.get("strategy", RefinementConfig.strategy)),
            max_attempts=int(refinement.get("max_attempts", RefinementConfig.max_attempts))),
        output=OutputConfig(
            dir=str(output.get("dir", name)), prefix=str(output.get("prefix", name)),
            upload=bool(output.get("upload", False)), contact_sheet=bool(output.get("contact_sheet", False))),
        nightly=bool(data.get("nightly", False)),
        policy_tier=data.get("policy_tier"),
        stage_tasks=_stage_tasks(data.get("stage_tasks", "auto")),
        enhance=_enhance(data.get("enhance")),
        lines=lines,
    )


def _enhance(value: object) -> EnhanceOptions:
    # The section exists to switch enhancement on: `enabled` defaults to true when it is given.
    if not isinstance(value, dict):
        return EnhanceOptions()
    style = value.get("style")
    return EnhanceOptions(enabled=bool(value.get("enabled", True)), style=None if style is None else str(style))


def _stage_tasks(value: object) -> str:
    # YAML 1.1 reads a bare `on`/`off` as a boolean; the schema allows both spellings.
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)
