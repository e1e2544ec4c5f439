"""Read and check one category file: YAML -> JSON Schema (2020-12) -> semantic checks.

Every problem is collected (file, field path, message, severity) instead of stopping
at the first, so one run of `comfy-gen categories list` shows everything to fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from comfy_gen import jsonschemas
from comfy_gen.categories.model import TYPE_FOLDERS, Category
from comfy_gen.inputfile import InputFileError, read_text
from comfy_gen.params import bad_text_paths
from comfy_gen.safeyaml import YamlSyntaxError, load_data

SCHEMA_PATH = Path(__file__).with_name("schema.json")
SUPPORTED_MAJOR = 1
#: Relative tolerance when comparing a declared aspect ratio with width/height:
#: model-friendly sizes (multiples of 64) rarely hit a ratio exactly.
ASPECT_TOLERANCE = 0.05


@dataclass(frozen=True)
class CategoryProblem:
    """One problem in one file. ``path`` is a dotted field path ('' = the file itself)."""

    file: str
    path: str
    message: str
    severity: str = "error"  # error | warning

    def __str__(self) -> str:
        return f"{self.file}: {self.path or '<root>'}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return {"file": self.file, "path": self.path, "message": self.message, "severity": self.severity}


def schema() -> dict[str, Any]:
    """The category JSON Schema shipped with the package."""
    return jsonschemas.load(SCHEMA_PATH)


def _validator() -> Any:
    return jsonschemas.validator(SCHEMA_PATH)


def format_path(parts: Iterable[Any]) -> str:
    """['loras', 'recommended', 0, 'strength'] -> 'loras.recommended[0].strength'."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_file(path: Path) -> tuple[Category | None, list[CategoryProblem]]:
    """Parse and check one file; the category is None when any error was found."""
    name = str(path)
    try:
        data = load_data(read_text(path))
    except InputFileError as exc:
        return None, [CategoryProblem(name, "", exc.message)]
    except YamlSyntaxError as exc:
        cause = exc.__cause__
        mark = getattr(cause, "problem_mark", None)
        if isinstance(cause, yaml.MarkedYAMLError) and mark is not None:
            where = f" (line {mark.line + 1}, column {mark.column + 1})"
            problem = cause.problem or str(cause)
        else:  # a limit of the bounded loader (aliases, depth): its own message
            where, problem = f" (line {exc.line})", exc.message
        return None, [CategoryProblem(name, "", f"invalid YAML{where}: {problem}")]
    prefix: list[Any] = []
    # Accept the original's `{category: {...}}` wrapper so old files keep loading.
    if isinstance(data, dict) and set(data) == {"category"} and isinstance(data["category"], dict):
        data, prefix = data["category"], ["category"]
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        return None, [CategoryProblem(name, "", f"the file must hold one mapping (a category), got {kind}")]
    problems = validate_data(data, file=name, prefix=prefix)
    if any(p.severity == "error" for p in problems):
        return None, problems
    problems += semantic_checks(data, file=name, prefix=prefix, stem=path.stem, folder=path.parent.name)
    if any(p.severity == "error" for p in problems):
        return None, problems
    return Category.from_dict(data, source=path), problems


def validate_data(data: dict[str, Any], *, file: str = "<data>", prefix: list[Any] | None = None
                  ) -> list[CategoryProblem]:
    """Every JSON Schema violation, sorted by field path."""
    prefix = prefix or []
    problems = []
    for err in _validator().iter_errors(data):
        problems.append(CategoryProblem(file, format_path([*prefix, *err.absolute_path]), _message(err)))
    return sorted(set(problems), key=lambda p: (p.path, p.message))


_PATTERN_TEXT = {
    "^[a-z][a-z0-9_]*$": "a valid id (lower-case letter, then a-z, 0-9 or _)",
    "^\\d+\\.\\d+\\.\\d+$": "a version like 1.0.0",
    "^[1-9]\\d*:[1-9]\\d*$": "an aspect ratio like 3:2",
    "[A-Za-z0-9]": "a keyword (it needs a letter or digit)",
}


def _message(err: Any) -> str:
    # jsonschema's text for patterns and enums is precise but repeats the whole value;
    # these rewrites keep messages short and say what is expected.
    if err.validator == "pattern":
        what = _PATTERN_TEXT.get(err.validator_value)
        if what:
            return f"{err.instance!r} is not {what}"
        if "with|without" in str(err.validator_value):
            return (f"{err.instance!r} is not a condition (comma-separated with:<id>, without:<id>, "
                    "workflow:<file>, text:<phrase>)")
    if err.validator == "enum":
        return f"{err.instance!r} is not one of {', '.join(map(str, err.validator_value))}"
    return str(err.message)


def semantic_checks(data: dict[str, Any], *, file: str, prefix: list[Any] | None = None,
                    stem: str | None = None, folder: str | None = None) -> list[CategoryProblem]:
    """Checks the schema cannot express: ranges, self references, version, file naming."""
    prefix = prefix or []
    problems: list[CategoryProblem] = []

    def add(path: list[Any], message: str, severity: str = "error") -> None:
        problems.append(CategoryProblem(file, format_path([*prefix, *path]), message, severity))

    for bad_path, problem in bad_text_paths(data):
        add(bad_path, problem)
    major = int(str(data.get("schema_version", "1.0.0")).split(".")[0])
    if major != SUPPORTED_MAJOR:
        add(["schema_version"], f"unsupported schema_version {data['schema_version']} "
                                f"(this comfy-gen reads {SUPPORTED_MAJOR}.x)")
    settings = data.get("settings", {})
    for name in ("steps", "cfg"):
        rng = settings.get(name)
        if rng:
            _check_range(rng, ["settings", name], add)
    size = settings.get("size", {})
    if "width" in size and "aspect_ratio" in size:
        a, b = (int(x) for x in size["aspect_ratio"].split(":"))
        actual, declared = size["width"] / size["height"], a / b
        if abs(actual - declared) / declared > ASPECT_TOLERANCE:
            add(["settings", "size", "aspect_ratio"],
                f"{size['aspect_ratio']} does not match size {size['width']}x{size['height']} "
                f"(ratio {actual:.3f})", "warning")

    cid = data.get("id")
    comp = data.get("composition", {})
    for key in ("conflicts_with", "requires", "enhances"):
        if cid in comp.get(key, ()):
            add(["composition", key], f"a category cannot list itself ({cid!r})")
    both = set(comp.get("conflicts_with", ())) & set(comp.get("requires", ()))
    if both:
        add(["composition", "requires"], f"ids both required and conflicting: {', '.join(sorted(both))}")

    loras = data.get("loras", {})
    used = [x["filename"] for k in ("required", "recommended") for x in loras.get(k, ())]
    avoided = set(used) & set(loras.get("avoid", ()))
    if avoided:
        add(["loras", "avoid"], f"LoRAs both used and avoided: {', '.join(sorted(avoided))}")

    wf = data.get("workflows") or {}
    clash = set(wf.get("preferred", ())) & set(wf.get("excluded", ()))
    if clash:
        add(["workflows", "excluded"], f"workflows both preferred and excluded: {', '.join(sorted(clash))}")
    from comfy_gen.categories.workflows import KNOWN_CAPABILITIES

    for i, cap in enumerate(wf.get("required_capabilities", ())):
        if cap not in KNOWN_CAPABILITIES:
            add(["workflows", "required_capabilities", i],
                f"unknown capability {cap!r} (known: {', '.join(sorted(KNOWN_CAPABILITIES))})", "warning")

    if stem is not None and cid and stem != cid:
        add(["id"], f"id {cid!r} differs from the file name {stem!r}", "warning")
    expected_folder = TYPE_FOLDERS.get(str(data.get("type")))
    if folder is not None and expected_folder and folder in TYPE_FOLDERS.values() and folder != expected_folder:
        add(["type"], f"type {data['type']!r} is in folder {folder!r} (expected {expected_folder!r})", "warning")
    return problems


def _check_range(rng: dict[str, Any], path: list[Any], add: Any) -> None:
    lo, hi, default = rng.get("min"), rng.get("max"), rng.get("default")
    if lo is not None and hi is not None and lo > hi:
        add([*path, "min"], f"min {lo} is greater than max {hi}")
    if default is not None and lo is not None and default < lo:
        add([*path, "default"], f"default {default} is below min {lo}")
    if default is not None and hi is not None and default > hi:
        add([*path, "default"], f"default {default} is above max {hi}")
