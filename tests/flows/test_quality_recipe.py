"""A recipe with a quality check through the render-recipe flow (emulator, Prefect test server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_recipe_quality_check_scores_refines_and_records(emulator_factory, use_backend, write_recipe, quality_env):
    from comfy_gen.runrecord import table_rows
    from comfy_gen.results import ItemResult
    from flows.render_recipe import render_recipe

    emu = emulator_factory()
    use_backend(emu.url)
    path = write_recipe("graded", """
        name: graded
        workflow: tiny-sd15.json
        prompts: [a red car]
        seeds: [5, 6]
        validation:
          enabled: true
          checks: [{name: quality, threshold: 9.5}]
        refinement: {strategy: seed_search, max_attempts: 2}
    """)
    summary = render_recipe(recipe=str(path))
    assert summary["counts"] == {"best_effort": 2} and summary["jobs"] == 4
    results = [ItemResult.from_dict(json.loads(line))
               for line in (Path(summary["run_dir"]) / "results.jsonl").read_text().splitlines()]
    rows = table_rows(results)
    for result, row in zip(results, rows):
        composite = result.scores["quality_composite"]
        assert row["quality"] == f"{composite:.2f} {result.scores['quality_grade']}"
        assert result.verdicts[0].validator == "quality" and "Low quality score" in result.reason
        meta = json.loads(Path(result.file + ".json").read_text())
        attempts = meta["refinement"]["attempts"]
        assert len(attempts) == 2
        assert meta["quality"]["composite_score"] == composite == max(a["scores"]["quality_composite"]
                                                                       for a in attempts)

    # A lower threshold re-judges the stored composites: no rendering.
    path.write_text(path.read_text().replace("threshold: 9.5", "threshold: 0.5"))
    again = render_recipe(recipe=str(path))
    assert again["jobs"] == 0 and again["counts"] == {"passed": 2}
