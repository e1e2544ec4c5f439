"""A recipe with validation.checks [person, pose, content] through the render-recipe flow,
against the emulator, on the tiny models (the tiny detector sees 3 people in any image)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfy_gen.config import reset_settings_cache
from comfy_gen.errors import ValidatorUnavailable
from comfy_gen.results import ItemResult
from comfy_gen.runrecord import table_rows

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_people_checks_judge_items_and_show_in_sidecar_and_item_table(
        emulator_factory, use_backend, write_recipe, monkeypatch, tiny_people_models, tmp_path):
    from flows.render_recipe import render_recipe

    emu = emulator_factory()
    use_backend(emu.url)
    for setting, folder in tiny_people_models.items():
        monkeypatch.setenv(f"COMFY_GEN_{setting.upper()}", str(folder))
    monkeypatch.setenv("COMFY_GEN_VALIDATOR_DEVICE", "cpu")
    reset_settings_cache()
    path = write_recipe("people", """
        name: people
        workflow: tiny-sd15.json
        prompts: [three people at a table, two women in a park]
        seeds: [1]
        validation:
          enabled: true
          checks: [person, {name: pose, keypoint_threshold: 0.5}, content]
        refinement: {strategy: progressive, max_attempts: 1}
    """)
    summary = render_recipe(recipe=str(path))
    assert summary["counts"] == {"passed": 1, "best_effort": 1} and emu.stats()["jobs_completed"] == 2
    records = [json.loads(line) for line in (Path(summary["run_dir"]) / "results.jsonl").read_text().splitlines()]
    by_prompt = {r["prompt"]: r for r in records}
    three, two = by_prompt["three people at a table"], by_prompt["two women in a park"]
    assert [v["validator"] for v in three["verdicts"]] == ["person", "pose", "content", "technical"]
    assert three["verdict"] == "passed" and three["scores"]["person_count"] == 3
    assert two["verdict"] == "best_effort" and two["reason"] == "Person count mismatch: expected 2, detected 3"
    for record in records:
        meta = json.loads(Path(record["file"] + ".json").read_text())
        assert [(v["validator"], v["passed"], v["reason"]) for v in meta["validation"]["verdicts"]] == [
            (v["validator"], v["passed"], v["reason"]) for v in record["verdicts"]]
        assert isinstance(meta["validation"]["content_caption"], str)
    rows = {row["prompt"]: row for row in table_rows([ItemResult.from_dict(r) for r in records])}
    assert rows["two women in a park"]["checks"].startswith(
        "person ✗ (Person count mismatch: expected 2, detected 3) pose ✗")
    assert rows["three people at a table"]["checks"] == "person ✓ pose ✓ content ✓ technical ✓"

    # A missing model stops the run before any rendering.
    monkeypatch.setenv("COMFY_GEN_CONTENT_VQA_MODEL", str(tmp_path / "missing-vqa"))
    reset_settings_cache()
    with pytest.raises(ValidatorUnavailable, match="content_vqa_model"):
        render_recipe(recipe=str(path), force=True)
    assert emu.stats()["jobs_completed"] == 2
