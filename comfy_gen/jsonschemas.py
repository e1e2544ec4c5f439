"""Shipped JSON Schemas (2020-12): loaded and compiled once per process."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any


@functools.lru_cache(maxsize=None)
def load(path: Path) -> dict[str, Any]:
    """The schema document at ``path``."""
    data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return data


@functools.lru_cache(maxsize=None)
def validator(path: Path) -> Any:
    """A compiled ``Draft202012Validator`` for the schema at ``path`` (jsonschema imported lazily)."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load(path))
