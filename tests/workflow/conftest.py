"""Fixtures for workflow tests: the recorded object_info and small graph builders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RECORDINGS, REPO_ROOT

OBJECT_INFO_PATH = RECORDINGS / "captures" / "files" / "object_info_full.json"
SHIPPED_DIR = REPO_ROOT / "workflows"
RECORDED_DIR = RECORDINGS / "workflows"


@pytest.fixture(scope="session")
def object_info() -> dict[str, Any]:
    """The full /object_info of the recorded ComfyUI (tiny_sd15 models only)."""
    return json.loads(OBJECT_INFO_PATH.read_text())


def node(cls: str, title: str | None = None, **inputs: Any) -> dict[str, Any]:
    """An API-format node; links are written as ("id", index) tuples or lists."""
    out: dict[str, Any] = {"class_type": cls,
                           "inputs": {k: list(v) if isinstance(v, tuple) else v for k, v in inputs.items()}}
    if title:
        out["_meta"] = {"title": title}
    return out


def load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
