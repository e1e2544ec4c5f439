"""Fixtures for recipe tests: a throwaway workflows folder, settings, and a recipe writer."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Callable

import pytest

from comfy_gen.config import Settings

BAD_DIR = Path(__file__).resolve().parent / "bad"


@pytest.fixture
def workflows_dir(tmp_path: Path) -> Path:
    """A workflows folder holding stub tiny-sd15.json and other.json (recipes only check names)."""
    folder = tmp_path / "workflows"
    folder.mkdir()
    (folder / "tiny-sd15.json").write_text("{}", encoding="utf-8")
    (folder / "other.json").write_text("{}", encoding="utf-8")
    return folder


@pytest.fixture
def settings(workflows_dir: Path, tmp_path: Path) -> Settings:
    """Settings with two extra named backends and the stub workflows folder."""
    return Settings(workflows_dir=workflows_dir, recipes_dir=tmp_path / "recipes",
                    backends={"gpu1": "http://127.0.0.1:9001", "gpu2": "http://127.0.0.1:9002"})


RecipeWriter = Callable[..., Path]


@pytest.fixture
def write_recipe(tmp_path: Path) -> RecipeWriter:
    """write_recipe(text, name="r.yaml", wildcards={"color": "red\\nblue"}) -> path (dedented)."""
    folder = tmp_path / "recipes"
    folder.mkdir(exist_ok=True)

    def write(text: str, name: str = "r.yaml", wildcards: dict[str, str] | None = None) -> Path:
        path = folder / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        for stem, content in (wildcards or {}).items():
            (folder / "wildcards").mkdir(exist_ok=True)
            (folder / "wildcards" / f"{stem}.txt").write_text(content, encoding="utf-8")
        return path

    return write
