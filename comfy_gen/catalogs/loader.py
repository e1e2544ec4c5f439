"""Loading the catalogs: bounded read, bounded YAML, JSON Schema, then frozen values.

A catalog is a file the user points at (``COMFY_GEN_LORA_CATALOG_FILE``,
``COMFY_GEN_PROMPT_CATALOG_FILE``); when set, it is used *instead of* the
shipped sample, because a catalog describes one person's LoRA collection and
sample entries for files their server lacks would only mislead suggestions.
Every problem of a file is reported at once, with its line (ProblemListError,
exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from comfy_gen import jsonschemas
from comfy_gen.catalogs.model import LoraCatalog, LoraEntry, ModelScenario, PromptCatalog, PromptPreset
from comfy_gen.errors import ProblemListError
from comfy_gen.inputfile import InputFileError, read_text
from comfy_gen.safeyaml import YamlDoc, YamlSyntaxError, load_yaml

HERE = Path(__file__).resolve().parent
SHIPPED_LORA_CATALOG = HERE / "lora_catalog.yaml"
SHIPPED_PROMPT_CATALOG = HERE / "prompt_catalog.yaml"
LORA_SCHEMA = HERE / "lora_catalog.schema.json"
PROMPT_SCHEMA = HERE / "prompt_catalog.schema.json"


def load_lora_catalog(path: str | Path | None = None) -> LoraCatalog:
    """The LoRA catalog at ``path`` (default: the shipped sample)."""
    path = Path(path) if path else SHIPPED_LORA_CATALOG
    data = _load(path, LORA_SCHEMA, "LoRA catalog")
    loras = tuple(
        LoraEntry(filename=item["filename"], description=item.get("description", ""),
                  tags=tuple(item.get("tags", ())), use_cases=tuple(item.get("use_cases", ())),
                  compatible_with=tuple(item.get("compatible_with", ())), base_model=item.get("base_model"),
                  recommended_strength=_float(item.get("recommended_strength")),
                  category=item.get("category"), source=item.get("source"))
        for item in data.get("loras", ()))
    scenarios = {
        str(name): ModelScenario(name=str(name), model=item["model"], workflow=item.get("workflow"),
                                 description=item.get("description", ""),
                                 default_loras=tuple(item.get("default_loras", ())),
                                 keywords=tuple(item.get("keywords", ())),
                                 prompt_template=item.get("prompt_template"),
                                 negative_template=item.get("negative_template"))
        for name, item in (data.get("model_suggestions") or {}).items()}
    return LoraCatalog(loras=loras, model_suggestions=scenarios,
                       agent_tips=tuple(data.get("agent_tips", ())), source=str(path))


def load_prompt_catalog(path: str | Path | None = None) -> PromptCatalog:
    """The prompt catalog at ``path`` (default: the shipped sample)."""
    path = Path(path) if path else SHIPPED_PROMPT_CATALOG
    data = _load(path, PROMPT_SCHEMA, "prompt catalog")
    prompts = {
        str(name): PromptPreset(name=str(name), positive=item["positive"], negative=item.get("negative"),
                                category=item.get("category"), subject=item.get("subject"),
                                tested_with=tuple(item.get("tested_with", ())), notes=item.get("notes"),
                                recommended_settings=dict(item.get("recommended_settings") or {}),
                                recommended_loras=tuple(item.get("recommended_loras", ())))
        for name, item in (data.get("saved_prompts") or {}).items()}
    return PromptCatalog(saved_prompts=prompts, source=str(path))


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _load(path: Path, schema: Path, what: str) -> dict[str, Any]:
    """The checked document; ProblemListError with ``file:line: $.path: message`` lines."""
    try:
        doc = load_yaml(read_text(path))
    except InputFileError as exc:
        raise ProblemListError(f"Cannot read the {what} {path}", [f"{path}:{exc.line}: {exc.message}"],
                               hint=_hint(what)) from exc
    except YamlSyntaxError as exc:
        raise ProblemListError(f"The {what} {path} is not valid YAML", [f"{path}:{exc.line}: {exc.message}"],
                               hint=_hint(what)) from exc
    problems = [f"{path}:{line}: {_dotted(dup)}: duplicate key (the later value would silently win)"
                for dup, line in doc.duplicates]
    if not isinstance(doc.data, dict):
        problems.append(f"{path}:1: $: expected a mapping")
    else:
        problems += _schema_problems(doc, path, schema)
    if problems:
        raise ProblemListError(f"The {what} {path} has {len(problems)} problem(s)", problems, hint=_hint(what))
    return doc.data


def _schema_problems(doc: YamlDoc, path: Path, schema: Path) -> list[str]:
    problems = []
    for err in sorted(jsonschemas.validator(schema).iter_errors(doc.data), key=lambda e: list(map(str, e.path))):
        where = list(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = sorted(err.schema.get("properties", {}))
            for key in sorted(set(err.instance) - set(allowed), key=str):
                at = [*where, key]  # the unknown key's own line
                problems.append(f"{path}:{doc.line_of(at)}: {_dotted(at)}: unknown property "
                                f"(allowed: {', '.join(allowed)})")
            continue
        problems.append(f"{path}:{doc.line_of(where)}: {_dotted(where)}: {err.message}")
    return problems


def _dotted(where: Any) -> str:
    out = "$"
    for elem in where:
        out += f"[{elem}]" if isinstance(elem, int) else f".{elem}"
    return out


def _hint(what: str) -> str:
    setting = "COMFY_GEN_LORA_CATALOG_FILE" if what.startswith("LoRA") else "COMFY_GEN_PROMPT_CATALOG_FILE"
    return f"Fix the file, or unset {setting} to use the shipped sample."
