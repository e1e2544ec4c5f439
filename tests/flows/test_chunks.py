"""Large recipes as subflow runs (flows/chunks.py), with a chunk size of 3 and 8 items,
against the emulator and a real Prefect server (the subflow runs are read from its API)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfy_gen.chunks import parse_item_range, plan_chunks, select_items
from comfy_gen.config import reset_settings_cache
from comfy_gen.errors import BatchFailed, UsageError

pytestmark = pytest.mark.usefixtures("prefect_harness")

RECIPE = """
name: {name}
workflow: tiny-sd15.json
prompts: [a red lighthouse, a mountain lake, a quiet harbour, an old mill]
seeds: [1, 2]
"""


@pytest.fixture()
def chunk_of_3(monkeypatch):
    monkeypatch.setenv("COMFY_GEN_FLOW_CHUNK_SIZE", "3")
    reset_settings_cache()


def _render(path: Path, **kwargs):
    from flows.render_recipe import render_recipe

    return render_recipe(recipe=str(path), **kwargs)


def _subflows(parent_id: str) -> list[tuple[str, str, int]]:
    """(name, state type, render-item task runs) of each subflow run of ``parent_id``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    rows = []
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id])))
        for run in runs:
            body = {"flow_runs": {"id": {"any_": [str(run.id)]}}, "task_runs": {"name": {"like_": "item-"}}}
            count = int(client._client.post("/task_runs/count", json=body).json())
            rows.append((run.name, run.state_type.value if run.state_type else "", count))
    return sorted(rows, key=lambda r: int(r[0].split("[items ")[1].split("-")[0]))


def _item_runs(parent_id: str) -> int:
    from prefect.client.orchestration import get_client

    body = {"flow_runs": {"id": {"any_": [parent_id]}}, "task_runs": {"name": {"like_": "item-"}}}
    with get_client(sync_client=True) as client:
        return int(client._client.post("/task_runs/count", json=body).json())


def test_plan_chunks_cuts_by_item_number_and_skips_chunks_with_nothing_to_render():
    from comfy_gen.params import GenerationParams
    from comfy_gen.recipes import RecipeItem

    items = [RecipeItem(id=f"id{i}", index=i, params=GenerationParams(prompt="p"), workflow="w.json",
                        backend="default") for i in range(8)]
    chunks = plan_chunks(items, [items[2], items[7], items[0]], 3)   # a submission order
    assert [(c.label, [it.index for it in c.to_render]) for c in chunks] == [
        ("items 1-3", [2, 0]), ("items 7-8", [7])]
    assert [it.index for it in select_items(items, "4-6")] == [3, 4, 5]
    assert parse_item_range(" 17 ") == (17, 17)
    for bad in ("x", "0-3", "5-2", "3-"):
        with pytest.raises(UsageError, match="items"):
            parse_item_range(bad)
    with pytest.raises(UsageError, match="selects none"):
        select_items(items, "9-12")


def test_large_recipe_runs_as_subflows_of_bounded_size_and_rerun_renders_nothing(
        emulator_factory, use_backend, write_recipe, chunk_of_3):
    emu = emulator_factory()
    use_backend(emu.url)
    path = write_recipe("chunky", RECIPE.format(name="chunky"))

    first = _render(path)
    assert first["items"] == 8 and first["rendered"] == 8 and first["jobs"] == 8
    assert emu.stats()["jobs_completed"] == 8
    assert _subflows(first["flow_run_id"]) == [
        ("chunky [items 1-3]", "COMPLETED", 3), ("chunky [items 4-6]", "COMPLETED", 3),
        ("chunky [items 7-8]", "COMPLETED", 2)]
    assert _item_runs(first["flow_run_id"]) == 0, "items run in the chunks, not in the parent"
    # The parent's run record covers every chunk, each item once.
    lines = (Path(first["run_dir"]) / "results.jsonl").read_text().splitlines()
    ids = [json.loads(line)["item_id"] for line in lines]
    assert len(ids) == 8 and len(set(ids)) == 8
    assert [json.loads(line)["index"] for line in lines] == list(range(8))
    assert len(list(Path(first["items_dir"]).glob("*.png"))) == 8

    again = _render(path)
    assert again["jobs"] == 0 and again["cached"] == 8 and again["items"] == 8
    assert emu.stats()["jobs_completed"] == 8
    assert _subflows(again["flow_run_id"]) == [], "no chunk has anything to render: no subflow run"


def test_a_failed_chunk_is_resumed_alone(emulator_factory, use_backend, write_recipe, chunk_of_3):
    emu = emulator_factory()
    use_backend(emu.url)
    path = write_recipe("resume", RECIPE.format(name="resume"))
    emu.faults.error_node_class = "VAEDecode"
    with pytest.raises(BatchFailed) as info:
        _render(path)
    summary = info.value.summary
    assert summary["items"] == 8 and summary["counts"] == {"error": 8}
    assert [state for _, state, _ in _subflows(summary["flow_run_id"])] == ["FAILED"] * 3

    emu.clear()
    before = emu.stats()["jobs_completed"]
    alone = _render(path, items="4-6")  # the chunk's own items, as its name says
    assert alone["items"] == 3 and alone["rendered"] == 3
    assert emu.stats()["jobs_completed"] - before == 3

    rest = _render(path)
    assert rest["items"] == 8 and rest["cached"] == 3 and rest["rendered"] == 5
    assert emu.stats()["jobs_completed"] - before == 8
    assert [name for name, _, _ in _subflows(rest["flow_run_id"])] == [
        "resume [items 1-3]", "resume [items 7-8]"]


@pytest.mark.parametrize("spec, message", [
    pytest.param("9-12", "selects none of the recipe's 8 items", id="beyond-the-recipe"),
    pytest.param("five", "expected a range of item numbers", id="not-a-range"),
])
def test_cli_items_range_is_checked_before_any_server(write_recipe, spec, message):
    from tests.cli_ops.helpers import run_cli

    path = write_recipe("cli", RECIPE.format(name="cli"))
    code, out, err = run_cli("run", str(path), "--items", spec)
    assert code == 2, (out, err)
    assert message in err and "Traceback" not in out + err
