"""Every shipped and recorded workflow, composed with fixed params, matches its golden file."""

from __future__ import annotations

import os

import pytest

from tests.workflow._cases import cases, golden_path, render

CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_composed_workflow_matches_golden(case):
    actual = render(case)
    path = golden_path(case)
    if os.environ.get("UPDATE_GOLDENS") == "1":
        path.write_text(actual)
    assert path.exists(), f"missing golden {path.name}: run python -m tests.workflow.regen_goldens"
    assert actual == path.read_text(), f"{path.name} differs; if intended, run python -m tests.workflow.regen_goldens"


def test_every_golden_file_has_a_case():
    names = {golden_path(c).name for c in CASES}
    on_disk = {p.name for p in golden_path(CASES[0]).parent.glob("*.json")}
    assert on_disk == names
