"""A recipe validated by the technical checks alone (``validation.technical: true``)
through the flow against the emulator: a black render (a VAE overflow stand-in) is
refined, and every check's verdict shows in the item table artifact and the sidecar."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_black_render_is_refined_and_verdicts_show_in_table_and_sidecar(
        emulator_factory, use_backend, write_recipe):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.render_recipe import render_recipe

    emu = emulator_factory()
    use_backend(emu.url)
    emu.faults.update({"black_images_next": 1})
    path = write_recipe("tech", """
        name: tech
        workflow: tiny-sd15.json
        prompts: [a red lighthouse on a cliff, a mountain lake at dawn]
        seeds: [1]
        validation: {technical: true}
        refinement: {strategy: seed_search, max_attempts: 2}
    """)
    summary = render_recipe(recipe=str(path))
    assert summary["counts"] == {"passed": 2} and summary["jobs"] == 3   # one item needed a second attempt

    sidecars = [json.loads(p.read_text()) for p in sorted(Path(summary["items_dir"]).glob("*.png.json"))]
    assert len(sidecars) == 2
    for meta in sidecars:
        [verdict] = meta["validation"]["verdicts"]
        assert verdict["validator"] == "technical" and verdict["passed"]
        assert verdict["reason"] == "Technical checks passed" and verdict["scores"]["technical_std"] > 5
    refined = [m for m in sidecars if m["refinement"]["attempt"] == 2]
    assert len(refined) == 1
    assert refined[0]["refinement"]["attempts"][0]["scores"]["technical_mean"] == 0.0   # the black one

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[summary["flow_run_id"]])))
    (table,) = [a for a in artifacts if a.type == "table"]
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [row["checks"] for row in rows] == ["technical ✓", "technical ✓"]
