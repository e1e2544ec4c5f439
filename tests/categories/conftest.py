"""Helpers for category tests: build small category files in tmp folders and load them for real."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from comfy_gen.categories import CategoryRegistry, clear_registry_cache, load_registry

HERE = Path(__file__).resolve().parent
BROKEN_DIR = HERE / "broken"
GOLDEN_DIR = HERE / "golden"


def make_category(cid: str, type_: str = "subject", **overrides: Any) -> dict[str, Any]:
    """A minimal valid category dict; ``overrides`` are merged one level deep."""
    data: dict[str, Any] = {
        "schema_version": "1.0.0", "id": cid, "type": type_, "display_name": cid.replace("_", " ").title(),
        "keywords": {"primary": [cid.replace("_", " ")]},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **copy.deepcopy(value)}
        else:
            data[key] = copy.deepcopy(value)
    return data


def write_categories(folder: Path, categories: list[dict[str, Any]]) -> Path:
    """Write each dict as <folder>/<type>s/<id>.yaml, like the shipped library."""
    for cat in categories:
        sub = folder / f"{cat.get('type', 'subject')}s"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{cat['id']}.yaml").write_text(yaml.safe_dump(cat, sort_keys=False))
    return folder


@pytest.fixture
def build_registry(tmp_path: Path) -> Callable[..., CategoryRegistry]:
    """build_registry([dicts], strict=False) -> a registry loaded from a fresh tmp folder."""
    counter = {"n": 0}

    def build(categories: list[dict[str, Any]], *, strict: bool = False) -> CategoryRegistry:
        counter["n"] += 1
        folder = write_categories(tmp_path / f"cats{counter['n']}", categories)
        return load_registry(paths=[folder], strict=strict)

    return build


@pytest.fixture(scope="session")
def shipped() -> CategoryRegistry:
    """The shipped starter library only (no user folders)."""
    from comfy_gen.categories import LIBRARY_DIR

    return load_registry(paths=[LIBRARY_DIR], strict=True)


@pytest.fixture(autouse=True)
def _fresh_registry_cache():
    clear_registry_cache()
    yield
    clear_registry_cache()
