"""Schema and semantic checks: a corpus of broken files, each with its specific error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from comfy_gen.categories import load_file, load_registry, schema
from comfy_gen.errors import CategoryError
from tests.categories.conftest import BROKEN_DIR, make_category, write_categories
from tests.conftest import REPO_ROOT

# file stem -> (field path, message) of the one error that file must produce.
BROKEN: dict[str, tuple[str, str]] = {
    "missing_id": ("", "'id' is a required property"),
    "missing_version": ("", "'schema_version' is a required property"),
    "bad_version": ("schema_version", "unsupported schema_version 2.0.0 (this comfy-gen reads 1.x)"),
    "bad_id_pattern": ("id", "'Bad-Id' is not a valid id (lower-case letter, then a-z, 0-9 or _)"),
    "bad_type": ("type", "'scene' is not one of subject, setting, modifier, style"),
    "bad_tier": ("policy_tier", "'adult' is not one of general, mature, explicit"),
    "empty_primary": ("keywords.primary", "[] should be non-empty"),
    "extra_field": ("", "Additional properties are not allowed ('colour' was unexpected)"),
    "bad_fragment_type": ("prompts.positive_fragments.required", "'detailed face' is not of type 'array'"),
    "lora_strength": ("loras.recommended[0].strength", "3 is greater than the maximum of 2"),
    "lora_no_filename": ("loras.required[0]", "'filename' is a required property"),
    "lora_used_and_avoided": ("loras.avoid", "LoRAs both used and avoided: film_grain.safetensors"),
    "bad_condition": ("loras.recommended[0].condition",
                      "'if anime' is not a condition (comma-separated with:<id>, without:<id>, "
                      "workflow:<file>, text:<phrase>)"),
    "steps_default_above_max": ("settings.steps.default", "default 80 is above max 60"),
    "steps_min_gt_max": ("settings.steps.min", "min 50 is greater than max 20"),
    "cfg_out_of_range": ("settings.cfg.max", "40 is greater than the maximum of 30"),
    "size_not_multiple": ("settings.size.width", "1001 is not a multiple of 8"),
    "width_without_height": ("settings.size", "'height' is a dependency of 'width'"),
    "bad_aspect": ("settings.size.aspect_ratio", "'wide' is not an aspect ratio like 3:2"),
    "preferred_and_excluded": ("workflows.excluded", "workflows both preferred and excluded: flux-dev.json"),
    "priority_range": ("composition.priority", "150 is greater than the maximum of 100"),
    "max_per_type_zero": ("composition.max_per_type", "0 is less than the minimum of 1"),
    "self_conflict": ("composition.conflicts_with", "a category cannot list itself ('self_conflict')"),
    "requires_and_conflicts": ("composition.requires", "ids both required and conflicting: night"),
    "wrapped_bad_type": ("category.type", "'person' is not one of subject, setting, modifier, style"),
    "not_mapping": ("", "the file must hold one mapping (a category), got list"),
    "bad_yaml": ("", "invalid YAML (line 9, column 1): expected ',' or ']', but got '<stream end>'"),
}


def test_corpus_is_complete() -> None:
    stems = {p.stem for p in BROKEN_DIR.glob("*.yaml")}
    assert stems == set(BROKEN) and len(stems) >= 15


@pytest.mark.parametrize("stem", sorted(BROKEN), ids=sorted(BROKEN))
def test_broken_file_reports_its_error(stem: str) -> None:
    path = BROKEN_DIR / f"{stem}.yaml"
    cat, problems = load_file(path)
    errors = [p for p in problems if p.severity == "error"]
    assert cat is None
    assert [(p.path, p.message) for p in errors] == [BROKEN[stem]]
    assert errors[0].file == str(path)
    assert str(errors[0]).startswith(f"{path}: ")


def test_non_strict_registry_skips_every_broken_file() -> None:
    reg = load_registry(paths=[BROKEN_DIR], strict=False)
    assert len(reg) == 0
    assert {Path(p.file).stem for p in reg.errors} == set(BROKEN)


def test_strict_registry_raises_with_every_problem() -> None:
    with pytest.raises(CategoryError) as info:
        load_registry(paths=[BROKEN_DIR], strict=True)
    exc = info.value
    assert len(exc.problems) == len(BROKEN)
    text = str(exc)
    for stem, (_, message) in BROKEN.items():
        assert f"{stem}.yaml" in text and message in text
    assert len(exc.to_dict()["problems"]) == len(BROKEN)


def test_legacy_wrapper_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "legacy.yaml"
    path.write_text(yaml.safe_dump({"category": make_category("legacy")}))
    cat, problems = load_file(path)
    assert cat is not None and cat.id == "legacy" and problems == []


@pytest.mark.parametrize(("overrides", "path", "message"), [
    pytest.param({"settings": {"size": {"width": 1024, "height": 768, "aspect_ratio": "1:1"}}},
                 "settings.size.aspect_ratio", "1:1 does not match size 1024x768 (ratio 1.333)", id="aspect"),
    pytest.param({"workflows": {"required_capabilities": ["teleport"]}}, "workflows.required_capabilities[0]",
                 "unknown capability 'teleport'", id="capability"),
], )
def test_semantic_warnings_keep_the_file(tmp_path: Path, overrides: dict, path: str, message: str) -> None:
    write_categories(tmp_path, [make_category("warned", **overrides)])
    cat, problems = load_file(tmp_path / "subjects" / "warned.yaml")
    assert cat is not None
    assert [(p.path, p.severity) for p in problems] == [(path, "warning")]
    assert problems[0].message.startswith(message)


def test_aspect_tolerance_accepts_model_friendly_sizes(tmp_path: Path) -> None:
    # 1216x832 is 1.4615, within 5% of 3:2.
    write_categories(tmp_path, [make_category("sdxl_size", settings={"size": {
        "width": 1216, "height": 832, "aspect_ratio": "3:2"}})])
    _, problems = load_file(tmp_path / "subjects" / "sdxl_size.yaml")
    assert problems == []


def test_file_name_and_folder_mismatch_are_warnings(tmp_path: Path) -> None:
    folder = tmp_path / "styles"
    folder.mkdir()
    (folder / "other_name.yaml").write_text(yaml.safe_dump(make_category("real_id", "subject")))
    cat, problems = load_file(folder / "other_name.yaml")
    assert cat is not None
    assert [(p.path, p.severity) for p in problems] == [("id", "warning"), ("type", "warning")]


def _properties(node: dict, prefix: str = "") -> list[tuple[str, dict]]:
    out = []
    for name, sub in node.get("properties", {}).items():
        out.append((prefix + name, sub))
        out += _properties(sub, prefix + name + ".")
    return out


def test_every_schema_property_is_described_and_documented() -> None:
    doc = (REPO_ROOT / "docs" / "categories.md").read_text()
    props = _properties(schema())
    assert len(props) > 30
    for name, sub in props:
        assert sub.get("description"), f"{name} has no description in schema.json"
        leaf = name.rsplit(".", 1)[-1]
        assert re.search(rf"`{re.escape(leaf)}`", doc), f"{name} is not documented in docs/categories.md"


def test_schema_is_valid_2020_12() -> None:
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(schema())
    assert schema()["$schema"].endswith("2020-12/schema")
