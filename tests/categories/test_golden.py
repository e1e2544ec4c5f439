"""Golden-file tests: shipped library + input text -> exact recipe and explanation JSON.

Regenerate only on purpose: ``CATEGORIES_UPDATE_GOLDEN=1 pytest tests/categories/test_golden.py``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import yaml

from comfy_gen.categories import CategoryRegistry, compose
from comfy_gen.errors import ComfyGenError
from tests.categories.conftest import GOLDEN_DIR

CASES: list[dict[str, Any]] = yaml.safe_load((GOLDEN_DIR / "cases.yaml").read_text())
UPDATE = os.environ.get("CATEGORIES_UPDATE_GOLDEN") == "1"


def _run(case: dict[str, Any], registry: CategoryRegistry) -> dict[str, Any]:
    options = case.get("options", {})
    try:
        comp = compose(case["input"], registry=registry, **options)
    except ComfyGenError as exc:
        # Failures are golden too: the exact error body the API would return.
        return {"input": case["input"], "options": options, "error": exc.to_dict()}
    return {"input": case["input"], "options": options, **comp.to_dict()}


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_every_golden_file_has_a_case() -> None:
    names = {c["name"] for c in CASES}
    assert len(names) == len(CASES) >= 8
    assert {p.stem for p in GOLDEN_DIR.glob("*.json")} == names


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden(case: dict[str, Any], shipped: CategoryRegistry) -> None:
    path = GOLDEN_DIR / f"{case['name']}.json"
    actual = _dump(_run(case, shipped))
    if UPDATE:
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"missing {path.name}; run with CATEGORIES_UPDATE_GOLDEN=1 to create it"
    assert actual == path.read_text(encoding="utf-8")


def test_composition_is_deterministic(shipped: CategoryRegistry) -> None:
    first = compose(CASES[0]["input"], registry=shipped)
    second = compose(CASES[0]["input"], registry=shipped)
    assert first.to_dict() == second.to_dict()
