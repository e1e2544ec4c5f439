"""The registry: shipped library, user overrides, duplicates, strict mode, lookup and search."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from comfy_gen.categories import (
    LIBRARY_DIR,
    WORKFLOW_CAPABILITIES,
    CategoryRegistry,
    UnknownCategory,
    get_registry,
    load_registry,
)
from comfy_gen.config import Settings
from comfy_gen.errors import CategoryError, ConfigError
from tests.categories.conftest import make_category, write_categories
from tests.conftest import REPO_ROOT

REQUIRED_IDS = {"portrait", "landscape", "city", "car", "animal", "product_shot", "food", "interior", "night",
                "golden_hour", "rain", "fog", "watercolor", "anime", "photorealistic", "cinematic", "low_poly",
                "studio_lighting", "macro", "aerial"}
EMULATOR_LORAS = {"detail_tweaker.safetensors", "film_grain.safetensors", "tiny_sd15_lora.safetensors"}
SHIPPED_WORKFLOWS = {"sd15-txt2img.json", "sdxl-txt2img.json", "flux-dev.json", "tiny-sd15.json"}


def test_shipped_library_is_clean_and_neutral(shipped: CategoryRegistry) -> None:
    assert shipped.problems == [] and shipped.notices == []
    assert REQUIRED_IDS <= set(shipped.ids()) and len(shipped) >= 20
    for cat in shipped:
        assert cat.policy_tier == "general"
        assert cat.source.parent.name == f"{cat.type}s" and cat.source.stem == cat.id
        loras = {x.filename for x in (*cat.loras_required, *cat.loras_recommended)} | set(cat.loras_avoid)
        assert loras <= EMULATOR_LORAS, cat.id
        assert set(cat.preferred_workflows) | set(cat.excluded_workflows) <= SHIPPED_WORKFLOWS, cat.id
        assert set(cat.required_capabilities) <= {c for caps in WORKFLOW_CAPABILITIES.values() for c in caps}
    assert {c.type for c in shipped} == set(shipped.types())


def test_default_registry_uses_library_plus_user_paths(tmp_path: Path, caplog) -> None:
    user = write_categories(tmp_path / "mine", [
        make_category("night", "setting", display_name="My night"),
        make_category("snow", "setting"),
    ])
    with caplog.at_level(logging.WARNING, logger="comfy_gen.categories.registry"):
        reg = load_registry(Settings(categories_paths=[user]))
    assert reg.get("night").display_name == "My night"
    assert reg.get("night").source == user / "settings" / "night.yaml"
    assert "snow" in reg and "portrait" in reg
    assert len(reg.notices) == 1 and "'night'" in reg.notices[0] and "overrides" in reg.notices[0]
    assert any("overrides" in r.getMessage() for r in caplog.records)
    assert reg.roots == [LIBRARY_DIR, user]


def test_duplicate_id_in_one_folder_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "dups"
    write_categories(folder, [make_category("twin")])
    (folder / "zz_twin_copy.yaml").write_text(yaml.safe_dump(make_category("twin", display_name="Copy")))
    reg = load_registry(paths=[folder], strict=False)
    assert reg.get("twin").display_name == "Twin"
    [err] = reg.errors
    assert err.file.endswith("zz_twin_copy.yaml") and err.path == "id"
    assert err.message.startswith("duplicate id 'twin', already defined in ")
    with pytest.raises(CategoryError, match="1 problem"):
        load_registry(paths=[folder], strict=True)


def test_strict_comes_from_settings(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "bad.yaml").write_text("id: [")
    with pytest.raises(CategoryError):
        load_registry(Settings(categories_paths=[folder], categories_strict=True))
    reg = load_registry(Settings(categories_paths=[folder]))
    assert len(reg.errors) == 1 and "portrait" in reg


def test_warnings_do_not_fail_strict_mode(tmp_path: Path) -> None:
    folder = write_categories(tmp_path / "w", [make_category("lonely", composition={"enhances": ["ghost"]})])
    reg = load_registry(paths=[folder, tmp_path / "missing"], strict=True)
    assert [(p.path, p.message, p.severity) for p in reg.problems] == [
        ("", "category folder does not exist", "warning"),
        ("composition.enhances[0]", "unknown category id 'ghost'", "warning"),
    ]


def test_get_unknown_raises_config_error_with_suggestions(shipped: CategoryRegistry) -> None:
    with pytest.raises(UnknownCategory) as info:
        shipped.get("watercolour_x")
    assert isinstance(info.value, ConfigError)
    assert info.value.suggestions[0] == "watercolor"
    assert "Did you mean: watercolor" in str(info.value)
    assert shipped.get("NIGHT").id == "night"


def test_list_by_type_and_order(shipped: CategoryRegistry) -> None:
    styles = shipped.list(type="style")
    assert [c.id for c in styles] == sorted(c.id for c in styles) and {c.type for c in styles} == {"style"}
    everything = shipped.list()
    assert [c.type for c in everything] == sorted((c.type for c in everything), key=shipped.types().index)
    with pytest.raises(ConfigError):
        shipped.list(type="scene")


def test_search_ranks_id_then_keyword_hits(shipped: CategoryRegistry) -> None:
    assert [c.id for c in shipped.search("night")][0] == "night"
    assert [c.id for c in shipped.search("Golden Hour")][0] == "golden_hour"
    ids = [c.id for c in shipped.search("rainy street")]
    assert ids[:2] == ["rain", "city"]
    assert shipped.search("") == [] and shipped.search("xylophone") == []
    # whole words only: "car" does not find "cartoon"-like substrings elsewhere
    assert "car" in [c.id for c in shipped.search("car")]
    assert all("car" != c.id for c in shipped.search("cards"))


def test_get_registry_caches_and_reloads(tmp_path: Path) -> None:
    folder = write_categories(tmp_path / "live", [make_category("first")])
    settings = Settings(categories_paths=[folder])
    reg = get_registry(settings)
    assert get_registry(settings) is reg and "first" in reg
    write_categories(folder, [make_category("second")])
    assert "second" not in get_registry(settings)
    assert "second" in get_registry(settings, reload=True)


def test_docs_example_is_a_valid_category(tmp_path: Path) -> None:
    doc = (REPO_ROOT / "docs" / "categories.md").read_text()
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "night.yaml").write_text(example)
    from comfy_gen.categories import load_file

    cat, problems = load_file(tmp_path / "night.yaml")
    assert problems == [] and cat is not None and cat.id == "night"
